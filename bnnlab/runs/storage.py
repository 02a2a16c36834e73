"""The workdir's disk: refuse at the start when nothing could be saved, and turn a write that
fails mid-run (disk full, a file system remounted read-only) into one clear error.

At the start (``check_writable``), before the lock, the config or any checkpoint is touched: the
workdir must accept a file (a probe written, synced and removed), and a resumed run must have
room for one more checkpoint as large as its newest. A fresh run only gets a warning when the
free space is below its train state's bytes, because the size on disk depends on the
checkpoint format's compression.

Mid-run, ``write_failure`` recognises the errors that mean "the disk refused the write" however
they arrive: an ``OSError`` (Python's own writes: metrics, config), or tensorstore's
``ValueError`` text (``os_error_code='28'``) from orbax's background save threads.
"""

from __future__ import annotations

import errno
import logging
import os
import pathlib
import re
import shutil
import tempfile

# errno → the words for it; these mean the disk (not the data or the code) refused a write.
WRITE_ERRNOS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
}
_TENSORSTORE_CODE = re.compile(r"os_error_code='?(\d+)")


class WorkdirNotWritable(OSError):
    """The workdir cannot take this run's files; nothing was written."""


class SaveFailed(OSError):
    """A write to the workdir failed mid-run; what was saved before it is intact."""


def chain(error: BaseException | None):
    """``error``, then its cause (or context), and so on, each once."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def write_failure(error: BaseException | None) -> str | None:
    """Why the disk refused a write, if that is what ``error`` (or its cause) says; else None."""
    for e in chain(error):
        if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
            return WRITE_ERRNOS[e.errno]
        match = _TENSORSTORE_CODE.search(str(e))
        if match and int(match.group(1)) in WRITE_ERRNOS:
            return WRITE_ERRNOS[int(match.group(1))]
    return None


def saved_steps(directory: pathlib.Path) -> list[int]:
    """The finished checkpoints in ``directory`` (orbax names them by step; unfinished ones
    carry a ``.orbax-checkpoint-tmp`` suffix), oldest first."""
    if not directory.is_dir():
        return []
    return sorted(int(d.name) for d in directory.iterdir() if d.name.isdigit())


def directory_bytes(path: pathlib.Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def check_writable(workdir: pathlib.Path, newest_checkpoint: pathlib.Path | None, state_bytes):
    """Raises ``WorkdirNotWritable`` unless ``workdir`` takes a file and, when resuming, has
    room for another checkpoint the size of ``newest_checkpoint``."""
    try:
        workdir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=workdir, prefix=".write-probe-")
        try:
            os.write(fd, b"bnnlab")
            os.fsync(fd)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as e:
        reason = WRITE_ERRNOS.get(e.errno, e.strerror or str(e))
        raise WorkdirNotWritable(
            f"Cannot write to the workdir {workdir}: {reason}. Nothing was written; its "
            "checkpoints and metrics are as they were. Give a writable --workdir (to resume "
            "this run elsewhere, copy the workdir there first)."
        ) from e
    free = shutil.disk_usage(workdir).free
    if newest_checkpoint is not None:
        need = directory_bytes(newest_checkpoint)
        if free < need:
            raise WorkdirNotWritable(
                f"Only {_mb(free)} free on the disk of {workdir}; the next checkpoint needs "
                f"about {_mb(need)} (the size of {newest_checkpoint.name}). Nothing was "
                "written. Free space and run the same command again to resume."
            )
    elif free < state_bytes:
        logging.warning(
            "Only %s free on the disk of %s; a checkpoint holds about %s of arrays. The first "
            "save may fail.",
            _mb(free),
            workdir,
            _mb(state_bytes),
        )
