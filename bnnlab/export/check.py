"""Checks an export against the run it came from, example by example on the run's test set."""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np

from bnnlab import data, runs
from bnnlab.data import pipeline
from bnnlab.export import inputs
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


def _raw_batches(run: runs.Run, packed: PackedModel):
    """The test images as the dataset gives them, batched as the run's eval batches (None when
    they cannot be batched raw: ImageNet-style eval crops images of any size)."""
    spec = packed.manifest.get("input")
    if not spec or spec.get("transform") == "imagenet":
        return None
    source = data.load_sources(run.config.dataset, run.config.data_dir)[1]
    keep = lambda b: {"image": np.asarray(b["image"]), "label": np.asarray(b["label"])}  # noqa: E731
    return list(pipeline.eval_batches(source, run.config.eval_batch_size, keep))


def against_run(packed: PackedModel, run: runs.Run, backend: str = "auto") -> Agreement:
    """Runs the trained model (eval mode, on the run's preprocessed test batches) and
    ``packed`` (on the same test images as the dataset gives them, so its own preprocessing is
    checked too) on every test example of the run."""
    model, variables = run.model, run.variables
    _, eval_batches, _, _ = data.build(run.config)
    trained = jax.jit(lambda v, x: model.apply(v, x, train=False))
    batches = list(eval_batches())
    raw = _raw_batches(run, packed)
    for batch, pixels in zip(batches, raw or [None] * len(batches), strict=True):
        batch["pixels"] = pixels["image"] if pixels is not None else None

    def run_packed(batch):
        if batch["pixels"] is None:
            return packed(batch["image"], backend=backend, normalized=True)
        return packed(batch["pixels"], backend=backend)

    for fn in (lambda b: trained(variables, b["image"]), run_packed):
        jax.block_until_ready(fn(batches[0]))  # compile outside the timing
    totals = dict(n=0, same=0, diff=0.0, big=0.0, ok_t=0, ok_p=0, t_t=0.0, t_p=0.0)
    for batch in batches:
        mask, labels = batch["mask"], batch["label"]
        t0 = time.perf_counter()
        want = np.asarray(trained(variables, batch["image"]))
        t1 = time.perf_counter()
        got = np.asarray(run_packed(batch))
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


def tflite_against_run(path, packed: PackedModel, run: runs.Run):
    """The ``.tflite`` file at ``path`` in LCE's interpreter against ``packed`` on the run's
    test images (``tflite.check``), or a line saying why it was not run."""
    from bnnlab.export.tflite import check as tflite_check
    from bnnlab.export.tflite import lce

    if not lce.available():
        return (
            f"{path}: not run in LCE's interpreter (none at {lce.python()}; "
            "`python -m bnnlab.export.tflite.lce --setup` makes one)"
        )
    raw = _raw_batches(run, packed)
    if raw is None:
        return f"{path}: not run in LCE (its test images need the eval crop; pass them resized)"
    images = np.concatenate([b["image"][b["mask"]] for b in raw])
    spec = packed.manifest["input"]
    # The file takes unit pixels already resized as the run's evaluation does: the export's
    # own preprocessing, its normalisation undone.
    model_input = np.asarray(inputs._pixels_to_model(images, spec))
    images = np.clip(model_input * np.float32(spec["std"]) + np.float32(spec["mean"]), 0, 1)
    batch = tflite_check.file_batch(path)
    images = images[: len(images) // batch * batch]
    return tflite_check.against_export(path, packed, images)
