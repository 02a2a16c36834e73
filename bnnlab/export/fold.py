"""From a trained binary model to packed layers: find the convolutions whose kernel *and*
inputs are binary, pack their kernels, and fold the kernel magnitude, the learnable scale, the
bias and the BatchNorm that reads the conv's output into one per-channel output transform.

For such a conv (``QuantConv`` with 1-bit quantizers, evaluated as in ``train=False``):

  conv:  y = a ⊙ dot + c,   dot = conv(sign x, sign W) ∈ ℤ,   a = α_w ⊙ s   (α_w: the kernel
         quantizer's per-filter magnitude, s: the layer's ``scale`` param, c: its bias)
  BN:    z = γ ⊙ (y − μ) / √(σ² + ε) + β
  fold:  z = m ⊙ dot + b,  m = a ⊙ γ / √(σ² + ε),  b = β + (c − μ) ⊙ γ / √(σ² + ε)

which the XNOR kernel applies after its popcount (``kernels.xnor.OutputTransform``).

Which layers qualify is checked, not assumed: the kernel quantizer's eval output must be
exactly ±α per filter, and the input quantizer must map a probe batch to exactly ±1 with no
learnable or stored arrays. The BatchNorm is folded only when it reads this very conv's output
(traced by identity), so a model whose structure differs just keeps that BN in float.
Everything else (first conv, classifier, float shortcuts, activations, non-folded BN) stays
float and is exported as it is.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.linen import linear

from bnnlab import quant
from bnnlab.kernels import xnor
from bnnlab.layers import activations, quantized

PROBE_SEED = 0


@dataclasses.dataclass(frozen=True)
class PackedConv:
    """One exported binary conv: packed kernel, folded transform and the conv geometry."""

    path: str
    shape: tuple[int, int, int, int]  # HWIO
    strides: tuple[int, int]
    padding: tuple[tuple[int, int], tuple[int, int]]
    pad_value: float
    words: np.ndarray  # (O, k_h·k_w·ceil(I/32)) uint32
    multiplier: np.ndarray  # (O,) float32
    bias: np.ndarray  # (O,) float32
    folded_bn: str | None  # path of the BatchNorm folded into the transform


@dataclasses.dataclass(frozen=True)
class _Call:
    module: nn.Module
    path: str
    inputs: jax.Array
    output: jax.Array


@dataclasses.dataclass(frozen=True)
class RuleConv:
    """An ``nn.Conv`` that a ``quantize_model`` rule quantizes, seen with QuantConv's
    attributes (its rule's quantizers and pad value), so it packs like a QuantConv."""

    conv: nn.Conv
    rule: Any

    kernel_quantizer = property(lambda self: self.rule.kernel)
    input_quantizer = property(lambda self: self.rule.inputs)
    pad_value = property(lambda self: self.rule.pad_value)

    def __getattr__(self, name):
        return getattr(self.conv, name)


def rule_view(model, module):
    """``module`` as a ``RuleConv`` when a rule of ``model`` (a QuantizedModel) quantizes it."""
    rule_for = getattr(model, "rule_for", None)
    if rule_for is None or type(module) is not nn.Conv:
        return module
    index = rule_for("/".join(module.path))
    if index is None or model.rules[index].is_float:
        return module
    return RuleConv(module, model.rules[index])


def _trace(model: nn.Module, variables, example: jax.Array, call: dict) -> list[_Call]:
    """Every QuantConv / BatchNorm / RSign call of an eval forward pass (``model.apply(v, x,
    **call)``), with its in/out tracers."""
    calls: list[_Call] = []

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        module = context.module
        if context.method_name == "__call__" and isinstance(
            module, (quantized.QuantConv, nn.Conv, nn.BatchNorm, activations.RSign)
        ):
            calls.append(_Call(rule_view(model, module), "/".join(module.path), args[0], out))
        return out

    def forward(v, x):
        with nn.intercept_methods(interceptor):
            return model.apply(v, x, **call)

    jax.eval_shape(forward, variables, example)
    return calls


def _subtree(tree, path: str):
    for key in path.split("/"):
        tree = tree.get(key, {}) if isinstance(tree, dict) else {}
    return tree


def _binary_kernel(module, params, state):
    """(signs, per-filter magnitudes) of the eval-mode quantized kernel, or None when it is not
    exactly ±α per filter."""
    kq = quant.resolve(module.kernel_quantizer)
    if kq is None or kq.precision != 1:
        return None
    kwargs = {n: params[f"kernel_{n}"] for n in kq.learnable}
    if kq.stateful:
        kwargs["state"] = state["kernel_state"]
    wq = np.asarray(_eval_mode(kq)(jnp.asarray(params["kernel"]), kwargs))
    alpha = np.abs(wq).max(axis=(0, 1, 2))
    if np.any(alpha <= 0) or not np.array_equal(np.abs(wq), np.broadcast_to(alpha, wq.shape)):
        return None
    return wq, alpha


@functools.cache
def _eval_mode(q: quant.Quantizer):
    """``q``'s eval-mode forward, jitted once per quantizer (eager op-by-op dispatch of e.g.
    SiMaN's bisection is much slower than compiling; layers of one shape share the compile)."""
    return jax.jit(lambda x, kwargs: q(x, progress=None, train=False, **kwargs))


@functools.cache
def _maps_to_signs(iq: quant.Quantizer, shape: tuple[int, ...]) -> bool:
    probe = jax.random.normal(jax.random.key(PROBE_SEED), shape)
    return bool(jnp.all(jnp.abs(_eval_mode(iq)(probe, {})) == 1.0))


def _binary_inputs(call: _Call, calls: list[_Call]) -> bool:
    """Whether the conv's input quantizer maps a probe batch to exactly ±1 (and has no arrays),
    or, without one, its input is the output of an RSign (ReActNet: sign(x + β) ∈ {±1})."""
    module, in_shape = call.module, call.inputs.shape
    iq = quant.resolve(module.input_quantizer)
    if iq is None:
        return any(
            isinstance(c.module, activations.RSign) and c.output is call.inputs for c in calls
        )
    if iq.precision != 1 or iq.learnable or iq.stateful:
        return False
    return _maps_to_signs(iq, (2, *in_shape[1:]))


def _plain_2d(module) -> bool:
    ks = module.kernel_size
    return (
        (isinstance(ks, int) or len(ks) == 2)
        and module.feature_group_count == 1
        and module.input_dilation in (1, (1, 1))
        and module.kernel_dilation in (1, (1, 1))
    )


def _bn_fold(bn: nn.BatchNorm, params, stats):
    """(γ/√(σ²+ε), β − μ·γ/√(σ²+ε)) of an eval-mode BatchNorm over the last axis."""
    if bn.axis not in (-1,) or not bn.use_running_average:
        return None
    mean = np.asarray(stats["mean"], np.float64)
    inv = 1.0 / np.sqrt(np.asarray(stats["var"], np.float64) + bn.epsilon)
    gamma = np.asarray(params["scale"], np.float64) if bn.use_scale else 1.0
    beta = np.asarray(params["bias"], np.float64) if bn.use_bias else 0.0
    return gamma * inv, beta - mean * gamma * inv


def pack_model(
    model: nn.Module, variables, example: jax.Array, call: dict | None = None
) -> list[PackedConv]:
    """The packable convs of ``model`` (with ``variables``) on inputs shaped like ``example``;
    ``call``: the eval call's keyword arguments (default ``train=False``)."""
    calls = _trace(model, variables, example, {"train": False} if call is None else call)
    params, stats = variables.get("params", {}), variables.get("batch_stats", {})
    qstate = variables.get(quantized.STATE_COLLECTION, {})
    packed = []
    for call in calls:
        m = call.module
        if not isinstance(m, (quantized.QuantConv, RuleConv)) or not _plain_2d(m):
            continue
        p = _subtree(params, call.path)
        kernel = _binary_kernel(m, p, _subtree(qstate, call.path))
        if kernel is None or not _binary_inputs(call, calls):
            continue
        wq, alpha = kernel
        a = alpha.astype(np.float64)
        if "scale" in p:
            a = a * np.asarray(p["scale"], np.float64)
        c = np.asarray(p["bias"], np.float64) if "bias" in p else np.zeros_like(a)
        multiplier, bias, folded = a, c, None
        reader = [k for k in calls if k.inputs is call.output]
        if len(reader) == 1 and isinstance(reader[0].module, nn.BatchNorm):
            bn = reader[0]
            fold = _bn_fold(bn.module, _subtree(params, bn.path), _subtree(stats, bn.path))
            if fold is not None:
                scale, shift = fold
                multiplier, bias, folded = a * scale, c * scale + shift, bn.path
        strides = (m.strides,) * 2 if isinstance(m.strides, int) else tuple(m.strides)
        padding = quantized.explicit_padding(
            linear.canonicalize_padding(m.padding, 2),
            call.inputs.shape[1:3],
            wq.shape[:2],
            strides,
            (1, 1),
        )
        packed.append(
            PackedConv(
                path=call.path,
                shape=tuple(int(d) for d in wq.shape),
                strides=tuple(int(s) for s in strides),
                padding=tuple((int(lo), int(hi)) for lo, hi in padding),
                pad_value=float(m.pad_value),
                words=_pack_kernel(wq),
                multiplier=multiplier.astype(np.float32),
                bias=bias.astype(np.float32),
                folded_bn=folded,
            )
        )
    return packed


def _pack_kernel(wq: np.ndarray) -> np.ndarray:
    """``kernels.xnor.pack_kernel``'s words by the same routine, run in NumPy: export is host
    work, and per-shape XLA compiles of the same few ops would dominate it."""
    return xnor.kernel_words(wq, np)
