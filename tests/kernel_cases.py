"""Shared by the kernel tests: the randomized binary-conv shape suite and its NumPy reference."""

import numpy as np


def numpy_conv(x, w, stride, pads, pad_value):
    """Direct loops over output positions on the ±1 tensors (int64 arithmetic)."""
    xb = np.where(x < 0, -1, 1).astype(np.int64)
    wb = np.where(w < 0, -1, 1).astype(np.int64)
    xb = np.pad(xb, [(0, 0), *pads, (0, 0)], constant_values=int(pad_value))
    kh, kw, _, co = w.shape
    ho, wo = (xb.shape[1] - kh) // stride + 1, (xb.shape[2] - kw) // stride + 1
    y = np.zeros((x.shape[0], ho, wo, co), np.int64)
    for i in range(ho):
        for j in range(wo):
            patch = xb[:, i * stride : i * stride + kh, j * stride : j * stride + kw]
            y[:, i, j] = np.einsum("nhwc,hwco->no", patch, wb)
    return y


def same_pads(size, k, stride):
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def pads_of(padding, x_shape, k, stride):
    if padding == "VALID":
        return [(0, 0), (0, 0)]
    if padding == "SAME":
        return [same_pads(x_shape[1], k, stride), same_pads(x_shape[2], k, stride)]
    return list(padding)


# (batch, height, width, C_in, C_out, kernel, stride, padding, pad_value)
CONV_CASES = [
    (1, 8, 8, 3, 16, 3, 1, "SAME", 1.0),  # batch 1, K = 27
    (2, 7, 7, 33, 8, 3, 2, "SAME", 0.0),  # K = 297, stride 2, odd size
    (1, 9, 6, 70, 5, 3, 2, "VALID", 1.0),
    (2, 6, 6, 64, 130, 1, 1, "VALID", 0.0),  # 1×1, more outputs than one block
    (1, 5, 5, 17, 4, 2, 1, "SAME", 0.0),  # even kernel: asymmetric padding
    (3, 4, 4, 32, 32, 5, 1, "SAME", 0.0),  # mostly padding
    (1, 6, 6, 40, 7, 3, 2, ((1, 0), (2, 1)), 0.0),  # explicit padding
    (1, 6, 6, 40, 7, 3, 2, ((1, 0), (2, 1)), 1.0),
]


def case_arrays(case, seed=0):
    n, h, w, ci, co, k, *_ = case
    rng = np.random.default_rng(seed + h * 31 + ci)
    x = rng.normal(size=(n, h, w, ci)).astype(np.float32)
    x[rng.random(x.shape) < 0.05] = 0.0  # sign(0) = +1 must agree everywhere
    return x, rng.normal(size=(k, k, ci, co)).astype(np.float32)
