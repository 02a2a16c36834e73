"""Orbax checkpoints with automatic resume and a fallback past a corrupt newest checkpoint.

Orbax writes each checkpoint into a temporary directory and renames it when complete, so a run
killed mid-save (even by SIGKILL) leaves only finished checkpoints visible. If the newest one
still fails to restore (disk trouble, a half-copied directory), it is reported, moved aside
into ``checkpoints_corrupt/`` (never deleted) and the previous one is used.

Each checkpoint holds the train state (item ``default``, the only item of checkpoints written
before the input pipeline's state was saved) and, when given, the input pipeline's iterator
state (item ``data``, JSON).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import logging
import pathlib
import shutil
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

from bnnlab.runs import storage

# The train state, the input pipeline's state, and a SHA-256 per array of the train state
# (written at save, verified at restore, so bit rot takes the corrupt-checkpoint path).
ITEMS = ("default", "data", "checksums")
DIRECTORY = "checkpoints"  # inside the workdir
# Train-state fields renamed since checkpoints were first written (new name → old name), so
# older checkpoints still restore.
RENAMED = {"tracking": "diag"}


class Checkpoints:
    """Save every N steps (async), keep K, restore the newest restorable one."""

    def __init__(self, workdir: str | pathlib.Path, keep: int):
        self.directory = pathlib.Path(workdir).absolute() / DIRECTORY
        self.corrupt_dir = pathlib.Path(workdir).absolute() / "checkpoints_corrupt"
        self._keep = keep
        self._manager = self._open()
        self._in_flight: int | None = None  # the step of the save not yet known to be complete
        self._failed = False

    def _open(self) -> ocp.CheckpointManager:
        options = ocp.CheckpointManagerOptions(
            max_to_keep=self._keep, create=True, enable_async_checkpointing=True
        )
        return ocp.CheckpointManager(self.directory, item_names=ITEMS, options=options)

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state, data: dict | None = None) -> None:
        """Starts saving ``step`` in the background (after the previous save completes).
        ``storage.SaveFailed`` when the disk refuses this or the previous save."""
        items = {
            "default": ocp.args.StandardSave(state),
            "checksums": ocp.args.JsonSave(checksums(state)),
        }
        if data is not None:
            items["data"] = ocp.args.JsonSave(data)
        # A failure here is the previous save's if one was in flight (orbax waits for it first).
        with self._reporting(step if self._in_flight is None else self._in_flight):
            self._manager.save(step, args=ocp.args.Composite(**items))
        self._in_flight = step

    def check(self) -> None:
        """Raises ``storage.SaveFailed`` now if a background save has failed."""
        with self._reporting():
            self._manager.check_for_errors()

    @contextlib.contextmanager
    def _reporting(self, step: int | None = None):
        """A save the disk refused → ``storage.SaveFailed`` with what is intact, the partial
        checkpoint removed (its space freed); other errors pass unchanged."""
        try:
            yield
        except Exception as e:
            reason = storage.write_failure(e)
            if reason is None or self._failed:
                raise
            self._failed = True
            self._remove_partial()
            intact = storage.saved_steps(self.directory)
            kept = (
                f"the earlier checkpoints are intact; rerun the same command to resume from step "
                f"{intact[-1]}"
                if intact
                else "no checkpoint was saved before it; rerun the same command to start again"
            )
            step = self._in_flight if step is None else step
            failed = f"at step {step} " if step is not None else ""
            raise storage.SaveFailed(
                f"Could not save the checkpoint {failed}in {self.directory}: {reason}. The "
                f"partial checkpoint was removed and {kept} once the disk has room or is "
                "writable again."
            ) from e

    def data_state(self, step: int) -> dict | None:
        """The input pipeline state saved with the checkpoint at ``step`` (None if none was)."""
        if not (self.directory / str(step) / "data").exists():
            return None
        return self._manager.restore(step, args=ocp.args.Composite(data=ocp.args.JsonRestore()))[
            "data"
        ]

    def wait(self) -> None:
        with self._reporting():
            self._manager.wait_until_finished()
        self._in_flight = None

    def close(self) -> None:
        """Waits for the last save and closes; after a reported failure, just closes (its
        error was raised once already)."""
        try:
            if not self._failed:
                self.wait()
        finally:
            if self._failed:
                # Let orbax's finalize thread end first: running on, it can write into the
                # partial directory after the removal below.
                with contextlib.suppress(Exception):
                    self._manager.wait_until_finished()
            with contextlib.suppress(Exception) if self._failed else contextlib.nullcontext():
                self._manager.close()
            if self._failed:  # orbax's threads may have written more after the failure
                self._remove_partial(settle=5.0)

    def _remove_partial(self, settle: float = 0.0) -> None:
        """Removes unfinished checkpoint directories. With ``settle`` > 0, repeats until none
        is left on two looks 0.2 s apart (at most ``settle`` seconds): a write still in flight
        in one of orbax's or TensorStore's threads can land in a directory being removed."""
        deadline = time.monotonic() + settle
        clear_once = False
        while True:
            partials = list(self.directory.glob("*.orbax-checkpoint-tmp*"))
            for partial in partials:
                shutil.rmtree(partial, ignore_errors=True)
            if not partials and (clear_once or settle <= 0):
                return
            clear_once = not partials
            if time.monotonic() >= deadline:
                return
            time.sleep(0.2)

    def restore_raw(self, step: int | None = None):
        """(tree, step): a checkpoint as saved (nested dicts of arrays), newest by default."""
        available = self.steps()
        if not available:
            raise FileNotFoundError(f"No checkpoint in {self.directory}.")
        step = available[-1] if step is None else step
        if step not in available:
            raise ValueError(f"No checkpoint at step {step} in {self.directory}; have {available}.")
        # Onto this process's first device, whatever the topology that saved it (a multi-host
        # run's checkpoint read by inspect or export on a laptop).
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree.map(
            lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device),
            self._saved_tree(step),
        )
        tree = self._restore(step, ocp.args.StandardRestore(target))
        self._verify(step, tree)
        return tree, step

    def _saved_tree(self, step: int):
        """Shapes and dtypes of the train state saved at ``step``, as nested dicts."""
        metadata = ocp.StandardCheckpointer().metadata(self.directory / str(step) / "default")
        return metadata.item_metadata.tree

    def _restore(self, step: int, args):
        return self._manager.restore(step, args=ocp.args.Composite(default=args))["default"]

    def restore_latest(self, abstract_state):
        """(state, step) from the newest restorable checkpoint, or (None, 0) if there is none.

        ``abstract_state`` gives shapes, dtypes and shardings (``jax.ShapeDtypeStruct`` leaves).
        A checkpoint that cannot be read *now* (permissions, I/O errors) raises
        ``CheckpointUnreadable`` and is left in place; a corrupt one is moved aside and the
        previous one tried; when every checkpoint was corrupt, ``NoRestorableCheckpoint`` lists
        them instead of letting the run start again from step 0.
        """
        tried = []
        for step in reversed(self.steps()):
            try:
                state = self._restore_renamed(step, abstract_state)
                logging.info("Resumed from checkpoint at step %d in %s", step, self.directory)
                return state, step
            except Exception as e:  # orbax raises many types for unreadable data
                if _cannot_read_now(e):
                    raise CheckpointUnreadable(
                        f"Checkpoint at step {step} in {self.directory} cannot be read now "
                        f"({type(e).__name__}: {e}); it is left in place. Fix the access and "
                        "run again."
                    ) from e
                tried.append(f"step {step} ({type(e).__name__}: {str(e)[:200]})")
                self._move_aside(step, e)
        if tried:
            raise NoRestorableCheckpoint(
                f"No checkpoint in {self.directory} could be restored; tried "
                f"{'; '.join(tried)}. They were moved to {self.corrupt_dir}. Not starting "
                "again from step 0 over them: use another workdir, or move the workdir's "
                "checkpoints_corrupt/ and metrics away to start afresh here."
            )
        return None, 0

    def _restore_renamed(self, step: int, abstract_state):
        saved = set(self._saved_tree(step))
        renamed = {new: old for new, old in RENAMED.items() if old in saved and new not in saved}
        target = {renamed.get(k, k): v for k, v in abstract_state.items()}
        state = self._restore(step, ocp.args.StandardRestore(target))
        self._verify(step, state)
        return {new: state.pop(old) for new, old in renamed.items() if old in state} | state

    def _verify(self, step: int, tree) -> None:
        """Raises ``ChecksumMismatch`` naming the arrays whose bytes differ from the save's
        (checkpoints written before checksums were: nothing to verify)."""
        if not (self.directory / str(step) / "checksums").exists():
            return
        saved = self._manager.restore(
            step, args=ocp.args.Composite(checksums=ocp.args.JsonRestore())
        )["checksums"]
        now = checksums(tree)
        bad = sorted(k for k in saved if k in now and now[k] != saved[k])
        if bad:
            raise ChecksumMismatch(
                f"checkpoint {step}: {len(bad)} array(s) differ from what was saved "
                f"({', '.join(bad[:5])})"
            )

    def _move_aside(self, step: int, error: Exception) -> None:
        target = self.corrupt_dir / f"{step}-{time.strftime('%Y%m%d-%H%M%S')}"
        logging.warning(
            "Checkpoint at step %d could not be restored (%s: %s); moving it to %s and trying "
            "the previous one.",
            step,
            type(error).__name__,
            error,
            target,
        )
        self._manager.close()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(self.directory / str(step)), str(target))
        self._manager = self._open()


def checksums(tree) -> dict[str, str]:
    """'/'-joined path → SHA-256 of the array's bytes, for every array this process holds
    whole (a multi-host run's sharded arrays are verified by the process that saved them)."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            continue
        array = np.ascontiguousarray(np.asarray(jax.device_get(leaf)))
        digest = hashlib.sha256(str((array.dtype.str, array.shape)).encode())
        digest.update(array.tobytes())
        out["/".join(str(getattr(k, "key", k)) for k in path)] = digest.hexdigest()
    return out


class ChecksumMismatch(ValueError):
    """A checkpoint's arrays are not the bytes that were saved (bit rot, a damaged copy)."""


class CheckpointUnreadable(OSError):
    """A checkpoint exists but cannot be read now (permissions, I/O)."""


class NoRestorableCheckpoint(RuntimeError):
    """Every checkpoint of a workdir was corrupt."""


def _cannot_read_now(error: BaseException) -> bool:
    """Permission and I/O errors anywhere in the exception chain: the data may be fine."""
    return any(
        isinstance(e, PermissionError)
        or (isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EPERM, errno.EIO))
        for e in storage.chain(error)
    )
