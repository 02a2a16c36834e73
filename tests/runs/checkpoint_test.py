"""Checkpoints: restore the newest, step-named states, and checkpoints from older versions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnlab.runs import checkpoint


def state(value: float, tracking_key: str = "tracking") -> dict:
    return {
        "step": jnp.int32(value),
        "params": {"w": jnp.full((3,), value)},
        tracking_key: {"layer": {"flips": jnp.float32(value / 2)}},
    }


def abstract(tree):
    return jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), tree)


def test_newest_checkpoint_and_data_state(tmp_path):
    ckpts = checkpoint.Checkpoints(tmp_path, keep=2)
    for step in (1, 2, 3):
        ckpts.save(step, state(step), data={"step": step})
    ckpts.close()
    ckpts = checkpoint.Checkpoints(tmp_path, keep=2)
    assert ckpts.steps() == [2, 3]  # keep=2
    restored, step = ckpts.restore_latest(abstract(state(0)))
    assert step == 3 and ckpts.data_state(3) == {"step": 3}
    np.testing.assert_array_equal(restored["params"]["w"], [3.0, 3.0, 3.0])
    raw, step = ckpts.restore_raw(2)
    assert step == 2 and float(raw["tracking"]["layer"]["flips"]) == 1.0
    ckpts.close()


def test_a_checkpoint_with_the_old_field_name_restores(tmp_path):
    """Train states saved before the flip-tracking field was renamed ("diag")."""
    ckpts = checkpoint.Checkpoints(tmp_path, keep=2)
    ckpts.save(5, state(5, tracking_key="diag"))
    ckpts.close()
    ckpts = checkpoint.Checkpoints(tmp_path, keep=2)
    restored, step = ckpts.restore_latest(abstract(state(0)))
    ckpts.close()
    assert step == 5 and set(restored) == {"step", "params", "tracking"}
    assert float(restored["tracking"]["layer"]["flips"]) == 2.5
    assert not (tmp_path / "checkpoints_corrupt").exists()


def test_an_old_checkpoint_without_flip_tracking_restores(tmp_path):
    """``diag`` was ``{}`` whenever diagnostics were off (every reconfigurable run)."""
    old = {"step": jnp.int32(3), "params": {"w": jnp.ones(2)}, "diag": {}}
    ckpts = checkpoint.Checkpoints(tmp_path, keep=2)
    ckpts.save(3, old)
    ckpts.close()
    ckpts = checkpoint.Checkpoints(tmp_path, keep=2)
    target = {"step": jax.ShapeDtypeStruct((), jnp.int32), "params": abstract(old["params"])}
    restored, step = ckpts.restore_latest({**target, "tracking": {}})
    ckpts.close()
    assert step == 3 and restored["tracking"] == {}
    np.testing.assert_array_equal(restored["params"]["w"], [1.0, 1.0])


def test_every_checkpoint_corrupt_is_refused_listing_them(tmp_path):
    ckpts = checkpoint.Checkpoints(tmp_path, keep=3)
    for step in (1, 2):
        ckpts.save(step, state(step))
    ckpts.close()
    for f in (tmp_path / "checkpoints").rglob("*"):
        if f.is_file():
            f.write_bytes(b"garbage")
    ckpts = checkpoint.Checkpoints(tmp_path, keep=3)
    with pytest.raises(checkpoint.NoRestorableCheckpoint, match=r"tried step 2 .*; step 1 "):
        ckpts.restore_latest(abstract(state(0)))
    ckpts.close()
    assert len(list((tmp_path / "checkpoints_corrupt").iterdir())) == 2  # moved, never deleted


def test_a_checkpoint_that_cannot_be_read_now_is_left_in_place(tmp_path, monkeypatch):
    ckpts = checkpoint.Checkpoints(tmp_path, keep=3)
    for step in (1, 2):
        ckpts.save(step, state(step))
    ckpts.close()
    ckpts = checkpoint.Checkpoints(tmp_path, keep=3)

    def denied(step, args):
        raise RuntimeError("restore failed") from PermissionError(13, "Permission denied")

    monkeypatch.setattr(ckpts, "_restore", denied)
    with pytest.raises(checkpoint.CheckpointUnreadable, match=r"step 2 .* cannot be read now"):
        ckpts.restore_latest(abstract(state(0)))
    ckpts.close()
    assert checkpoint.Checkpoints(tmp_path, keep=3).steps() == [1, 2]
    assert not (tmp_path / "checkpoints_corrupt").exists()


def test_altered_array_bytes_are_detected_and_the_previous_checkpoint_used(tmp_path):
    """Bit rot that still decodes: step 2's arrays replaced by other valid bytes."""
    import shutil

    ckpts = checkpoint.Checkpoints(tmp_path / "run", keep=3)
    for step in (1, 2):
        ckpts.save(step, state(step))
    ckpts.close()
    other = checkpoint.Checkpoints(tmp_path / "other", keep=3)
    other.save(2, state(7))  # same shapes, other values
    other.close()
    damaged = tmp_path / "run" / "checkpoints" / "2" / "default"
    shutil.rmtree(damaged)
    shutil.copytree(tmp_path / "other" / "checkpoints" / "2" / "default", damaged)
    ckpts = checkpoint.Checkpoints(tmp_path / "run", keep=3)
    with pytest.raises(checkpoint.ChecksumMismatch, match="differ from what was saved"):
        ckpts.restore_raw(2)
    restored, step = ckpts.restore_latest(abstract(state(0)))
    ckpts.close()
    assert step == 1
    np.testing.assert_array_equal(restored["params"]["w"], [1.0, 1.0, 1.0])
    (moved,) = (tmp_path / "run" / "checkpoints_corrupt").iterdir()
    assert moved.name.startswith("2-")


def test_checksums_name_paths_and_see_one_changed_bit():
    tree = {"a": {"w": np.arange(4, dtype=np.float32)}, "b": np.int32(3)}
    sums = checkpoint.checksums(tree)
    assert set(sums) == {"a/w", "b"}
    flipped = tree["a"]["w"].copy()
    flipped.view(np.uint32)[2] ^= 1  # one bit of one float
    assert checkpoint.checksums({**tree, "a": {"w": flipped}})["a/w"] != sums["a/w"]
