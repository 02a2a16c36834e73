"""The training system end to end on tiny models: exact resume, sharding, TFDS, errors."""

import json
import pathlib

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds
from jax.sharding import PartitionSpec

from bnnlab import data, train
from bnnlab.runs import checkpoint, identity, metrics
from bnnlab.train import experiment, loop, steps

import recipes

ROOT = pathlib.Path(__file__).parents[2]


def smoke_config(arg=None, **overrides):
    return recipes.config("smoke", arg, **overrides)


def final_params(workdir):
    tree, step = checkpoint.Checkpoints(workdir, keep=3).restore_raw()
    return tree["params"], tree["quant_state"], step


def deterministic(records):
    return [{k: v for k, v in r.items() if k not in loop.TIMING_KEYS} for r in records]


def test_resume_is_exact(tmp_path):
    """8 + resume + 8 steps, with batches made in two grain worker processes, equal 16 steps
    made in this process, bit for bit; the checkpoint carries the input pipeline's state."""
    config = smoke_config()
    full = train.train_and_evaluate(config, tmp_path / "full")
    split = smoke_config(data_workers=2)
    first = train.train_and_evaluate(split, tmp_path / "split", stop_at=8)
    assert first == {}  # stopped before the end: no final eval yet
    ckpts = checkpoint.Checkpoints(tmp_path / "split", 3)
    assert ckpts.steps() == [8]
    data_state = ckpts.data_state(8)
    ckpts.close()
    assert data_state["step"] == 8 and data_state["workers"] == 2 and data_state["grain"]
    resumed = train.train_and_evaluate(split, tmp_path / "split")
    assert resumed == full
    (p_full, q_full, s_full), (p_split, q_split, s_split) = (
        final_params(tmp_path / "full"),
        final_params(tmp_path / "split"),
    )
    assert s_full == s_split == 16
    jax.tree.map(np.testing.assert_array_equal, p_full, p_split)
    jax.tree.map(np.testing.assert_array_equal, q_full, q_split)
    full_records = deterministic(metrics.read(tmp_path / "full"))
    assert full_records == deterministic(metrics.read(tmp_path / "split"))
    assert [(r["step"], r["split"]) for r in full_records] == [
        (s, split) for s in (4, 8, 12, 16) for split in ("train", "diagnostics")
    ] + [(16, "eval")]
    assert "siman_clip_percent" in full_records[0]  # the quantizer schedule is logged
    diagnostics = full_records[1]
    for key in (
        "mean/bit_entropy",
        "mean/flip_ratio",
        "mean/dead_empirical",
        "mean/quant_error",
        "mean/act_positive",
        "stage1_unit1/conv/bit_entropy",
    ):
        assert key in diagnostics, key
    assert diagnostics["stage1_unit1/conv/bit_entropy"] == 1.0  # SiMaN codes are half ones


@pytest.mark.slow
def test_one_step_on_eight_devices_equals_one_device():
    config = smoke_config(mesh=(("data", -1),))
    exp8 = experiment.build(config)
    exp1 = experiment.build(smoke_config(mesh=(("data", 1),)), devices=jax.devices()[:1])
    assert exp8.mesh.shape["data"] == 8
    host_batch = exp8.tasks[0].loader.batch(0)
    batch8, batch1 = exp8.device_batch(host_batch), exp1.device_batch(host_batch)
    # The batch really is split over the 8 devices, 4 examples each.
    assert batch8["image"].sharding.spec == PartitionSpec(("data",))
    assert sorted(s.data.shape[0] for s in batch8["image"].addressable_shards) == [4] * 8
    assert len({s.device for s in batch8["image"].addressable_shards}) == 8

    def loss_and_grads(exp, state, batch):
        fn = jax.jit(lambda s, b: steps.loss_and_grads(s, s.params, b, 0.0, model=exp.model))
        (loss, _), grads = fn(state, batch)
        return jax.device_get(loss), jax.device_get(grads)

    state8, state1 = exp8.init_state(), exp1.init_state()
    loss8, grads8 = loss_and_grads(exp8, state8, batch8)
    loss1, grads1 = loss_and_grads(exp1, state1, batch1)
    # Tolerance: the 8-device run reduces BatchNorm statistics and gradients across devices in a
    # different order, so float32 sums differ in the last bits.
    np.testing.assert_allclose(loss8, loss1, rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-4, atol=1e-6), grads8, grads1
    )
    new8, m8 = exp8.train_step(state8, batch8, None, None)
    new1, m1 = exp1.train_step(state1, batch1, None, None)
    np.testing.assert_allclose(m8["loss"], m1["loss"], rtol=1e-6)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        jax.device_get(new8.params),
        jax.device_get(new1.params),
    )


def test_tfds_path_under_mock_data(tmp_path):
    config = smoke_config(
        dataset="cifar10",
        total_steps=3,
        log_every_steps=1,
        checkpoint_every_steps=3,
        batch_size=16,
        eval_batch_size=16,
    )
    with tfds.testing.mock_data(num_examples=48):
        result = train.train_and_evaluate(config, tmp_path)
    assert result["examples"] == 48 and 0.0 <= result["accuracy"] <= 1.0
    assert [r["step"] for r in metrics.read(tmp_path) if r["split"] == "train"] == [1, 2, 3]


@pytest.mark.parametrize(
    "overrides,error,match",
    [
        (dict(lrr=0.1), ValueError, r"Unknown config key\(s\): lrr \(did you mean 'lr'\?\)"),
        (dict(model_name="resnet19"), ValueError, r"Unknown model 'resnet19'\. Available:"),
        (dict(dataset="cifar11"), ValueError, r"Unknown dataset 'cifar11'\. Available:"),
        (dict(dataset="cifar10"), data.DatasetNotFoundError, r"tfds build cifar10"),
        (
            dict(batch_size=36, mesh=(("data", -1),)),
            ValueError,
            r"batch_size = 36 must be divisible by the 8 devices",
        ),
    ],
)
def test_bad_config_fails_before_training(tmp_path, overrides, error, match):
    config = smoke_config(data_dir=str(tmp_path / "tfds"))
    if "lrr" in overrides:
        config.unlock()
    config.update(overrides)
    with pytest.raises(error, match=match):
        train.train_and_evaluate(config, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    train.train_and_evaluate(smoke_config("float", total_steps=64), tmp_path, stop_at=8)
    exploding = smoke_config(
        "float", lr=1e30, total_steps=64, checkpoint_every_steps=4, resume_override=True
    )
    with pytest.raises(
        FloatingPointError, match=r"Non-finite loss .* last good checkpoint is step 8 in"
    ):
        train.train_and_evaluate(exploding, tmp_path)
    assert checkpoint.Checkpoints(tmp_path, 3).steps() == [8]
    tree, _ = checkpoint.Checkpoints(tmp_path, 3).restore_raw(8)
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(tree["params"]))


def test_non_finite_loss_before_any_checkpoint_says_so(tmp_path):
    config = smoke_config("float", lr=1e30, total_steps=64)
    with pytest.raises(FloatingPointError, match="No checkpoint was saved yet"):
        train.train_and_evaluate(config, tmp_path)
    assert checkpoint.Checkpoints(tmp_path, 3).steps() == []


def test_non_finite_loss_off_the_logging_grid_is_not_saved(tmp_path):
    """stop_at between two log steps: the steps since the last record are checked before the
    save (before, a NaN checkpoint was written with exit 0 and called "last good" next time)."""
    config = smoke_config("float", lr=1e30, total_steps=64)
    with pytest.raises(FloatingPointError, match=r"steps 1–3; stopping"):
        train.train_and_evaluate(config, tmp_path, stop_at=3)
    assert checkpoint.Checkpoints(tmp_path, 3).steps() == []


def test_corrupt_newest_checkpoint_falls_back_to_previous(tmp_path):
    train.train_and_evaluate(smoke_config(), tmp_path)
    newest = tmp_path / "checkpoints" / "16"
    for f in newest.rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    result = train.train_and_evaluate(smoke_config(total_steps=24, resume_override=True), tmp_path)
    assert checkpoint.Checkpoints(tmp_path, 3).steps() == [8, 16, 24]
    moved = list((tmp_path / "checkpoints_corrupt").iterdir())
    assert len(moved) == 1 and moved[0].name.startswith("16-")
    steps_logged = [r["step"] for r in metrics.read(tmp_path) if r["split"] == "train"]
    assert steps_logged == [4, 8, 12, 16, 20, 24] and result["examples"] == 359


def test_already_finished_run_only_evaluates(tmp_path):
    first = train.train_and_evaluate(smoke_config(), tmp_path)
    records = metrics.read(tmp_path)
    again = train.train_and_evaluate(smoke_config(), tmp_path)
    assert again["accuracy"] == first["accuracy"]
    assert metrics.read(tmp_path) == records


def test_distillation_from_a_teacher_workdir(tmp_path):
    train.train_and_evaluate(smoke_config("float"), tmp_path / "teacher")
    config = smoke_config(
        teacher_workdir=str(tmp_path / "teacher"), distill_weight=0.5, total_steps=4
    )
    result = train.train_and_evaluate(config, tmp_path / "student")
    assert 0.0 <= result["accuracy"] <= 1.0


@pytest.mark.slow
def test_fine_tune_from_a_workdir_with_frozen_stem_and_bn(tmp_path):
    train.train_and_evaluate(smoke_config("float"), tmp_path / "base")
    base, _, _ = final_params(tmp_path / "base")
    base_stats = checkpoint.Checkpoints(tmp_path / "base", 3).restore_raw()[0]["batch_stats"]
    config = smoke_config(
        "float", init_from=str(tmp_path / "base"), freeze="stem/.*", total_steps=8
    )
    config.model.frozen_bn = True
    train.train_and_evaluate(config, tmp_path / "tuned")
    tuned, _, _ = final_params(tmp_path / "tuned")
    tuned_stats = checkpoint.Checkpoints(tmp_path / "tuned", 3).restore_raw()[0]["batch_stats"]
    jax.tree.map(np.testing.assert_array_equal, tuned["stem"], base["stem"])
    assert not np.array_equal(tuned["head"]["fc"]["kernel"], base["head"]["fc"]["kernel"])
    jax.tree.map(np.testing.assert_array_equal, tuned_stats, base_stats)
    # Without frozen_bn the statistics keep updating (AdderNet detectors want exactly that).
    config.model.frozen_bn = False
    train.train_and_evaluate(config, tmp_path / "updating")
    updated = checkpoint.Checkpoints(tmp_path / "updating", 3).restore_raw()[0]["batch_stats"]
    assert not np.array_equal(updated["stem"]["bn"]["mean"], base_stats["stem"]["bn"]["mean"])
    with pytest.raises(ValueError, match="matches no parameter"):
        train.train_and_evaluate(smoke_config("float", freeze="backbone/.*"), tmp_path / "x")
    with pytest.raises(ValueError, match="do not match this model"):
        train.train_and_evaluate(
            smoke_config(init_from=str(tmp_path / "base"), model_name="resnet20_cifar"),
            tmp_path / "y",
        )


def test_resuming_with_another_config_is_refused_naming_the_keys(tmp_path):
    train.train_and_evaluate(smoke_config(), tmp_path, stop_at=8)
    recorded = (tmp_path / "config.json").read_text()
    for overrides, key in (({"lr": 0.05}, "lr"), ({"model.width": 0.5}, "model.width")):
        with pytest.raises(identity.ConfigChanged, match=rf"another config \({key}: "):
            train.train_and_evaluate(smoke_config(**overrides), tmp_path)
    assert checkpoint.Checkpoints(tmp_path, 3).steps() == [8]  # nothing moved aside
    assert not (tmp_path / "checkpoints_corrupt").exists()
    assert (tmp_path / "config.json").read_text() == recorded
    # Execution-only keys are not changes; an explicit override is accepted and recorded.
    train.train_and_evaluate(smoke_config(progress_bar=False), tmp_path, stop_at=12)
    train.train_and_evaluate(smoke_config(lr=0.05, resume_override=True), tmp_path)
    (change,) = [json.loads(line) for line in (tmp_path / "config_changes.jsonl").open()]
    assert list(change["changes"]) == ["lr"] and change["changes"]["lr"][1] == 0.05
    assert (tmp_path / change["previous"]).read_text() == recorded
    assert '"lr": 0.05' in (tmp_path / "config.json").read_text()
