"""``train_and_evaluate(config, workdir)``: the whole training run, resumable at any checkpoint.

``run(experiment, workdir)`` is the loop every trainer uses (the reconfigurable BNN's too):
restore the newest checkpoint if the workdir has one, then train with one jitted, sharded,
donated step per batch, logging, evaluating, collecting diagnostics and checkpointing on fixed
step boundaries (so a run resumed from a periodic checkpoint logs and saves exactly what an
uninterrupted one would; after ``stop_at`` between two log steps, the next record averages the
shorter window), and stop on a non-finite loss naming the last good checkpoint.

With several tasks, each task's loader has its own input pipeline: ``config.data_workers``
worker processes per task.
"""

from __future__ import annotations

import logging
import math
import pathlib
import time

import jax
import numpy as np
from flax import serialization, traverse_util

from bnnlab import data, runs
from bnnlab.diagnostics import tracking
from bnnlab.runs import checkpoint, identity, lock, metrics, storage
from bnnlab.train import console
from bnnlab.train import experiment as experiment_lib

TIMING_KEYS = ("step_time", "images_per_sec")
# Train metrics averaged over the logging window (per task); everything else (lr, progress, τ,
# p, …) is a schedule value and is logged as it was at the logged step.
WINDOW_MEAN_KEYS = ("loss", "accuracy", "grad_norm", "param_norm")
EVAL_KEYS = ("accuracy", "loss")


def train_and_evaluate(config, workdir: str | pathlib.Path, stop_at: int | None = None) -> dict:
    """Trains ``config`` in ``workdir`` (resuming if it holds checkpoints); returns the final
    eval metrics.

    ``stop_at`` ends the run early at that step (after checkpointing it), as a pre-empted job
    would; running again continues from there.
    """
    return run(experiment_lib.build(config), workdir, stop_at)


def _suffixed(metrics_: dict, task: experiment_lib.Task) -> dict:
    return {f"{k}/{task.name}" if task.name else k: v for k, v in metrics_.items()}


def evaluate(exp: experiment_lib.Experiment, state) -> dict:
    """Accuracy and loss on every task's eval set (per task and their mean when several)."""
    out = {}
    for task in exp.tasks:
        totals = {"correct": 0.0, "loss_sum": 0.0, "count": 0.0}
        for batch in task.eval_batches():
            sums = exp.eval_step(state, exp.device_batch(batch), task.collections)
            for k, v in jax.device_get(sums).items():
                totals[k] += float(v)
        count = max(totals["count"], 1.0)
        result = {
            "accuracy": totals["correct"] / count,
            "loss": totals["loss_sum"] / count,
            "examples": int(totals["count"]),
        }
        out.update(_suffixed(result, task))
    if len(exp.tasks) > 1 or exp.tasks[0].name:  # named tasks: their mean under the plain keys
        for k in EVAL_KEYS:
            out[k] = float(np.mean([out[f"{k}/{t.name}"] for t in exp.tasks]))
    return out


def _restore_or_init(exp: experiment_lib.Experiment, ckpts: checkpoint.Checkpoints):
    target = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
        exp.abstract_state,
        exp.state_sharding,
    )
    restored, step = ckpts.restore_latest(serialization.to_state_dict(target))
    if restored is not None:
        return serialization.from_state_dict(exp.abstract_state, restored), step
    state = exp.init_state()
    if exp.config.init_from:
        state = _warm_start(exp, state, exp.config.init_from)
    return state, 0


def _warm_start(exp: experiment_lib.Experiment, state, source: str):
    """Fresh state with the params and statistics of a trained workdir (fine-tuning)."""
    run_ = runs.load(source)
    new = {}
    for collection in runs.COLLECTIONS:
        current = getattr(state, collection)
        loaded = run_.variables.get(collection, {})
        want = jax.tree.map(lambda a: (a.shape, str(a.dtype)), current)
        got = jax.tree.map(lambda a: (a.shape, str(a.dtype)), loaded)
        if want != got:
            raise ValueError(
                f"config.init_from = {source!r}: its {collection} do not match this model "
                f"(model_name/model/quant must describe the same architecture)."
            )
        new[collection] = jax.device_put(loaded, jax.tree.map(lambda a: a.sharding, current))
    logging.info("Initialised from %s (step %d)", source, run_.step)
    codes = state.tracking
    if codes:
        codes = tracking.init_tracking(new["params"], exp.track_layers)
    return state.replace(**new, tracking=codes)


class _Batches:
    """The training batches of consecutive steps, round robin over the tasks (step s takes the
    next batch of task s mod M), with one checkpointable state."""

    def __init__(self, exp: experiment_lib.Experiment, start: int, state: dict | None):
        m = len(exp.tasks)
        states = [state] if m == 1 else (state or {}).get("tasks", [None] * m)
        self._iterators = []
        for t, (task, task_state) in enumerate(zip(exp.tasks, states, strict=True)):
            workers = data.resolve_workers(exp.config.data_workers, task.encoded_images)
            first = (start - t + m - 1) // m  # batches of task t that steps < start took
            self._iterators.append(task.loader.iterate(first, workers=workers, state=task_state))
        self._step = start

    def __next__(self) -> dict:
        batch = next(self._iterators[self._step % len(self._iterators)])
        self._step += 1
        return batch

    def get_state(self) -> dict:
        if len(self._iterators) == 1:
            return self._iterators[0].get_state()
        return {"step": self._step, "tasks": [it.get_state() for it in self._iterators]}

    def close(self) -> None:
        for iterator in self._iterators:
            iterator.close()


def _data_state(ckpts: checkpoint.Checkpoints, step: int) -> dict | None:
    """The input pipeline state saved at ``step``, if it is for that step."""
    state = ckpts.data_state(step) if step else None
    if state is not None and state.get("step") != step:
        # Batches are a pure function of the step, so starting at the checkpoint's step
        # serves the same data; a state that disagrees with it is not trusted.
        logging.warning(
            "The input pipeline state in checkpoint %d is for step %s; restarting the "
            "pipeline at step %d instead.",
            step,
            state.get("step"),
            step,
        )
        return None
    return state


class _Window:
    """The train metrics of the steps since the last log line, reduced to one record."""

    def __init__(self, exp: experiment_lib.Experiment):
        self._exp, self._items, self._start = exp, [], time.time()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, task: experiment_lib.Task, step_metrics: dict) -> None:
        self._items.append((task, step_metrics))

    def loss(self) -> float:
        """The mean loss of the steps since the last record (0 when there are none)."""
        if not self._items:
            return 0.0
        return float(np.mean(jax.device_get([m["loss"] for _, m in self._items])))

    def record(self, done: int) -> dict:
        """The window's record; starts the next window."""
        host = jax.device_get([m for _, m in self._items])
        names = [task.name for task, _ in self._items]
        record = {}
        for k in host[0]:
            if k not in WINDOW_MEAN_KEYS:
                record[k] = float(host[-1][k])
                continue
            per_task = {
                name: float(np.mean([m[k] for m, n in zip(host, names, strict=True) if n == name]))
                for name in dict.fromkeys(names)
            }
            record[k] = float(np.mean(list(per_task.values())))
            record.update({f"{k}/{name}": v for name, v in per_task.items() if name})
        elapsed = time.time() - self._start
        record["step_time"] = elapsed / len(host)
        record["images_per_sec"] = len(host) * self._exp.config.batch_size / elapsed
        record["epoch"] = done / self._exp.steps_per_epoch
        self._items, self._start = [], time.time()
        return record


class _Logger:
    """Where a run's records go: the metrics file, the log and the progress bar."""

    def __init__(self, exp, workdir: pathlib.Path, start: int, primary: bool):
        self.total = exp.total_steps
        self.writer = metrics.Writer(workdir, start, enabled=primary)
        self.bar = console.progress_bar(exp.config, primary, self.total, start)
        self.compiles = console.CompileNotices()
        self.hparams = None  # (config, final results) of a finished run

    def step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def train(self, done: int, record: dict) -> None:
        self.writer.write(done, "train", record)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{record['loss']:.3f}", acc=f"{record['accuracy']:.3f}")
            return
        logging.info(
            "step %d/%d: loss %.4f, accuracy %.4f, lr %.4g, %.0f img/s",
            done,
            self.total,
            record["loss"],
            record["accuracy"],
            record["lr"],
            record["images_per_sec"],
        )

    def eval(self, done: int, result: dict) -> None:
        self.writer.write(done, "eval", result)
        per_task = {k: round(v, 4) for k, v in result.items() if k.startswith("accuracy/")}
        logging.info(
            "eval at step %d: accuracy %.4f, loss %.4f%s",
            done,
            result["accuracy"],
            result["loss"],
            f" {per_task}" if per_task else "",
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.hparams is not None:
            self.writer.hparams(*self.hparams)
        self.writer.close()


def _binary_kernels(exp, state) -> dict:
    """The latent kernels of the binary layers (what the diagnostics track), on the host."""
    if not exp.track_layers:
        return {}
    flat = traverse_util.flatten_dict(state.params, sep="/")
    kernels = {p: flat.get(f"{p}/kernel") for p in tracking.binary_layers(exp.track_layers)}
    # Only what this process holds whole (parameters sharded across hosts are skipped).
    return jax.device_get(
        {
            p: k
            for p, k in kernels.items()
            if k is not None and (jax.process_count() == 1 or k.is_fully_replicated)
        }
    )


def _check_finite(loss: float, done: int, steps: int, last_saved: int, ckpts) -> None:
    if math.isfinite(loss):
        return
    last = (
        f"The last good checkpoint is step {last_saved} in {ckpts.directory}."
        if last_saved
        else "No checkpoint was saved yet."
    )
    raise FloatingPointError(
        f"Non-finite loss ({loss}) in steps {done - steps + 1}–{done}; stopping. {last}"
    )


def run(exp: experiment_lib.Experiment, workdir, stop_at: int | None = None) -> dict:
    """Trains ``exp`` in ``workdir`` from its newest checkpoint; returns the final eval."""
    workdir = pathlib.Path(workdir)
    if jax.process_index() != 0:  # the processes of one run share its workdir
        return _run(exp, workdir, stop_at)
    saved = storage.saved_steps(workdir / checkpoint.DIRECTORY)
    newest = workdir / checkpoint.DIRECTORY / str(saved[-1]) if saved else None
    state_bytes = sum(a.size * a.dtype.itemsize for a in jax.tree.leaves(exp.abstract_state))
    storage.check_writable(workdir, newest, state_bytes)
    with lock.WorkdirLock(workdir):
        return _run(exp, workdir, stop_at)


def _close(closers, failing: bool) -> None:
    """Runs every closer; while an error is already propagating, their own errors (a full
    disk fails them all again) are logged in one line each instead of burying it."""
    first = None
    for close in closers:
        try:
            close()
        except Exception as e:
            if failing or first is not None:
                logging.warning("While stopping: %s: %s", type(e).__name__, str(e)[:200])
            else:
                first = e
    if first is not None:
        raise first


def _run(exp: experiment_lib.Experiment, workdir: pathlib.Path, stop_at: int | None) -> dict:
    config, total = exp.config, exp.total_steps
    primary = jax.process_index() == 0
    if primary:
        identity.check(config, workdir)  # before any checkpoint is touched
    ckpts = checkpoint.Checkpoints(workdir, config.keep_checkpoints)
    if primary:
        logging.info("Restoring the newest checkpoint, or compiling the model's initialisation.")
    state, start = _restore_or_init(exp, ckpts)
    if primary and exp.describe is not None:
        exp.describe(exp)
    end = total if stop_at is None else min(stop_at, total)
    if start >= total:
        logging.info("Already trained to step %d; evaluating only.", start)
        end = start
    log = _Logger(exp, workdir, start, primary)
    batches = _Batches(exp, start, _data_state(ckpts, start))
    window, last_saved, final = _Window(exp), start, {}
    failing = True
    try:
        for step in range(start, end):
            task = exp.task_of(step)
            batch = exp.device_batch(next(batches))
            log.compiles.before("train", "the training step")
            state, step_metrics = exp.train_step(
                state, batch, task.collections, exp.teacher_variables
            )
            window.add(task, step_metrics)
            done = step + 1
            log.step()
            if done % config.log_every_steps == 0 or done == total:
                steps_logged = len(window)
                record = window.record(done)
                _check_finite(record["loss"], done, steps_logged, last_saved, ckpts)
                log.train(done, record)
                ckpts.check()  # a background save the disk refused stops the run now
            if exp.diagnostics_step is not None and done % config.diagnostics_every_steps == 0:
                log.compiles.before("diagnostics", "the diagnostics step (per-layer statistics)")
                diagnostics, state = exp.diagnostics_step(state, batch, task.collections)
                log.writer.write(done, "diagnostics", jax.device_get(diagnostics))
                if log.writer.enabled:
                    log.writer.histograms(done, _binary_kernels(exp, state))
            if exp.schedule.evaluates_at(done, config.eval_every_epochs):
                log.compiles.before("eval", "the eval step")
                final = {**evaluate(exp, state), "epoch": done / exp.steps_per_epoch}
                log.eval(done, final)
            if done % config.checkpoint_every_steps == 0 or done in (total, end):
                # Off the logging grid (stop_at), the steps since the last record are checked
                # here: a saved checkpoint is always one a rerun can trust.
                _check_finite(window.loss(), done, len(window), last_saved, ckpts)
                ckpts.save(done, serialization.to_state_dict(state), data=batches.get_state())
                last_saved = done
        if start >= total:
            final = evaluate(exp, state)
        if final and end == total:
            log.hparams = (config.to_dict(), final)  # written at close, after the checkpoints
        failing = False
    finally:
        # The checkpoints first: their failure is the one to report (it says what is intact).
        _close((batches.close, ckpts.close, log.close), failing)
    return final
