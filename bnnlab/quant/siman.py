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


def magnitude_code(w_hat: Array, ties: str = "median") -> Array:
    r"""B ∈ {0, 1}: 1 for the high-magnitude half of each filter of Ŵ.

    ``ties="median"`` (the reference's default): B_i = 1{|Ŵ_i| > lower-median_f |Ŵ|}, the
    released code's ``--sort topk`` branch (its default, which falls into the median code),
    with torch.median's lower middle element for even n. Every element tied with the median
    gets 0, so a filter with ties has fewer than ⌊n/2⌋ ones; ties are common, because the
    latent-weight clip creates plateaus of equal magnitude (and a 2-element filter always
    ties: its standardised magnitudes are equal, so it gets no ones at all).
    ``ties="exact_half"``: the ⌊n/2⌋ largest |Ŵ_i|, ties broken by position (earlier first),
    as the reference's ``quick`` branch (a top-⌊n/2⌋ sort): exactly ⌊n/2⌋ ones per filter.

    The code is decided from one materialised copy of |Ŵ| (``math.upper_half_code``), so it is
    the same eagerly, under ``jit``, inside a fused training step and on a sharded mesh.
    """
    x = jnp.abs(w_hat).reshape(-1, w_hat.shape[-1])  # (n, C_out)
    return math.upper_half_code(x, ties).astype(w_hat.dtype).reshape(w_hat.shape)


def magnitude_binarize(w_hat: Array, code: Array | None = None, ties: str = "median") -> Array:
    r"""2B − 1 with the straight-through gradient on the magnitude: ∂L/∂Ŵ = sign(Ŵ)·∂L/∂q.

    ``code`` is a given B (the one the layer stores); ``None`` computes it from Ŵ.
    """
    magnitude = jnp.abs(w_hat)
    if code is None:
        code = magnitude_code(w_hat, ties)
    value = 2.0 * jax.lax.stop_gradient(code).astype(w_hat.dtype) - 1.0
    return straight_through(value, magnitude)


def clip_latent(w: Array, percent) -> Array:
    r"""W ← sign(D)·clip(|D|, P_p, P_{100−p}),  D = W − mean_f W.

    P_p is the p-th percentile of |D| over the whole layer (linear interpolation, as
    np.percentile). Signs are preserved (an exact 0 stays 0). D is centred per filter; the
    result in general is not, since the clip moves the magnitudes of the two signs unequally.
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
      B_i = 1{|Ŵ_i| > lower-median_f |Ŵ|} ∈ {0, 1}           (``magnitude_code``)
      q(W) = 2B − 1 ∈ {−1, +1}
    Backward:
      ∂L/∂|Ŵ| = ∂L/∂q (straight through on the magnitude), ∂L/∂Ŵ = sign(Ŵ)·∂L/∂q, then
      through the standardisation (statistics not detached). B itself gets no gradient.

    The paper (arXiv 2102.07981) derives a {0, +1} code; its released code convolves with
    2B − 1 ∈ {−1, +1}, so a large *negative* latent weight becomes +1. bnnlab follows the code.

    Ties (``ties``): the default ``"median"`` is the released code's rule (its default
    ``--sort`` option): positions tied with the median get 0, so a filter may have fewer than
    ⌊n/2⌋ ones. It is the default because bnnlab's recipes reproduce the released training
    steps, and ties are not rare: the latent-weight clip makes plateaus of equal magnitude; at
    initialisation about one of the 4,736 filters of a CIFAR ResNet-18 differs by a bit between
    the two rules, and side by side with the released code the codes drift apart by thousands
    of bits within a few steps. ``"exact_half"``
    (top ⌊n/2⌋, ties broken by position, the reference's ``quick`` branch) keeps every filter
    exactly balanced, the paper's maximum-entropy argument taken literally.

    Training-time pieces, all pure functions the training step calls:
      * ``next_state(W)`` = B, which a layer computes once per training forward, stores, and
        passes back as ``state=``; in eval the stored B is passed and not recomputed (the
        reference freezes B at eval). Given ``state``, the forward uses it in either mode, so
        the code the convolution uses and the code that is stored are one array.
      * ``project(W, progress)`` = ``clip_latent(W, 15·(1 − progress))``: the reference's in-place
        clipping of the latent weights, applied by the training step instead of the forward.
        The reference also re-clips on every eval batch (an in-place write without a training
        guard); bnnlab keeps evaluation pure. Eval outputs are the same either way (B is frozen
        in eval), and the next training step projects again.
      * ``weight_decay = False``: SiMaN removes ℓ2 regularisation from binary layers (latent
        weights and α), because ℓ2 makes weights Laplacian and costs bit entropy.
    The learnable per-channel scale α (init mean|W| per filter) belongs to the layer.

    References:
      Lin, Ji, Xu, Zhang, Chao, Lin, Shao. "SiMaN: Sign-to-Magnitude Network Binarization",
      IEEE TPAMI 2023, arXiv 2102.07981.

    Args:
      ties: ``"median"`` (default, the released code) or ``"exact_half"``; see above.
    """

    stateful = True
    mode_dependent = True
    weight_decay = False

    ties: str = "median"

    def __post_init__(self):
        base.check_choice("siman", "ties", self.ties, math.TIE_RULES)

    def __call__(self, w, *, progress=None, train=True, state=None, **kwargs):
        del progress, train, kwargs  # Unused: ``state`` carries the mode (see the docstring).
        base.require_kernel_rank(self.name, w)
        return magnitude_binarize(standardize_weights(w), state, self.ties)

    def encode(self, w, *, progress=None, train=True, state=None, **kwargs):
        del progress, train, kwargs  # Unused.
        base.require_kernel_rank(self.name, w)
        code = magnitude_code(standardize_weights(w), self.ties) if state is None else state
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
        return jax.lax.stop_gradient(magnitude_code(standardize_weights(w), self.ties))

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
