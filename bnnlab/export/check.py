"""Checks an export against the run it came from, example by example on the run's test set."""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from bnnlab import data, runs
from bnnlab.export.runtime import PackedModel


@dataclasses.dataclass(frozen=True)
class Agreement:
    examples: int
    same_prediction: int  # examples whose argmax agrees
    max_abs_logit_diff: float
    max_abs_logit: float
    trained_accuracy: float
    packed_accuracy: float
    trained_seconds: float  # the float model under XLA, jitted, after a warm-up batch
    packed_seconds: float

    def __str__(self) -> str:
        return (
            f"{self.same_prediction}/{self.examples} predictions equal; max |Δlogit| "
            f"{self.max_abs_logit_diff:.3g} (max |logit| {self.max_abs_logit:.3g}); accuracy "
            f"trained {100 * self.trained_accuracy:.2f} %, packed {100 * self.packed_accuracy:.2f} "
            f"%; test-set time trained {self.trained_seconds:.2f} s, packed "
            f"{self.packed_seconds:.2f} s"
        )


def against_run(packed: PackedModel, run: runs.Run, backend: str = "auto") -> Agreement:
    """Runs the trained model (eval mode) and ``packed`` on every test example of the run."""
    model, variables = run.model, run.variables
    _, eval_batches, _, _ = data.build(run.config)
    trained = jax.jit(lambda v, x: model.apply(v, x, train=False))
    batches = list(eval_batches())
    for fn in (lambda x: trained(variables, x), lambda x: packed(x, backend=backend)):
        jax.block_until_ready(fn(batches[0]["image"]))  # compile outside the timing
    totals = dict(n=0, same=0, diff=0.0, big=0.0, ok_t=0, ok_p=0, t_t=0.0, t_p=0.0)
    for batch in batches:
        mask, labels = batch["mask"], batch["label"]
        t0 = time.perf_counter()
        want = np.asarray(trained(variables, batch["image"]))
        t1 = time.perf_counter()
        got = np.asarray(packed(batch["image"], backend=backend))
        t2 = time.perf_counter()
        want, got, labels = want[mask], got[mask], labels[mask]
        totals["n"] += len(labels)
        totals["same"] += int(np.sum(want.argmax(-1) == got.argmax(-1)))
        totals["diff"] = max(totals["diff"], float(np.abs(want - got).max(initial=0.0)))
        totals["big"] = max(totals["big"], float(np.abs(want).max(initial=0.0)))
        totals["ok_t"] += int(np.sum(want.argmax(-1) == labels))
        totals["ok_p"] += int(np.sum(got.argmax(-1) == labels))
        totals["t_t"] += t1 - t0
        totals["t_p"] += t2 - t1
    n = max(totals["n"], 1)
    return Agreement(
        totals["n"],
        totals["same"],
        totals["diff"],
        totals["big"],
        totals["ok_t"] / n,
        totals["ok_p"] / n,
        totals["t_t"],
        totals["t_p"],
    )


def against_workdir(
    packed: PackedModel, workdir, step: int | None = None, backend: str = "auto"
) -> Agreement:
    """``against_run`` for the newest (or ``step``) checkpoint of ``workdir``."""
    return against_run(packed, runs.load(workdir, step), backend)
