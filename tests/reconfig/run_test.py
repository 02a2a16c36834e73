"""A trained reconfigurable run end to end: the right keys work, other keys are refused and,
forced through (a stolen copy), give chance; nothing written to disk contains key material;
its export is the common archive with the key check."""

import pathlib
import sys

import jax
import numpy as np
import pytest

from bnnlab import reconfig
from bnnlab.reconfig import guard, keys, layers, puf, trainer

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
    wrong_user = keys.KeyMaterial(b"mallory's user key", ROOT)
    other_device = keys.KeyMaterial(RIGHT.user_key, puf.demo_device_root_key(99))
    for task in run.tasks:
        right = run.evaluate(task.task_id, RIGHT)
        assert right == pytest.approx(result[f"accuracy/{task.task_id}"], abs=1e-6)
        assert right > 0.5, (task.task_id, right)
        for material in (wrong_user, other_device):
            with pytest.raises(guard.WrongKeys, match="not the keys the run in"):
                run.evaluate(task.task_id, material)
            forced = run.evaluate(task.task_id, material, check_keys=False)
            assert forced <= 0.10 + 0.05  # chance + 5 points


def test_nothing_on_disk_contains_key_material(trained, tmp_path):
    workdir, _ = trained
    reconfig.load(workdir).export(tmp_path / "export" / "rbnn.npz", RIGHT)
    secrets = [RIGHT.user_key, RIGHT.root_key, RIGHT.model_seed()]
    secrets += [RIGHT.seed(f"task{i}") for i in range(3)]
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
    run = reconfig.load(workdir)
    with pytest.raises(guard.WrongKeys):
        run.export(tmp_path / "stolen.npz", keys.KeyMaterial(b"mallory's user key", ROOT))
    assert not (tmp_path / "stolen.npz").exists()
    path = run.export(tmp_path / "rbnn.npz", RIGHT)
    manifest, float_vars, packed = archive.load(path)
    assert manifest["tasks"] == [{"id": f"task{i}", "classes": 10} for i in range(3)]
    assert manifest["key_check"] == guard.record_of(RIGHT)
    assert manifest["model"]["num_tasks"] == 3 and packed == {}
    assert float_vars["batch_stats"]["stem_bn"]["mean"].shape[0] == 3  # one row per task
    with pytest.raises(ValueError, match="reconfigurable"):
        export.load(path)


@pytest.mark.slow
def test_attack_benchmark_runs_on_a_trained_run(trained, monkeypatch):
    """benchmarks/rbnn_attack.py at a tiny budget: the right keys reproduce the run, the
    attacker's starts are what they claim (scratch under the attacker's key reads the ordinary
    initialisation), and the report has every row."""
    import importlib.util

    path = pathlib.Path(__file__).parents[2] / "benchmarks" / "rbnn_attack.py"
    spec = importlib.util.spec_from_file_location("rbnn_attack", path)
    bench = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "rbnn_attack", bench)  # its dataclasses look it up
    spec.loader.exec_module(bench)
    workdir, result = trained
    attack = bench.Attack(str(workdir))
    zero = bench.zero_shot(attack, RIGHT)
    for t in attack.run.tasks:
        assert zero["right"][t.task_id] == pytest.approx(result[f"accuracy/{t.task_id}"])
        # One wrong key makes the model a random function of the image, and a random function
        # of digits is not exactly chance (ink amounts differ by class): 3 keys on average.
        assert np.mean(zero["wrong"][t.task_id]) <= 0.15 and zero["identity"][t.task_id] <= 0.15
    # task2 is task0 relabelled: raw 0 %-ish, but the best relabelling recovers task0.
    cross = zero["cross"]["task0 keys on task2"]
    assert cross["relabelled"] == pytest.approx(zero["right"]["task0"], abs=0.02)
    assert cross["with its rows"] <= 0.15
    scratch = attack.scratch(0, bench.attacker_keys(0))
    task = attack.run.tasks[0]
    rows = scratch["params"]["stem_bn"]["scale"][0] - layers.MASK_AMPLITUDE * np.asarray(
        attack.collection(bench.attacker_keys(0), task)["stem_bn"]["scale_mask"]
    )
    np.testing.assert_allclose(rows, 1.0, atol=1e-6)
    tuned = bench.fine_tuning(attack, "task0", [0.1], [2], [0])
    report = bench.report(zero, tuned, [2])
    assert report.count("| 10% |") == 3 and "task1 keys on task0" in report
