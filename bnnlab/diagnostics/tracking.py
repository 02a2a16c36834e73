"""Per-layer diagnostics of a model's binary layers, and the per-step flip tracking that feeds
them during training.

The tracking state keeps, per binary layer, the codes of the last forward pass and which weights
changed code since the window started, so the flip ratio is larq's per-step definition (averaged
over the window) and the empirical dead fraction counts weights that never flipped inside it.
The codes come from the forward pass itself (QuantConv sows them), so tracking costs one
comparison per weight and step. It lives in
the train state, so checkpoints carry it and a resumed run reports exactly what an
uninterrupted one would.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import traverse_util

from bnnlab import quant
from bnnlab.diagnostics import stats
from bnnlab.layers import inventory, sown

Array = jax.Array


def binary_layers(layers: dict[str, inventory.QuantizedLayer]) -> dict[str, quant.Quantizer]:
    """Path → kernel quantizer of the layers whose weights are 1-bit."""
    return {
        path: layer.kernel_quantizer
        for path, layer in sorted(layers.items())
        if layer.kernel_quantizer is not None and layer.kernel_quantizer.precision == 1
    }


def positive_codes(q: quant.Quantizer, kernel: Array, progress=None) -> Array:
    """Which weights quantize to the positive code (+1, or 1 in SiMaN's {0, 1})."""
    return jax.lax.stop_gradient(q.encode(kernel, progress=progress).codes > 0)


def init_tracking(params, layers) -> dict:
    """Tracking state for a fresh window, codes taken from ``params``."""
    flat = traverse_util.flatten_dict(params, sep="/")
    state = {}
    for path, q in binary_layers(layers).items():
        codes = positive_codes(q, flat[f"{path}/kernel"])
        state[path] = {
            "positive": codes,
            "changed": jnp.zeros_like(codes),
            "flips": jnp.zeros((), jnp.float32),
            "steps": jnp.zeros((), jnp.int32),
        }
    return state


def forward_codes(collection) -> dict[str, Array]:
    """Layer path → the binary codes the forward pass used, from the ``sown.TRACKING``
    collection that QuantConv/QuantDense sow into during training."""
    flat = traverse_util.flatten_dict(collection, sep="/")
    codes = {}
    for key, value in flat.items():
        layer, _, name = key.rpartition("/")
        if name == sown.KERNEL_CODES:
            codes[layer] = value[0]
    return codes


def update_tracking(tracking: dict, codes: dict[str, Array]) -> dict:
    """Records one training step, given the codes its forward pass used (``forward_codes``):
    flips are counted against the previous step's codes, as larq's FlipRatio does."""
    out = {}
    for path, prev in tracking.items():
        flipped = codes[path] != prev["positive"]
        out[path] = {
            "positive": codes[path],
            "changed": prev["changed"] | flipped,
            "flips": prev["flips"] + jnp.mean(flipped),
            "steps": prev["steps"] + 1,
        }
    return out


def reset_window(tracking: dict) -> dict:
    return {
        path: {
            **t,
            "changed": jnp.zeros_like(t["changed"]),
            "flips": jnp.zeros_like(t["flips"]),
            "steps": jnp.zeros_like(t["steps"]),
        }
        for path, t in tracking.items()
    }


def weight_statistics(q: quant.Quantizer, w: Array, progress=None) -> dict[str, Array]:
    """One binary layer's statistics: bit entropy of its codes (whole layer and mean per
    filter), the quantization error with the least-squares per-filter α, the latent weights'
    excess kurtosis, and the quantizer's own ``statistics`` (ReCU: its dead fraction)."""
    w = jnp.asarray(w, jnp.float32)
    positive = positive_codes(q, w, progress)
    b = jnp.where(positive, 1.0, -1.0)
    out = {
        "bit_entropy": stats.bit_entropy(positive),
        "filter_bit_entropy": jnp.mean(
            stats.bit_entropy(positive.reshape(-1, positive.shape[-1]), axis=0)
        ),
        "quant_error": stats.quantization_error(w, stats.optimal_scale(w, b), b),
        "kurtosis": stats.distribution_fit(w)["kurtosis"],
    }
    out.update(q.statistics(w, progress))
    return out


def layer_statistics(params, layers, progress=None, tracking: dict | None = None) -> dict:
    """``weight_statistics`` of every binary layer and, from ``tracking``, the mean per-step
    flip ratio and the empirical dead fraction (weights that never flipped in the window).
    Keys are ``"<layer path>/<statistic>"``, plus ``"mean/<statistic>"`` over layers.
    """
    flat = traverse_util.flatten_dict(params, sep="/")
    out: dict[str, Array] = {}
    for path, q in binary_layers(layers).items():
        for name, value in weight_statistics(q, flat[f"{path}/kernel"], progress).items():
            out[f"{path}/{name}"] = value
        if tracking:
            t = tracking[path]
            steps = jnp.maximum(t["steps"], 1)
            out[f"{path}/flip_ratio"] = t["flips"] / steps
            out[f"{path}/dead_empirical"] = jnp.where(
                t["steps"] > 0, 1.0 - jnp.mean(t["changed"]), jnp.nan
            )
    names = sorted({k.rsplit("/", 1)[1] for k in out})
    for name in names:
        values = [v for k, v in out.items() if k.endswith(f"/{name}")]
        out[f"mean/{name}"] = jnp.mean(jnp.stack(values))
    return out


def activation_balance(intermediates) -> dict:
    """Fraction of +1 in each quantized layer's binarised input (from the
    ``sown.INTERMEDIATES`` that QuantConv/QuantDense and RSign sow), plus the mean over layers."""
    flat = traverse_util.flatten_dict(intermediates, sep="/")
    out = {}
    for key, value in flat.items():
        layer, _, name = key.rpartition("/")  # layer "" for a model's own top-level sow
        if name == sown.INPUT_BALANCE:
            out[f"{layer}/act_positive"] = jnp.mean(jnp.stack(value))
    if out:
        out["mean/act_positive"] = jnp.mean(jnp.stack(list(out.values())))
    return out
