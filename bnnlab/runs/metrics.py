"""Metrics: JSON lines in the workdir (the source of truth) plus TensorBoard event files.

On resume, records logged after the restored step (by the interrupted run) are dropped, so the
file reads as if the run had never stopped.
"""

from __future__ import annotations

import json
import logging
import math
import os
import pathlib

import numpy as np
from flax import traverse_util

from bnnlab.runs import storage

METRICS_FILE = "metrics.jsonl"


def read(workdir: str | pathlib.Path) -> list[dict]:
    """All records of a workdir's metrics file.

    A malformed last line (a crash in the middle of writing it) is reported and skipped: the
    record it was is rewritten by the resumed run. A malformed line before the last is damage
    this reader cannot repair, and raises naming it.
    """
    path = pathlib.Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    lines = [(i, line) for i, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    records = []
    for n, (number, line) in enumerate(lines):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as e:
            if n < len(lines) - 1:
                raise ValueError(
                    f"{path}, line {number}, is not a JSON record ({e}); only a damaged last "
                    "line is skipped."
                ) from e
            logging.warning(
                "%s: skipping its last line %d, cut off mid-write: %r", path, number, line[:80]
            )
    return records


class Writer:
    """Writes ``{"step": s, "split": "train"|"eval", ...}`` records (only on process 0)."""

    def __init__(
        self,
        workdir: str | pathlib.Path,
        resume_step: int,
        enabled: bool = True,
        tensorboard: bool = True,
    ):
        self.enabled = enabled
        self.path = pathlib.Path(workdir) / METRICS_FILE
        self._tb = None
        if not enabled:
            return
        kept = [r for r in read(workdir) if r["step"] <= resume_step]
        tmp = self.path.with_suffix(".tmp")
        try:
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
            os.replace(tmp, self.path)  # only a complete rewrite replaces the file
            self._file = self.path.open("a")
        except OSError as e:
            tmp.unlink(missing_ok=True)
            self._refused(e)
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(
                    str(pathlib.Path(workdir) / "tensorboard"), purge_step=resume_step + 1
                )
            except ImportError:
                logging.warning("tensorboardX is not installed: no TensorBoard event files.")

    def write(self, step: int, split: str, metrics: dict) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), "split": split}
        record.update({k: _plain(v) for k, v in metrics.items()})
        try:
            self._file.write(json.dumps(record) + "\n")
            self._file.flush()
            if self._tb is not None:
                for k, v in record.items():
                    if k not in ("step", "split") and isinstance(v, (int, float)):
                        self._tb.add_scalar(f"{split}/{k}", v, step)
        except OSError as e:
            self._refused(e)

    def histograms(self, step: int, arrays: dict) -> None:
        """TensorBoard histograms (``weights/<name>``) of ``arrays`` at ``step``."""
        if not self.enabled or self._tb is None:
            return
        try:
            for name, values in arrays.items():
                # 64 bins: enough to see a distribution, small enough for every diagnostics step.
                values = np.asarray(values, np.float32).ravel()
                self._tb.add_histogram(f"weights/{name}", values, step, bins=64)
        except OSError as e:
            self._refused(e)

    def hparams(self, config: dict, results: dict) -> None:
        """The run's hyper-parameters (the config's scalar and string fields, flattened) with
        its final ``results``, for TensorBoard's HParams dashboard (written under
        ``tensorboard/hparams``)."""
        if not self.enabled or self._tb is None:
            return
        flat = {}
        for key, value in traverse_util.flatten_dict(config, sep=".").items():
            if isinstance(value, (bool, int, float, str)):
                flat[key] = value
            elif value is None:
                flat[key] = "None"
            elif isinstance(value, (list, tuple)):
                flat[key] = json.dumps(value)
        scores = {
            f"hparam/{k}": float(v)
            for k, v in results.items()
            if isinstance(v, (int, float)) and k.startswith(("accuracy", "loss"))
        }
        try:
            self._tb.add_hparams(flat, scores, name="hparams")
        except OSError as e:
            self._refused(e)

    def _refused(self, error: OSError):
        reason = storage.write_failure(error)
        if reason is None:
            raise error
        raise storage.SaveFailed(
            f"Could not write the metrics ({self.path}, TensorBoard): {reason}. Records up to "
            "the newest checkpoint are kept (a last line cut off mid-write is skipped on "
            "resume); rerun the same command once the disk has room or is writable again."
        ) from error

    def close(self) -> None:
        if not self.enabled:
            return
        refused = None
        try:
            self._file.close()
        except OSError as e:
            refused = e
        if self._tb is not None:
            try:
                self._tb.close()
            except OSError as e:
                refused = refused or e
                _stop_event_threads(self._tb)
        if refused is not None:
            self._refused(refused)


def _stop_event_threads(tb) -> None:
    """After a refused final flush, tensorboardX leaves its writer thread running; it would
    retry the flush and die with a traceback in whatever runs next. tensorboardX has no public
    way to abandon a writer, hence its private fields, best effort."""
    for writer in getattr(tb, "all_writers", {}).values():
        events = getattr(writer, "event_writer", None)
        worker = getattr(events, "_worker", None)
        if worker is None:
            continue
        worker._record_writer = _Discard()
        try:
            worker.stop()
        except Exception:
            pass
        events._closed = True  # its exit hook would flush (and fail) again


class _Discard:
    def write_event(self, event):
        pass

    def flush(self):
        pass


def _plain(value):
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf
    return value
