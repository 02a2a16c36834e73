"""PNG plots for ``bnnlab.diagnostics.report``: latent-weight histograms with each
quantizer's thresholds, diagnostics over training, and loss/accuracy curves."""

from __future__ import annotations

import math
import pathlib

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display

import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from bnnlab import quant
from bnnlab.quant import irnet, recu, siman


def threshold_view(q: quant.Quantizer, w, progress=None):
    """(values to histogram, [(threshold, label)], x label) for one layer's latent weights.

    Each quantizer binarises a different function of the weights; the histogram shows that
    quantity with the thresholds where codes change (and, for ReCU, where gradients stop).
    """
    w = jnp.asarray(w, jnp.float32)
    if isinstance(q, quant.ReCU):
        w_tilde = recu.standardize_weights(w)
        limit = float(recu.clamp_threshold(w_tilde, q.current_tau(progress)))
        return np.asarray(w_tilde), [(0.0, "sign"), (-limit, "−Q(τ)"), (limit, "Q(τ)")], "W̃"
    if isinstance(q, quant.SiMaN):
        magnitude = jnp.abs(siman.standardize_weights(w)).reshape(-1, w.shape[-1])
        median = float(jnp.median(jnp.median(magnitude, axis=0)))
        return np.asarray(magnitude), [(median, "median per filter (mean)")], "|Ŵ|"
    if isinstance(q, quant.IRNet):
        w_hat, _ = irnet._libra_pb(w)
        return np.asarray(w_hat), [(0.0, "sign")], "Ŵ (standardised)"
    lines = [(0.0, "sign")]
    clip = getattr(q, "clip_value", None)
    if clip is not None and math.isfinite(clip):
        lines += [(-clip, "−clip"), (clip, "clip")]
    return np.asarray(w), lines, "W"


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
    for ax, name in zip(axes.ravel(), names, strict=False):
        values, lines, xlabel = threshold_view(quantizers[name], kernels[name], progress)
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


def training_diagnostics(records, path):
    """Bit entropy, flip ratio, dead fractions and quantization error over training."""
    panels = [
        ("bit entropy (bits)", ["mean/bit_entropy", "mean/filter_bit_entropy"]),
        ("flip ratio per step", ["mean/flip_ratio"]),
        ("dead fraction", ["mean/dead_empirical", "mean/dead_recu"]),
        ("quantization error", ["mean/quant_error"]),
        ("activation +1 fraction", ["mean/act_positive"]),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3))
    for ax, (title, keys) in zip(axes, panels, strict=True):
        for key in keys:
            steps, values = _series(records, "diagnostics", key)
            if steps:
                ax.plot(steps, values, label=key.split("/", 1)[1])
        if title.startswith("flip") and any(_series(records, "diagnostics", k)[1] for k in keys):
            ax.set_yscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7)
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
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return pathlib.Path(path)
