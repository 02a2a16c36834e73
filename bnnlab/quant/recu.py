"""ReCU: the Rectified Clamp Unit for binary weights, its activation binarizer, and the τ schedule.

Behaviour follows the authors' released code (z-hXu/ReCU, ``binarized_modules.py``), which
bnnlab treats as the reference where the paper body could not be checked (docs/recu.md).
"""

from __future__ import annotations

import dataclasses
import math as pymath

import jax
import jax.numpy as jnp

from bnnlab.quant import base, math

Array = jax.Array

STANDARD_STD = 2.0 * pymath.sqrt(2.0)  # std of Laplace(0, b=2), the scale ReCU standardises to
EPS = 1e-5


def tau_schedule(progress, tau_min: float = 0.85, tau_max: float = 0.99) -> Array:
    r"""ReCU's exponential scheduler: τ(p) = τ_min + (τ_max − τ_min)·(e^p − 1)/(e − 1), p = t/T.

    The reference sets τ once per epoch with p = epoch / T; pass ``progress`` accordingly.
    """
    p = base.resolve_progress(progress)
    return tau_min + (tau_max - tau_min) * (jnp.exp(p) - 1.0) / (pymath.e - 1.0)


def laplace_quantile(b: Array, tau) -> Array:
    r"""Q(τ) = −b·ln(2 − 2τ): the τ-quantile of Laplace(0, b) for τ ∈ (0.5, 1); Q(1) = +∞."""
    return -b * jnp.log(2.0 - 2.0 * jnp.asarray(tau, jnp.float32))


def standardize_weights(w: Array) -> Array:
    r"""W̃ = (W − mean_f W) / (sqrt(var_u,f(W) + 1e-5) / 2√2), per filter (balancing + std 2√2)."""
    return math.standardize(w, math.filter_axes(w), eps=EPS, target_std=STANDARD_STD)


def clamp_threshold(w_tilde: Array, tau) -> Array:
    """Q(τ) for the layer: b̂ = mean |W̃| over the whole layer, detached."""
    b_hat = jnp.mean(jnp.abs(w_tilde))
    return jax.lax.stop_gradient(laplace_quantile(b_hat, tau))


def clamp_sign(w_tilde: Array, q: Array) -> Array:
    r"""sign(clip(W̃, −Q, Q)) = sign(W̃) with gradient 1{|W̃| ≤ Q} (explicit mask, no window)."""
    return math.surrogate(math.sign, math.ste_derivative, w_tilde, (q,))


def _check_tau(name: str, value: float) -> None:
    if not 0.5 < value < 1.0:
        raise ValueError(
            f"recu: {name} must lie in (0.5, 1) (the Laplace quantile Q(τ) = −b·ln(2 − 2τ) is "
            f"positive and finite only there), got {value!r}."
        )


@base.register("recu")
@dataclasses.dataclass(frozen=True)
class ReCU(base.Quantizer):
    r"""ReCU binary weights: balance, standardise, clamp the gradient at a Laplace quantile.

    Forward (per layer, train and eval):
      W̃ = (W − mean_f W) / (√(var_u,f(W) + 10⁻⁵) / 2√2)    per filter (std 2√2 ⇒ Laplace b = 2)
      b̂ = mean |W̃|                                          over the whole layer
      Q = −b̂·ln(2 − 2τ)                                     (stop_gradient)
      q(W) = sign(clip(W̃, −Q, Q)) = sign(W̃)                 ∈ {−1, +1}
    Backward:
      ∂L/∂W̃ = 1{|W̃| ≤ Q} · ∂L/∂q    (identity STE masked by the clamp), then through the
      standardisation with mean and std *not* detached.
    The clamp never changes the forward value; it only removes the gradient of "dead" tail
    weights. The learnable per-channel scale α (init U[0, 1)) belongs to the layer.

    τ comes from ``tau`` if given, else from the schedule ``tau_schedule(progress)``.

    References:
      Xu, Lin, Liu, Chen, Shao, Gao, Tian, Ji. "ReCU: Reviving the Dead Weights in Binary Neural
      Networks", ICCV 2021, arXiv 2103.12369.

    Args:
      tau: a fixed τ in (0.5, 1); ``None`` uses the schedule.
      tau_min, tau_max: schedule end points (defaults 0.85 → 0.99, as the paper's recipes).
    """

    tau: float | None = None
    tau_min: float = 0.85
    tau_max: float = 0.99

    def __post_init__(self):
        for field in ("tau_min", "tau_max") + (("tau",) if self.tau is not None else ()):
            _check_tau(field, getattr(self, field))
        if self.tau_max < self.tau_min:
            raise ValueError(f"recu: tau_max ({self.tau_max}) must be >= tau_min ({self.tau_min}).")

    def current_tau(self, progress=None) -> Array:
        if self.tau is not None:
            return jnp.float32(self.tau)
        return tau_schedule(progress, self.tau_min, self.tau_max)

    def schedule(self, progress=None):
        return {"recu_tau": self.current_tau(progress)}

    def __call__(self, w, *, progress=None, train=True, **kwargs):
        del train, kwargs  # Unused.
        base.require_kernel_rank(self.name, w)
        w_tilde = standardize_weights(w)
        return clamp_sign(w_tilde, clamp_threshold(w_tilde, self.current_tau(progress)))

    def encode(self, w, *, progress=None, train=True, **kwargs):
        del progress, train, kwargs  # Unused.
        base.require_kernel_rank(self.name, w)
        return base.signs_encoded(math.sign(standardize_weights(w)))

    def dead_fraction(self, w: Array, progress=None) -> Array:
        """Fraction of weights outside ±Q(τ), i.e. with a zero gradient mask."""
        w_tilde = standardize_weights(w)
        q = clamp_threshold(w_tilde, self.current_tau(progress))
        return jnp.mean(jnp.abs(w_tilde) > q)

    def statistics(self, w: Array, progress=None) -> dict[str, Array]:
        return {"dead_recu": self.dead_fraction(w, progress)}


@base.register("recu_act")
@dataclasses.dataclass(frozen=True)
class ReCUActivation(base.Quantizer):
    r"""ReCU's activation binarizer: per-sample scaling in training only, then ApproxSign.

    Forward:  Ã = A / √(var_u,s(A) + 10⁻⁵) if training (per sample, no mean subtraction),
              Ã = A in eval;  q(A) = sign(Ã)
    Backward: ∂q/∂Ã = max(0, 2 − 2|Ã|), then through the scaling (σ not detached).
    Only a positive scale is applied, so the forward sign is the same in train and eval; the
    scaling only shapes the gradient.

    References:
      Xu et al. "ReCU", ICCV 2021, arXiv 2103.12369 (released code).
    """

    mode_dependent = True

    def __call__(self, x, *, progress=None, train=True, **kwargs):
        del progress, kwargs  # Unused.
        base.require_batched(self.name, x)
        if train:
            x = math.standardize(x, math.sample_axes(x), eps=EPS, center=False)
        return math.surrogate(math.sign, math.approx_sign_derivative, x, ())

    def encode(self, x, *, progress=None, train=True, **kwargs):
        del progress, train, kwargs  # Unused.
        return base.signs_encoded(math.sign(x))
