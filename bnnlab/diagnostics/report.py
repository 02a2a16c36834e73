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

import jax
import jax.numpy as jnp
from flax import traverse_util

from bnnlab import runs
from bnnlab.diagnostics import plots, stats, summary, tracking
from bnnlab.layers import inventory
from bnnlab.runs import metrics


def progress_at(records, step: int):
    """The training progress the run logged at ``step`` (quantizer schedules depend on it)."""
    logged = [r for r in records if r["split"] == "train" and r["step"] <= step]
    return logged[-1]["progress"] if logged else None


def layer_table(params, layers, progress, previous_params=None) -> dict[str, dict]:
    """Per binary layer statistics of ``params`` (and flips against ``previous_params``),
    computed by one jitted program for all layers (one compilation instead of one per
    operation and shape, which made eager inspection take minutes)."""
    flat = traverse_util.flatten_dict(params, sep="/")
    prev = traverse_util.flatten_dict(previous_params, sep="/") if previous_params else None
    binary = tracking.binary_layers(layers)

    def statistics(kernels, before):
        out = {}
        for path, q in binary.items():
            w = kernels[path]
            fit = stats.distribution_fit(w)
            row = {
                **tracking.weight_statistics(q, w, progress),
                "latent_entropy": stats.differential_entropy(w),
                "laplace_b": fit["laplace_b"],
                "gauss_sigma": fit["gauss_sigma"],
                "laplace_minus_gauss": fit["laplace_minus_gauss"],
            }
            if before is not None:
                row["flips_since_previous"] = stats.flip_ratio(
                    tracking.positive_codes(q, before[path], progress),
                    tracking.positive_codes(q, w, progress),
                )
            out[path] = row
        return out

    kernels = {p: jnp.asarray(flat[f"{p}/kernel"], jnp.float32) for p in binary}
    before = {p: jnp.asarray(prev[f"{p}/kernel"], jnp.float32) for p in binary} if prev else None
    values = jax.device_get(jax.jit(statistics)(kernels, before))
    table = {}
    for path, q in binary.items():
        row = {k: float(v) for k, v in values[path].items()}
        better = row.pop("laplace_minus_gauss")
        table[path] = {
            "quantizer": q.name,
            "shape": list(kernels[path].shape),
            **row,
            "fit": "laplace" if better > 0 else "gauss",
        }
    return table


COLUMNS = {  # table column → header
    "bit_entropy": "bit entropy",
    "filter_bit_entropy": "per-filter bit entropy",
    "latent_entropy": "latent entropy",
    "laplace_b": "Laplace b",
    "kurtosis": "excess kurtosis",
    "fit": "fit",
    "quant_error": "quant. error",
    "dead_recu": "ReCU dead",
    "flips_since_previous": "flips since previous",
}


def format_table(table: dict[str, dict]) -> str:
    """The per-layer table as aligned text (``rich``). The quantization error is left out
    for SiMaN, whose {0, 1} code is not a reconstruction of the weights."""
    from rich import box
    from rich.table import Table

    columns = [c for c in COLUMNS if any(c in row for row in table.values())]
    out = Table(box=box.SIMPLE, pad_edge=False)
    out.add_column("layer", no_wrap=True)
    out.add_column("quantizer", no_wrap=True)
    for c in columns:
        out.add_column(COLUMNS[c], justify="right")
    for path, row in table.items():
        cells = []
        for c in columns:
            v = row.get(c, "")
            if c == "quant_error" and row["quantizer"] in plots.NO_RECONSTRUCTION:
                v = "—"
            cells.append(f"{v:.4f}" if isinstance(v, float) else str(v))
        out.add_row(path, row["quantizer"], *cells)
    return summary.render(out)


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
        names = sorted({q.name for q in binary.values()})
        written.append(plots.training_diagnostics(records, out / "diagnostics.png", names))
    if records:
        written.append(plots.curves(records, out / "curves.png"))
    for path in written:
        print(f"wrote {path}")
    return table
