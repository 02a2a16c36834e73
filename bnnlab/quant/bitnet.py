"""BitNet's weight quantizers for transformers: ternary absmean (BitNet b1.58) and binary
(BitNet), per tensor, per output unit or group-wise.

Both use the identity straight-through estimator of the released BitLinear code
(``w + (q(w) − w).detach()``): the gradient reaches the latent weight unchanged, with no clip
window. Values are built from the exact integer codes (``Encoded.decode``), so an export
reproduces them bit for bit.

Granularity (the set one scale is shared over; kernels in Flax layout, output unit last):

* ``"tensor"``: the whole kernel (the papers' choice);
* ``"channel"``: each output unit (a row of the PyTorch (out, in) weight), the per-row scaling
  of the binary-transformer papers (BiT, BiViT, OneBit's sign-value split);
* ``"group"``: each output unit's inputs in consecutive groups of ``group_size`` along the
  input axis (axis −2), the group-wise quantization BitNet describes for model parallelism and
  weight-only LLM quantizers use.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bnnlab.quant import base, math
from bnnlab.quant.dorefa import straight_through

Array = jax.Array

GRANULARITIES = ("tensor", "channel", "group")


def check_granularity(name: str, granularity: str, group_size: int | None) -> None:
    base.check_choice(name, "granularity", granularity, GRANULARITIES)
    if granularity == "group":
        if not isinstance(group_size, int) or isinstance(group_size, bool) or group_size < 1:
            raise ValueError(
                f"{name}: granularity='group' needs group_size, a positive integer, got "
                f"{group_size!r}."
            )
    elif group_size is not None:
        raise ValueError(
            f"{name}: group_size={group_size!r} is only used with granularity='group' "
            f"(granularity is {granularity!r})."
        )


def grouped(name: str, w: Array, granularity: str, group_size: int | None):
    """``(view, axes)``: ``w`` reshaped so that one statistic per scale group is a reduction of
    ``view`` over ``axes`` (with ``keepdims``)."""
    if granularity == "tensor":
        return w, tuple(range(w.ndim))
    base.require_kernel_rank(name, w)
    if granularity == "channel":
        return w, tuple(range(w.ndim - 1))
    k = w.shape[-2]
    if k % group_size:
        raise ValueError(
            f"{name}: group_size={group_size} must divide the kernel's input axis (axis -2, "
            f"size {k}) of shape {w.shape}."
        )
    view = w.reshape(*w.shape[:-2], k // group_size, group_size, w.shape[-1])
    return view, (*range(w.ndim - 2), w.ndim - 1)


def compact_scale(scale: Array, w: Array, granularity: str) -> Array:
    """The per-group scale of ``grouped``'s keepdims statistic in its stored shape: a scalar,
    (N,) per output unit, or (K / group_size, N) per group (``Encoded.group_size`` repeats it
    along axis −2)."""
    if granularity == "tensor":
        return scale.reshape(())
    if granularity == "channel":
        return scale.reshape(w.shape[-1])
    return scale.reshape(scale.shape[-3], w.shape[-1])


@dataclasses.dataclass(frozen=True)
class _GroupedWeights(base.Quantizer):
    """Shared fields and the encode → value → straight-through steps."""

    granularity: str = "tensor"
    group_size: int | None = None
    eps: float = 1e-5

    def __post_init__(self):
        check_granularity(self.name, self.granularity, self.group_size)
        base.check_positive(self.name, "eps", self.eps)

    def _codes_and_scale(self, view: Array, axes) -> tuple[Array, Array]:
        raise NotImplementedError

    def encode(self, w, *, progress=None, train=True, **kwargs):
        del progress, train, kwargs  # Unused.
        view, axes = grouped(self.name, w, self.granularity, self.group_size)
        codes, scale = self._codes_and_scale(view, axes)
        return base.Encoded(
            codes=codes.reshape(w.shape).astype(jnp.int8),
            scale=compact_scale(scale, w, self.granularity),
            offset=jnp.float32(0.0),
            bits=self.precision,
            group_size=self.group_size if self.granularity == "group" else 1,
        )

    def __call__(self, w, *, progress=None, train=True, **kwargs):
        del progress, train, kwargs  # Unused.
        value = self.encode(w).decode().astype(w.dtype)
        return straight_through(value, w)


@base.register("ternary_absmean")
@dataclasses.dataclass(frozen=True)
class TernaryAbsmean(_GroupedWeights):
    r"""BitNet b1.58's ternary weights: absmean scaling, round to {−1, 0, +1}.

    With γ = max(mean |W|, ε) over each scale group (``granularity``):

    Forward:  W̃ = clip(round(W / γ), −1, 1) ∈ {−1, 0, +1},   q(W) = γ · W̃
    Backward: ∂q/∂W = 1   (identity straight-through, as the released BitLinear code)

    ``round`` is half-to-even (``torch.round`` and ``jnp.round`` agree). The paper writes
    W / (γ + ε); the released code divides by max(γ, ε), as here: identical unless a group is
    all but zero. 1.58 = log₂ 3 bits of information; the codes pack into 2 bits
    (``bnnlab.kernels.ternary``).

    References:
      Ma, Wang, Ma, Wang, Wang, Huang, Dong, Wang, Xue, Wei. "The Era of 1-bit LLMs: All Large
      Language Models are in 1.58 Bits", arXiv 2402.17764 (2024).

    Args:
      granularity: ``"tensor"`` (the paper), ``"channel"`` or ``"group"``.
      group_size: inputs per group along axis −2 (``granularity="group"`` only).
      eps: floor of γ.
    """

    @property
    def precision(self) -> int:
        return 2

    def _codes_and_scale(self, view, axes):
        gamma = jnp.maximum(jnp.mean(jnp.abs(view), axis=axes, keepdims=True), self.eps)
        return jnp.clip(jnp.round(view / gamma), -1.0, 1.0), gamma


@base.register("binary_absmean")
@dataclasses.dataclass(frozen=True)
class BinaryAbsmean(_GroupedWeights):
    r"""BitNet's binary weights: sign of the centred weight, scaled by its mean magnitude.

    With α = mean W and β = max(mean |W|, ε) over each scale group (``granularity``):

    Forward:  W̃ = sign(W − α) ∈ {−1, +1} (sign(0) = +1),   q(W) = β · W̃
    Backward: ∂q/∂W = 1   (identity straight-through)

    Centring (``center=True``, BitNet's choice) makes the code zero-mean, which maximises its
    entropy; β = ‖W‖₁ / n is the paper's scale (not mean |W − α|). ``center=False`` with
    ``granularity="channel"`` is the per-row scaled sign of the binary-transformer papers
    (BiT, BiViT), with the identity rather than a clipped estimator.

    References:
      Wang, Ma, Dong, Huang, Wang, Ma, Yang, Wang, Wu, Wei. "BitNet: Scaling 1-bit
      Transformers for Large Language Models", arXiv 2310.11453 (2023); Liu et al. "BiT:
      Robustly Binarized Multi-distilled Transformer", NeurIPS 2022, arXiv 2205.13016.

    Args:
      granularity: ``"tensor"`` (BitNet), ``"channel"`` or ``"group"``.
      group_size: inputs per group along axis −2 (``granularity="group"`` only).
      center: subtract the group's mean before the sign.
      eps: floor of β.
    """

    center: bool = True

    def _codes_and_scale(self, view, axes):
        beta = jnp.maximum(jnp.mean(jnp.abs(view), axis=axes, keepdims=True), self.eps)
        centred = view - jnp.mean(view, axis=axes, keepdims=True) if self.center else view
        return math.sign(centred), beta
