"""Independent NumPy references (closed forms from spec/algorithms.md) shared by the tests.

Nothing here calls bnnlab or jax.grad: these are the formulas the implementation is checked
against.
"""

import numpy as np


def sign(x):
    return np.where(x >= 0, 1.0, -1.0)


def per_filter(w):
    """(n, C_out) view of a Flax kernel: one column per filter."""
    return w.reshape(-1, w.shape[-1])


def standardize(x, eps, target_std=1.0, center=True):
    """Per-column standardisation of a 2-D array (columns = filters or samples)."""
    mean = x.mean(0, keepdims=True)
    s = np.sqrt(x.var(0, ddof=1, keepdims=True) + eps)
    return ((x - mean) if center else x) / s * target_std


def standardize_vjp(x, h, eps, target_std=1.0, center=True):
    """∂L/∂x for y = c·(x − μ)/s (or c·x/s when not centring), s = √(var_u + ε), per column.

    With d = x − μ and n the column length:
      centred:   ∂L/∂x_i = (c/s)(h_i − mean h) − c·d_i·Σ_j h_j d_j / ((n − 1)s³)
      uncentred: ∂L/∂x_i = (c/s)·h_i          − c·d_i·Σ_j h_j x_j / ((n − 1)s³)
    """
    n = x.shape[0]
    d = x - x.mean(0, keepdims=True)
    s = np.sqrt(x.var(0, ddof=1, keepdims=True) + eps)
    c = target_std
    if center:
        return c / s * (h - h.mean(0, keepdims=True)) - c * d * (h * d).sum(0, keepdims=True) / (
            (n - 1) * s**3
        )
    return c / s * h - c * d * (h * x).sum(0, keepdims=True) / ((n - 1) * s**3)


def approx_sign_grad(x):
    return np.maximum(0.0, 2.0 - 2.0 * np.abs(x))


def laplace(rng, shape, b):
    return rng.laplace(0.0, b, size=shape).astype(np.float32)
