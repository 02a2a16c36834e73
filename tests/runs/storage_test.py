"""Read-only workdir and full disk: one clear error at the start or at the failing save, and
nothing already saved is lost (the run resumes from the newest intact checkpoint)."""

import errno
import os
import pathlib
import subprocess
import sys
import uuid

import pytest

from bnnlab import train
from bnnlab.runs import checkpoint, metrics, storage

import recipes

TENSORSTORE_ENOSPC = (
    'RESOURCE_EXHAUSTED: Error writing "params.x/0" in OCDBT database: Failed to write 14268 '
    "bytes to file 5: No space left on device [os_error_code='28']"
)


def _smoke(**overrides):
    return recipes.config("smoke", **overrides)


def _tree(path: pathlib.Path) -> dict:
    return {str(f.relative_to(path)): f.read_bytes() for f in path.rglob("*") if f.is_file()}


@pytest.fixture
def tmpfs(tmp_path, request):
    """A file system of its own, 4 MB unless the test's ``size`` mark says otherwise (needs the
    right to mount, as root in a container). ``huge=never``: a kernel that backs tmpfs files with
    2 MB pages would fill 4 MB with two small files."""
    mark = request.node.get_closest_marker("size")
    mount = tmp_path / f"fs-{uuid.uuid4().hex[:6]}"
    mount.mkdir()
    size = mark.args[0] if mark else "4m"
    options = f"size={size},huge=never"
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_write_failures_are_recognised_however_they_arrive():
    assert storage.write_failure(OSError(errno.ENOSPC, "full")) == "no space left on the device"
    assert storage.write_failure(ValueError(TENSORSTORE_ENOSPC)) == "no space left on the device"
    try:
        try:
            raise OSError(errno.EROFS, "Read-only file system")
        except OSError as e:
            raise RuntimeError("wrapped") from e
    except RuntimeError as e:
        assert storage.write_failure(e) == "the file system is read-only"
    assert storage.write_failure(ValueError("a shape mismatch")) is None
    assert storage.write_failure(OSError(errno.EIO, "I/O error")) is None


def test_read_only_workdir_is_refused_at_the_start_and_left_as_it_was(tmpfs):
    workdir = tmpfs / "run"
    train.train_and_evaluate(_smoke(total_steps=8), workdir, stop_at=4)
    before = _tree(workdir)
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    with pytest.raises(storage.WorkdirNotWritable, match=r"read-only\. Nothing was written"):
        train.train_and_evaluate(_smoke(total_steps=8), workdir)
    assert _tree(workdir) == before
    # A fresh workdir under it: the same single error, not a PermissionError from mkdir.
    with pytest.raises(storage.WorkdirNotWritable, match="read-only"):
        train.train_and_evaluate(_smoke(total_steps=8), tmpfs / "fresh")


def test_unwritable_workdir_is_refused_before_the_lock(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(storage.tempfile, "mkstemp", refuse)
    with pytest.raises(storage.WorkdirNotWritable, match="permission denied"):
        train.train_and_evaluate(_smoke(total_steps=4), tmp_path / "run")
    assert not (tmp_path / "run" / ".lock").exists()


def test_resume_without_room_for_a_checkpoint_is_refused(tmp_path, monkeypatch):
    workdir = tmp_path / "run"
    train.train_and_evaluate(_smoke(total_steps=8), workdir, stop_at=4)
    before = _tree(workdir)
    size = storage.directory_bytes(workdir / "checkpoints" / "4")
    usage = storage.shutil.disk_usage(workdir)
    monkeypatch.setattr(storage.shutil, "disk_usage", lambda p: usage._replace(free=size // 2))
    with pytest.raises(storage.WorkdirNotWritable, match=r"the next checkpoint needs about"):
        train.train_and_evaluate(_smoke(total_steps=8), workdir)
    assert _tree(workdir) == before


def _usage(directory: pathlib.Path) -> str:
    """What holds the space of a full file system, for a failure message."""
    stat = os.statvfs(directory)
    files = sorted(directory.rglob("*"), key=lambda f: -f.lstat().st_blocks)[:12]
    held = ", ".join(f"{f.relative_to(directory)}: {f.lstat().st_blocks * 512} B" for f in files)
    return f"{stat.f_bavail * stat.f_frsize} B free, {stat.f_favail} inodes free; {held}"


def _fill(filler: pathlib.Path) -> None:
    """Fills the file system holding ``filler``, a file made before the run: writing into it
    needs no new inode, so the fill itself cannot be what the full disk refuses."""
    written = 0
    with open(filler, "r+b") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
                written += 65536
        except OSError as e:
            assert e.errno == errno.ENOSPC
    assert written, f"the disk was full before the fill: {_usage(filler.parent)}"


def test_disk_full_at_a_save_is_one_error_and_the_run_resumes(tmpfs, monkeypatch):
    workdir = tmpfs / "run"
    save = checkpoint.Checkpoints.save
    filler = tmpfs / "filler"
    filler.touch()

    def fill_then_save(self, step, state, data=None):
        if step == 16:  # the disk fills up between the first and the second checkpoint
            _fill(filler)
        return save(self, step, state, data)

    monkeypatch.setattr(checkpoint.Checkpoints, "save", fill_then_save)
    with pytest.raises(storage.SaveFailed) as raised:
        train.train_and_evaluate(_smoke(), workdir)
    message = str(raised.value)
    assert "at step 16" in message and "no space left on the device" in message
    assert "resume from step 8" in message
    assert sorted(p.name for p in (workdir / "checkpoints").iterdir()) == ["8"]  # partial gone
    monkeypatch.undo()
    filler.unlink()  # room again: the same call resumes from step 8 and finishes
    result = train.train_and_evaluate(_smoke(), workdir)
    assert result["examples"] == 359
    assert [r["step"] for r in metrics.read(workdir) if r["split"] == "eval"][-1] == 16


def test_a_background_save_refused_by_the_disk_stops_the_run_once(tmp_path, monkeypatch):
    """Without a mount: orbax's own error (tensorstore's text) from the save of step 8."""
    workdir = tmp_path / "run"
    original = checkpoint.ocp.CheckpointManager.save

    def failing(self, step, *args, **kwargs):
        if step == 8:
            raise ValueError(TENSORSTORE_ENOSPC)
        return original(self, step, *args, **kwargs)

    monkeypatch.setattr(checkpoint.ocp.CheckpointManager, "save", failing)
    with pytest.raises(storage.SaveFailed, match=r"at step 8 .* no checkpoint was saved before it"):
        train.train_and_evaluate(_smoke(), workdir)
    assert not [p for p in (workdir / "checkpoints").iterdir() if p.name.isdigit()]


def test_metrics_file_refused_by_the_disk_is_one_error(tmp_path):
    writer = metrics.Writer(tmp_path, 0, tensorboard=False)

    class Full:
        def write(self, text):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def close(self):
            pass

    writer._file = Full()
    with pytest.raises(storage.SaveFailed, match=r"metrics\.jsonl, TensorBoard\): no space left"):
        writer.write(1, "train", {"loss": 1.0})


def test_a_refused_tensorboard_flush_stops_its_writer_thread(tmp_path):
    """Without the fix tensorboardX's thread outlived the run and died with a traceback in
    whatever ran next (seen in CI after the full-disk test)."""
    writer = metrics.Writer(tmp_path, 0)
    writer.write(1, "train", {"loss": 1.0})
    threads = [w.event_writer._worker for w in writer._tb.all_writers.values()]
    assert threads and all(t.is_alive() for t in threads)

    def full():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    for w in writer._tb.all_writers.values():
        w.event_writer._ev_writer.flush = full
    with pytest.raises(storage.SaveFailed, match="no space left"):
        writer.close()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)


def _main(workdir):
    """``python -m bnnlab.main`` on the smoke recipe, from the repository root."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "bnnlab.main",
            "--config=experiments/smoke.py",
            f"--workdir={workdir}",
        ],
        capture_output=True,
        text=True,
        cwd=pathlib.Path(__file__).parents[2],
    )


def test_the_command_line_prints_a_refusal_alone(tmp_path):
    from bnnlab.runs import lock

    with lock.WorkdirLock(tmp_path):  # this process holds the workdir
        done = _main(tmp_path)
    assert done.returncode == 1
    assert f"error: {tmp_path} is in use by another run (process {os.getpid()}" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
@pytest.mark.size("300k")  # room for the first smoke checkpoint, not the second
def test_the_command_line_on_a_full_disk_ends_with_one_error(tmpfs):
    done = _main(tmpfs / "run")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("error: Could not save the checkpoint at step 16")
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    assert sorted(p.name for p in (tmpfs / "run" / "checkpoints").iterdir()) == ["8"]
