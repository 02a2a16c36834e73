"""A report on a training workdir: per-layer weight statistics of a checkpoint, and plots.

    python -m bnnlab.diagnostics --workdir=DIR [--step=N] [--out=DIR]

Prints a table per binary layer (bit entropy, latent-weight entropy, Laplace-vs-Gaussian fit,
quantization error, the quantizer's own statistics such as ReCU's dead fraction, flips since
the previous checkpoint) and writes ``weights.png`` (latent-weight histograms with each
quantizer's thresholds, one panel per binary layer), ``diagnostics.png`` (entropy, flip ratio,
dead fraction over training, from the metrics file), ``curves.png`` (loss and accuracy) and
``layers.json`` into ``--out`` (default ``DIR/inspect``).
"""

from __future__ import annotations

import json
import pathlib

import jax.numpy as jnp
from flax import traverse_util

from bnnlab import runs
from bnnlab.diagnostics import plots, stats, tracking
from bnnlab.layers import inventory
from bnnlab.runs import metrics


def progress_at(records, step: int):
    """The training progress the run logged at ``step`` (quantizer schedules depend on it)."""
    logged = [r for r in records if r["split"] == "train" and r["step"] <= step]
    return logged[-1]["progress"] if logged else None


def layer_table(params, layers, progress, previous_params=None) -> dict[str, dict]:
    """Per binary layer statistics of ``params`` (and flips against ``previous_params``)."""
    flat = traverse_util.flatten_dict(params, sep="/")
    prev = traverse_util.flatten_dict(previous_params, sep="/") if previous_params else None
    table = {}
    for path, q in tracking.binary_layers(layers).items():
        w = jnp.asarray(flat[f"{path}/kernel"], jnp.float32)
        fit = stats.distribution_fit(w)
        row = {
            "quantizer": q.name,
            "shape": list(w.shape),
            **tracking.weight_statistics(q, w, progress),
            "latent_entropy": stats.differential_entropy(w),
            "laplace_b": fit["laplace_b"],
            "gauss_sigma": fit["gauss_sigma"],
            "fit": "laplace" if fit["laplace_minus_gauss"] > 0 else "gauss",
        }
        if prev is not None:
            before = tracking.positive_codes(q, jnp.asarray(prev[f"{path}/kernel"]), progress)
            row["flips_since_previous"] = stats.flip_ratio(
                before, tracking.positive_codes(q, w, progress)
            )
        table[path] = {k: (float(v) if hasattr(v, "dtype") else v) for k, v in row.items()}
    return table


def format_table(table: dict[str, dict]) -> str:
    columns = [
        "bit_entropy",
        "filter_bit_entropy",
        "latent_entropy",
        "laplace_b",
        "kurtosis",
        "fit",
        "quant_error",
        "dead_recu",
        "flips_since_previous",
    ]
    columns = [c for c in columns if any(c in row for row in table.values())]
    header = f"{'layer':<28}{'quantizer':<11}" + "".join(f"{c[:14]:>15}" for c in columns)
    lines = [header, "-" * len(header)]
    for path, row in table.items():
        cells = []
        for c in columns:
            v = row.get(c, "")
            cells.append(f"{v:>15.4f}" if isinstance(v, float) else f"{v!s:>15}")
        lines.append(f"{path[:27]:<28}{row['quantizer']:<11}" + "".join(cells))
    return "\n".join(lines)


def inspect_run(workdir, step: int | None = None, out=None) -> dict:
    """Writes the table and plots for a checkpoint of ``workdir``; returns the table."""
    workdir = pathlib.Path(workdir)
    out = pathlib.Path(out) if out else workdir / "inspect"
    out.mkdir(parents=True, exist_ok=True)
    run = runs.load(workdir, step)
    step, params = run.step, run.variables["params"]
    layers = inventory.find(run.model, jnp.zeros((2, *run.input_shape)), train=True)
    records = metrics.read(workdir)
    progress = progress_at(records, step)
    earlier = [s for s in run.steps if s < step]
    previous = run.restore(earlier[-1])["params"] if earlier else None
    table = layer_table(params, layers, progress, previous)
    print(
        f"{workdir} at step {step} (progress {progress}); flips against step "
        f"{earlier[-1] if earlier else '-'}"
    )
    print(format_table(table))
    (out / "layers.json").write_text(json.dumps({"step": step, "layers": table}, indent=2))
    flat = traverse_util.flatten_dict(params, sep="/")
    binary = tracking.binary_layers(layers)
    written = []
    if binary:
        plots.weight_histograms(
            {p: flat[f"{p}/kernel"] for p in binary},
            binary,
            out / "weights.png",
            progress,
            title=f"{run.config.model_name}: latent weights at step {step}",
        )
        written.append(out / "weights.png")
    if any(r["split"] == "diagnostics" for r in records):
        written.append(plots.training_diagnostics(records, out / "diagnostics.png"))
    if records:
        written.append(plots.curves(records, out / "curves.png"))
    for path in written:
        print(f"wrote {path}")
    return table
