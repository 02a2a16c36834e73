"""Round-robin training end to end: the right keys work, wrong keys give chance, and nothing
written to disk contains key material."""

import importlib.util
import pathlib

import jax
import numpy as np
import pytest

from bnnlab.reconfig import keys, trainer

ROOT_DIR = pathlib.Path(__file__).parents[2]
ROOT = bytes(range(32))
RIGHT = keys.KeyMaterial(b"alice's user key", ROOT)


def config(**overrides):
    spec = importlib.util.spec_from_file_location(
        "rbnn", ROOT_DIR / "experiments" / "rbnn_reactnet.py"
    )
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    c = recipe.get_config("runlocal")
    c.model.width = 0.25
    c.num_epochs = 8
    c.mesh = (("data", 1),)  # hundreds of tiny steps: faster on one of the 8 fake devices
    c.reconfig.demo_keys = False
    c.update(overrides)
    return c


# One worker runs every test of this module: the trained fixture costs a minute per worker.
pytestmark = pytest.mark.xdist_group("reconfig_trainer")


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
    run = trainer.load(workdir)
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
    trainer.load(workdir).export(tmp_path / "export")
    secrets = [RIGHT.user_key, RIGHT.root_key] + [RIGHT.seed(f"task{i}") for i in range(3)]
    needles = secrets + [s.hex().encode() for s in secrets]
    files = [
        f for d in (workdir, tmp_path / "export") for f in pathlib.Path(d).rglob("*") if f.is_file()
    ]
    assert any(f.name == "model.npz" for f in files) and any("checkpoints" in str(f) for f in files)
    for f in files:
        content = f.read_bytes()
        for needle in needles:
            assert needle not in content, f


@pytest.mark.slow
def test_predict_and_errors(trained):
    workdir, _ = trained
    run = trainer.load(workdir)
    images = np.zeros((2, 8, 8, 1), np.float32)
    assert run.predict(images, "task0", RIGHT).shape == (2, 10)
    with pytest.raises(ValueError, match="Unknown task id 'task3'"):
        run.evaluate("task3", RIGHT)
    with pytest.raises(ValueError, match="builds 'rbnn_reactnet'"):
        trainer.train_and_evaluate(config(model_name="resnet18_cifar"), workdir / "x", RIGHT)
