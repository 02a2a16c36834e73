"""A trained reconfigurable run end to end: the right keys work, wrong keys give chance,
nothing written to disk contains key material, and its export is the common archive."""

import pathlib

import jax
import numpy as np
import pytest

from bnnlab import reconfig
from bnnlab.reconfig import keys, trainer

import recipes

ROOT = bytes(range(32))
RIGHT = keys.KeyMaterial(b"alice's user key", ROOT)

# One worker runs every test of this module: the trained fixture costs a minute per worker.
pytestmark = pytest.mark.xdist_group("reconfig_trainer")


def config(**overrides):
    c = recipes.config("rbnn_reactnet", "runlocal", num_epochs=8, **overrides)
    c.model.width = 0.25
    c.mesh = (("data", 1),)  # hundreds of tiny steps: faster on one of the 8 fake devices
    c.reconfig.demo_keys = False
    return c


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("rbnn")
    # Hundreds of steps: worth XLA's optimisations, which conftest turns off for compile speed.
    jax.config.update("jax_disable_most_optimizations", False)
    try:
        result = trainer.train_and_evaluate(config(), workdir, RIGHT)
    finally:
        jax.config.update("jax_disable_most_optimizations", True)
    return workdir, result


@pytest.mark.slow
def test_right_keys_learn_every_task_and_wrong_keys_give_chance(trained):
    workdir, result = trained
    run = reconfig.load(workdir)
    wrong_user = keys.KeyMaterial(b"mallory", ROOT)
    other_device = keys.KeyMaterial(RIGHT.user_key, keys.simulated_device_root_key(99))
    for task in run.tasks:
        right = run.evaluate(task.task_id, RIGHT)
        assert right == pytest.approx(result[f"accuracy/{task.task_id}"], abs=1e-6)
        assert right > 0.5, (task.task_id, right)
        for material in (wrong_user, other_device):
            assert run.evaluate(task.task_id, material) <= 0.10 + 0.05  # chance + 5 points


def test_nothing_on_disk_contains_key_material(trained, tmp_path):
    workdir, _ = trained
    reconfig.load(workdir).export(tmp_path / "export" / "rbnn.npz")
    secrets = [RIGHT.user_key, RIGHT.root_key] + [RIGHT.seed(f"task{i}") for i in range(3)]
    needles = secrets + [s.hex().encode() for s in secrets]
    files = [
        f for d in (workdir, tmp_path / "export") for f in pathlib.Path(d).rglob("*") if f.is_file()
    ]
    assert any(f.name == "rbnn.npz" for f in files) and any("checkpoints" in str(f) for f in files)
    for f in files:
        content = f.read_bytes()
        for needle in needles:
            assert needle not in content, f


@pytest.mark.slow
def test_predict_and_errors(trained):
    workdir, _ = trained
    run = reconfig.load(workdir)
    images = np.zeros((2, 8, 8, 1), np.float32)
    assert run.predict(images, "task0", RIGHT).shape == (2, 10)
    with pytest.raises(ValueError, match="Unknown task id 'task3'"):
        run.evaluate("task3", RIGHT)


def test_export_is_the_common_archive_with_a_task_list(trained, tmp_path):
    from bnnlab import export
    from bnnlab.export import archive

    workdir, _ = trained
    path = reconfig.load(workdir).export(tmp_path / "rbnn.npz")
    manifest, float_vars, packed = archive.load(path)
    assert manifest["tasks"] == [{"id": f"task{i}", "classes": 10} for i in range(3)]
    assert manifest["model"]["num_tasks"] == 3 and packed == {}
    assert float_vars["batch_stats"]["stem_bn"]["mean"].shape[0] == 3  # one row per task
    with pytest.raises(ValueError, match="reconfigurable"):
        export.load(path)
