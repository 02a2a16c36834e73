"""SiMaN: sign-to-magnitude binarization of weights, its activation binarizer, and the latent-weight
clip projection with its percentile schedule.

Behaviour follows the authors' released code (lmbxmu/SiMaN, ``binarized_modules.py``).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from bnnlab.quant import base, math
from bnnlab.quant.dorefa import straight_through

Array = jax.Array

EPS = 1e-5
MAX_CLIP_PERCENT = 15.0


def clip_percent(progress) -> Array:
    r"""p(t) = 15·(1 − t/T) percent: the clip percentile at a training fraction."""
    return MAX_CLIP_PERCENT * (1.0 - base.resolve_progress(progress))


def standardize_weights(w: Array) -> Array:
    r"""Ŵ = (W − mean_f W) / √(var_u,f(W) + 10⁻⁵), per filter."""
    return math.standardize(w, math.filter_axes(w), eps=EPS)


def magnitude_code(w_hat: Array) -> Array:
    r"""B_i = 1 for the ⌊n/2⌋ largest |Ŵ_i| of each filter, else 0: the top-half-magnitude code.

    With distinct magnitudes this equals the reference's default 1{|Ŵ_i| > lower-median_f |Ŵ|}.
    On ties it follows the reference's ``quick`` branch (top ⌊n/2⌋ of a sort, ties broken by
    position), so every filter keeps exactly ⌊n/2⌋ ones; the median rule would drop ones there
    (e.g. a 2-element filter, whose standardised magnitudes are always equal).
    """
    # The barrier materialises |Ŵ| once instead of letting XLA recompute it in each of the 31
    # counting passes of the median search (3× faster on CPU).
    x = jax.lax.optimization_barrier(jnp.abs(w_hat).reshape(-1, w_hat.shape[-1]))  # (n, C_out)
    n = x.shape[0]
    median = math.kth_smallest(x, (n - 1) // 2)
    above = x > median
    # Ties at the median: take the first ones by position until each filter has n // 2.
    missing = n // 2 - jnp.sum(above, axis=0)
    tie = x == median
    code = above | math.first_true(tie, missing)
    return code.astype(w_hat.dtype).reshape(w_hat.shape)


def magnitude_binarize(w_hat: Array, code: Array | None = None) -> Array:
    r"""2B − 1 with the straight-through gradient on the magnitude: ∂L/∂Ŵ = sign(Ŵ)·∂L/∂q.

    ``code`` is a stored B (eval mode); ``None`` recomputes it from Ŵ.
    """
    magnitude = jnp.abs(w_hat)
    if code is None:
        code = magnitude_code(magnitude)
    value = 2.0 * jax.lax.stop_gradient(code).astype(w_hat.dtype) - 1.0
    return straight_through(value, magnitude)


def clip_latent(w: Array, percent) -> Array:
    r"""W ← sign(D)·clip(|D|, P_p, P_{100−p}),  D = W − mean_f W.

    P_p is the p-th percentile of |D| over the whole layer (linear interpolation, as
    np.percentile). Signs are preserved (an exact 0 stays 0) and each filter ends up centred.
    """
    d = w - jnp.mean(w, axis=math.filter_axes(w), keepdims=True)
    mag = jnp.abs(d)
    low = math.percentile(mag, percent)
    high = math.percentile(mag, 100.0 - percent)
    return jnp.sign(d) * jnp.clip(mag, low, high)


@base.register("siman")
@dataclasses.dataclass(frozen=True)
class SiMaN(base.Quantizer):
    r"""SiMaN binary weights: high-magnitude positions → +1, the rest → −1.

    Forward:
      Ŵ = (W − mean_f W) / √(var_u,f(W) + 10⁻⁵)          per filter
      B = 1 for the ⌊n/2⌋ largest |Ŵ| of each filter ∈ {0, 1}   (``magnitude_code``)
      q(W) = 2B − 1 ∈ {−1, +1}
    Backward:
      ∂L/∂|Ŵ| = ∂L/∂q (straight through on the magnitude), ∂L/∂Ŵ = sign(Ŵ)·∂L/∂q, then
      through the standardisation (statistics not detached). B itself gets no gradient.

    The paper (arXiv 2102.07981) derives a {0, +1} code; its released code convolves with
    2B − 1 ∈ {−1, +1}, so a large *negative* latent weight becomes +1. bnnlab follows the code.

    Training-time pieces, all pure functions the training step calls:
      * ``next_state(W)`` = B, which a layer stores; in eval mode (``train=False``) the layer
        passes it back as ``state=`` and B is not recomputed (the reference freezes B at eval).
      * ``project(W, progress)`` = ``clip_latent(W, 15·(1 − progress))``: the reference's in-place
        clipping of the latent weights, applied by the training step instead of the forward.
      * ``weight_decay = False``: SiMaN removes ℓ2 regularisation from binary layers (latent
        weights and α), because ℓ2 makes weights Laplacian and costs bit entropy.
    The learnable per-channel scale α (init mean|W| per filter) belongs to the layer.

    References:
      Lin, Ji, Xu, Zhang, Chao, Lin, Shao. "SiMaN: Sign-to-Magnitude Network Binarization",
      IEEE TPAMI 2023, arXiv 2102.07981.
    """

    stateful = True
    mode_dependent = True
    weight_decay = False

    def __call__(self, w, *, progress=None, train=True, state=None, **kwargs):
        del progress, kwargs  # Unused.
        base.require_kernel_rank(self.name, w)
        return magnitude_binarize(standardize_weights(w), None if train else state)

    def encode(self, w, *, progress=None, train=True, state=None, **kwargs):
        del progress, kwargs  # Unused.
        base.require_kernel_rank(self.name, w)
        code = magnitude_code(standardize_weights(w)) if train or state is None else state
        return base.Encoded(
            codes=code.astype(jnp.uint8),
            scale=jnp.float32(2.0),
            offset=jnp.float32(-1.0),
            bits=1,
        )

    def init_state(self, w):
        # The reference initialises B from the signs of the initial weights.
        return (w >= 0).astype(w.dtype)

    def next_state(self, w, *, progress=None):
        del progress  # Unused.
        return jax.lax.stop_gradient(magnitude_code(standardize_weights(w)))

    def schedule(self, progress=None):
        return {"siman_clip_percent": clip_percent(progress)}

    def project(self, w, progress=None):
        return clip_latent(w, clip_percent(progress))


@base.register("siman_act")
@dataclasses.dataclass(frozen=True)
class SiMaNActivation(base.Quantizer):
    r"""SiMaN's activation binarizer: per-sample standardisation, then ApproxSign.

    Forward:  Â = (A − mean_s A) / √(var_u,s(A) + 10⁻⁵)  (per sample, train and eval);
              q(A) = sign(Â)
    Backward: ∂q/∂Â = max(0, 2 − 2|Â|), then through the standardisation.
    Unlike ReCU, the threshold is the per-sample mean, so the forward sign changes: an input
    c + noise with c > 0 still gives about half −1.

    References:
      Lin et al. "SiMaN", IEEE TPAMI 2023, arXiv 2102.07981 (released code).
    """

    def __call__(self, x, *, progress=None, train=True, **kwargs):
        del progress, train, kwargs  # Unused.
        base.require_batched(self.name, x)
        x = math.standardize(x, math.sample_axes(x), eps=EPS)
        return math.surrogate(math.sign, math.approx_sign_derivative, x, ())

    def encode(self, x, *, progress=None, train=True, **kwargs):
        del progress, train, kwargs  # Unused.
        base.require_batched(self.name, x)
        return base.signs_encoded(math.sign(math.standardize(x, math.sample_axes(x), eps=EPS)))
