"""PNG plots for ``bnnlab.diagnostics.report``: latent-weight histograms with each
quantizer's thresholds, diagnostics over training, and loss/accuracy curves."""

from __future__ import annotations

import math
import pathlib

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from bnnlab import quant
from bnnlab.quant import irnet, recu, siman


def _view_labels(q: quant.Quantizer) -> tuple[list[str], str]:
    """The threshold labels and the x label of ``threshold_view`` (static per quantizer)."""
    if isinstance(q, quant.ReCU):
        return ["sign", "−Q(τ)", "Q(τ)"], "W̃"
    if isinstance(q, quant.SiMaN):
        return ["median per filter (mean)"], "|Ŵ|"
    if isinstance(q, quant.IRNet):
        return ["sign"], "Ŵ (standardised)"
    clip = getattr(q, "clip_value", None)
    if clip is not None and math.isfinite(clip):
        return ["sign", "−clip", "clip"], "W"
    return ["sign"], "W"


def _view_arrays(q: quant.Quantizer, w, progress=None):
    """(values to histogram, thresholds) as arrays: traceable, so all layers jit together."""
    w = jnp.asarray(w, jnp.float32)
    if isinstance(q, quant.ReCU):
        w_tilde = recu.standardize_weights(w)
        limit = recu.clamp_threshold(w_tilde, q.current_tau(progress))
        return w_tilde, jnp.stack([jnp.zeros_like(limit), -limit, limit])
    if isinstance(q, quant.SiMaN):
        magnitude = jnp.abs(siman.standardize_weights(w)).reshape(-1, w.shape[-1])
        return magnitude, jnp.median(jnp.median(magnitude, axis=0))[None]
    if isinstance(q, quant.IRNet):
        return irnet._libra_pb(w)[0], jnp.zeros((1,))
    clip = getattr(q, "clip_value", None)
    if clip is not None and math.isfinite(clip):
        return w, jnp.asarray([0.0, -clip, clip])
    return w, jnp.zeros((1,))


def threshold_view(q: quant.Quantizer, w, progress=None):
    """(values to histogram, [(threshold, label)], x label) for one layer's latent weights.

    Each quantizer binarises a different function of the weights; the histogram shows that
    quantity with the thresholds where codes change (and, for ReCU, where gradients stop).
    """
    return threshold_views({"w": q}, {"w": w}, progress)["w"]


def threshold_views(quantizers: dict, kernels: dict, progress=None) -> dict:
    """``threshold_view`` of every layer, computed by one jitted program."""
    arrays = jax.device_get(
        jax.jit(lambda ks: {n: _view_arrays(quantizers[n], k, progress) for n, k in ks.items()})(
            {n: jnp.asarray(k, jnp.float32) for n, k in kernels.items()}
        )
    )
    out = {}
    for name, (values, thresholds) in arrays.items():
        labels, xlabel = _view_labels(quantizers[name])
        lines = [(float(x), label) for x, label in zip(thresholds, labels, strict=True)]
        out[name] = (np.asarray(values), lines, xlabel)
    return out


def weight_histograms(kernels: dict, quantizers: dict, path, progress=None, title: str = ""):
    """One panel per binary layer: histogram of what its quantizer thresholds, with the lines.

    Returns the panel titles, one per layer.
    """
    names = list(kernels)
    cols = min(4, max(1, len(names)))
    rows = max(1, math.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.ravel()[len(names) :]:
        ax.axis("off")
    views = threshold_views({n: quantizers[n] for n in names}, kernels, progress)
    for ax, name in zip(axes.ravel(), names, strict=False):
        values, lines, xlabel = views[name]
        ax.hist(np.ravel(values), bins=80, color="#4c72b0", alpha=0.85)
        for x, label in lines:
            ax.axvline(x, color="#c44e52", lw=1, ls="--", label=label)
        ax.set_title(f"{name} ({quantizers[name].name})", fontsize=8)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="upper right")
    fig.suptitle(title or "latent weights and binarisation thresholds", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    titles = [ax.get_title() for ax in axes.ravel()[: len(names)]]
    plt.close(fig)
    return titles


def _series(records, split: str, key: str):
    points = [(r["step"], r[key]) for r in records if r["split"] == split and key in r]
    points = [(s, v) for s, v in points if isinstance(v, (int, float)) and math.isfinite(v)]
    return ([s for s, _ in points], [v for _, v in points])


# What each logged diagnostic is, for legends (mean over the binary layers).
LABELS = {
    "mean/bit_entropy": "bit entropy H(b) of each layer's weights",
    "mean/filter_bit_entropy": "bit entropy per filter",
    "mean/flip_ratio": "weights whose sign flipped in the last step",
    "mean/dead_empirical": "weights that never flipped in the tracking window",
    "mean/dead_recu": "ReCU dead weights (|w| beyond the clamp)",
    "mean/quant_error": "relative error ‖W − Q(W)‖ / ‖W‖",
    "mean/act_positive": "activations at +1",
}
# Quantizers for which ‖W − Q(W)‖/‖W‖ means nothing: SiMaN's {0, 1} code is not a
# reconstruction of W (its scale is not fitted to W), so the error sits near 1 whatever happens.
NO_RECONSTRUCTION = ("siman",)


def training_diagnostics(records, path, quantizers=()):
    """The per-layer diagnostics over training that mean something for ``quantizers`` (the
    run's kernel quantizer names): bit entropy, flips, the fraction never flipped, ReCU's dead
    fraction (ReCU only), the quantization error (not for SiMaN), activation balance."""
    reconstruction = not any(q in NO_RECONSTRUCTION for q in quantizers)
    panels = [
        ("bit entropy", "bits", ["mean/bit_entropy", "mean/filter_bit_entropy"]),
        ("sign flips", "fraction of weights", ["mean/flip_ratio"]),
        ("never flipped", "fraction of weights", ["mean/dead_empirical"]),
        ("ReCU dead weights", "fraction of weights", ["mean/dead_recu"]),
        ("quantization error", "‖W − Q(W)‖ / ‖W‖", ["mean/quant_error"] if reconstruction else []),
        ("activation balance", "fraction at +1", ["mean/act_positive"]),
    ]
    panels = [p for p in panels if any(_series(records, "diagnostics", k)[0] for k in p[2])]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4 * max(len(panels), 1), 3.2))
    axes = np.atleast_1d(axes)
    for ax, (title, ylabel, keys) in zip(axes, panels, strict=False):
        for key in keys:
            steps, values = _series(records, "diagnostics", key)
            if steps:
                ax.plot(steps, values, label=LABELS.get(key, key))
        if title == "sign flips":
            ax.set_yscale("log")
        elif title == "bit entropy":
            ax.set_ylim(0.0, 1.05)  # bits per weight: 1 is a balanced code
        else:
            ax.ticklabel_format(axis="y", useOffset=False, style="plain")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6)
    fig.suptitle("diagnostics over training (mean over the binary layers)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return pathlib.Path(path)


def curves(records, path):
    """Loss and accuracy, train and eval."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        for split in ("train", "eval"):
            steps, values = _series(records, split, key)
            if steps:
                ax.plot(steps, values, marker="o" if split == "eval" else None, ms=3, label=split)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("cross-entropy (nats)" if key == "loss" else "top-1 accuracy", fontsize=8)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return pathlib.Path(path)
