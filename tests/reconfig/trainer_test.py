"""Round-robin training on the common loop: exact resume, the common metrics per task, the
settings the reconfigurable trainer refuses, and the key check that refuses a resume under
other keys."""

import jax
import numpy as np
import pytest

from bnnlab import runs
from bnnlab.reconfig import guard, keys, trainer
from bnnlab.runs import metrics

import recipes

RIGHT = keys.KeyMaterial(b"alice's user key", bytes(range(32)))


def config(**overrides):
    c = recipes.config("rbnn_reactnet", "runlocal", **overrides)
    c.model.width = 0.25
    c.mesh = (("data", 1),)  # tiny steps: faster on one of the 8 fake devices
    c.reconfig.demo_keys = False
    return c


@pytest.mark.slow
def test_resume_is_exact_and_logs_the_common_metrics(tmp_path):
    """The common loop's features for the reconfigurable trainer: stopped at a step that is
    not a multiple of the task count and resumed, the run equals an uninterrupted one; the
    records carry the common step metrics per task."""
    c = config(total_steps=9, log_every_steps=3, checkpoint_every_steps=99, eval_every_epochs=100)
    whole = trainer.train_and_evaluate(c, tmp_path / "whole", RIGHT)
    assert trainer.train_and_evaluate(c, tmp_path / "split", RIGHT, stop_at=4) == {}
    split = trainer.train_and_evaluate(c, tmp_path / "split", RIGHT)
    assert split == whole
    a, b = runs.load(tmp_path / "whole"), runs.load(tmp_path / "split")
    assert a.step == b.step == 9
    for x, y in zip(jax.tree.leaves(a.variables), jax.tree.leaves(b.variables), strict=True):
        np.testing.assert_array_equal(x, y)
    records = [r for r in metrics.read(tmp_path / "split") if r["split"] == "train"]
    assert [r["step"] for r in records] == [3, 6, 9]
    for key in ("grad_norm", "param_norm", "progress", "lr", "images_per_sec", "loss/task2"):
        assert key in records[-1], key


def test_only_the_reconfigurable_model_and_no_smoothing_or_decay(tmp_path):
    with pytest.raises(ValueError, match="builds 'rbnn_reactnet'"):
        trainer.train_and_evaluate(config(model_name="resnet18_cifar"), tmp_path / "a", RIGHT)
    with pytest.raises(ValueError, match="label_smoothing"):
        trainer.train_and_evaluate(config(label_smoothing=0.1), tmp_path / "b", RIGHT)
    with pytest.raises(ValueError, match=r"weight_decay = 0\.0001"):
        trainer.train_and_evaluate(config(weight_decay=1e-4), tmp_path / "c", RIGHT)


def test_a_resume_under_other_or_missing_keys_is_refused(tmp_path, monkeypatch):
    """The first start records the keys' check value; resuming under another user key, another
    device key or the demo keys (what a :runlocal rerun without key flags fills in) is refused
    before a step is taken, and the checkpoint is left as it was."""
    c = config(total_steps=4, log_every_steps=2, checkpoint_every_steps=2, eval_every_epochs=100)
    assert trainer.train_and_evaluate(c, tmp_path, RIGHT, stop_at=2) == {}
    record = guard.read(tmp_path)
    assert record == {"derivation": 1, "check": RIGHT.check_value(), "demo_keys": False}
    before = runs.load(tmp_path)
    other_user = keys.KeyMaterial(b"mallory's user key", RIGHT.root_key)
    other_device = keys.KeyMaterial(RIGHT.user_key, bytes(range(1, 33)))
    for material in (other_user, other_device):
        with pytest.raises(guard.WrongKeys, match=r"not the keys the run in .* was trained with"):
            trainer.train_and_evaluate(c, tmp_path, material)
    monkeypatch.delenv(keys.USER_ENV, raising=False)
    monkeypatch.delenv(keys.DEVICE_ENV, raising=False)
    c.reconfig.demo_keys = True
    with pytest.raises(guard.WrongKeys, match="trained with its own keys, not the public demo"):
        trainer.train_and_evaluate(c, tmp_path)
    after = runs.load(tmp_path)
    assert after.step == before.step == 2
    for x, y in zip(
        jax.tree.leaves(before.variables), jax.tree.leaves(after.variables), strict=True
    ):
        np.testing.assert_array_equal(x, y)
    (tmp_path / guard.FILE).unlink()  # a run from before key checks (or a deleted record)
    with pytest.raises(guard.WrongKeys, match=r"has checkpoints but no key_check\.json"):
        trainer.train_and_evaluate(config(), tmp_path, RIGHT)


@pytest.mark.slow
def test_one_task_run_reports_its_accuracy_under_the_plain_keys_too(tmp_path):
    c = recipes.config("rbnn_reactnet", "runlocal,single=1", total_steps=2, log_every_steps=1)
    c.model.width, c.mesh, c.reconfig.demo_keys = 0.25, (("data", 1),), False
    result = trainer.train_and_evaluate(c, tmp_path, RIGHT)
    assert result["accuracy"] == result["accuracy/task0"]
    assert result["loss"] == result["loss/task0"]
