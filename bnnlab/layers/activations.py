"""Activations of the BNN architectures: Hardtanh, per-channel PReLU, and ReActNet's RSign and
RPReLU."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import initializers

from bnnlab.layers import sown
from bnnlab.quant import math as qmath

Array = jax.Array


class RSign(nn.Module):
    r"""Sign with a learnable per-channel threshold.

    Forward:  x_b = sign(x + β_c)   (β_c = −α_c, a learnable shift; the threshold is α_c)
    Backward: ∂x_b/∂x = ∂x_b/∂β = max(0, 2 − 2|x + β_c|)   (ApproxSign)

    References:
      Liu, Shen, Savvides, Cheng. "ReActNet: Towards Precise Binary Neural Network with
      Generalized Activation Functions", ECCV 2020, arXiv 2003.03488.
    """

    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        shift = self.param("bias", initializers.zeros_init(), (x.shape[-1],), self.param_dtype)
        # The threshold test runs in float32 (at least) under mixed precision; ±1 is exact in
        # any compute dtype, so only the decision needs the wider type.
        wide = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        out = qmath.surrogate(qmath.sign, qmath.approx_sign_derivative, wide + shift, ())
        self.sow(sown.INTERMEDIATES, sown.INPUT_BALANCE, jnp.mean(out > 0))
        return out.astype(x.dtype)


class RPReLU(nn.Module):
    r"""PReLU with learnable per-channel shifts before and after.

    Forward:  f(x) = PReLU_β(x − γ) + ζ,  PReLU_β(u) = u if u ≥ 0 else β·u
              (γ, β, ζ per channel; β initialised to 0.25, γ and ζ to 0)
    Backward: ordinary derivative.

    References:
      Liu et al. "ReActNet", ECCV 2020, arXiv 2003.03488.
    """

    slope_init: float = 0.25
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        c = x.shape[-1]
        gamma = self.param("gamma", initializers.zeros_init(), (c,), self.param_dtype)
        beta = self.param("beta", initializers.constant(self.slope_init), (c,), self.param_dtype)
        zeta = self.param("zeta", initializers.zeros_init(), (c,), self.param_dtype)
        gamma, beta, zeta = (p.astype(x.dtype) for p in (gamma, beta, zeta))
        u = x - gamma
        return jnp.where(u >= 0, u, beta * u) + zeta


def hardtanh(x: Array) -> Array:
    """clip(x, −1, 1): the nonlinearity of the ReCU/SiMaN CIFAR ResNets (PyTorch nn.Hardtanh)."""
    return jnp.clip(x, -1.0, 1.0)


class PReLU(nn.Module):
    r"""Per-channel PReLU: f(x) = x if x ≥ 0 else β_c·x, β_c initialised to 0.25 (PyTorch
    ``nn.PReLU(num_channels)``; flax's ``nn.PReLU`` has a single slope)."""

    slope_init: float = 0.25
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        beta = self.param(
            "beta", initializers.constant(self.slope_init), (x.shape[-1],), self.param_dtype
        )
        return jnp.where(x >= 0, x, beta.astype(x.dtype) * x)
