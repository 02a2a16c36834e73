"""Independent NumPy references (the closed forms of docs/) shared by the tests.

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


def siman_code(w_hat_columns, ties="median"):
    """SiMaN's {0, 1} code per column of |Ŵ| (n, C), by sorting each column.

    ``median``: 1{|x| > lower median} (torch.median's lower middle element, the released code).
    ``exact_half``: the ⌊n/2⌋ largest, ties at the median going to earlier rows.
    """
    x = np.abs(np.asarray(w_hat_columns, np.float64))
    n, c = x.shape
    if ties == "median":
        return (x > np.sort(x, axis=0)[(n - 1) // 2]).astype(np.float32)
    rows = np.broadcast_to(np.arange(n), (c, n))
    order = np.lexsort((-rows, x.T), axis=-1)  # by |x| ascending, then later rows first
    code = np.zeros((c, n), np.float32)
    np.put_along_axis(code, order[:, n - n // 2 :], 1.0, axis=-1)
    return code.T


def torch_batch_norm_update(running_mean, running_var, x, momentum=0.1):
    """PyTorch's BatchNorm running-statistics update (momentum = weight of the new batch),
    with the *unbiased* batch variance, over every axis but the last."""
    flat = np.asarray(x, np.float64).reshape(-1, x.shape[-1])
    mean = flat.mean(0)
    var_unbiased = flat.var(0, ddof=1)
    return (
        (1 - momentum) * running_mean + momentum * mean,
        (1 - momentum) * running_var + momentum * var_unbiased,
    )
