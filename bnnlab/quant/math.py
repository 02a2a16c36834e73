"""Sign, surrogate-gradient sign, and the per-filter / per-sample statistics quantizers share.

``sign`` never returns 0: sign(0) = +1, as in larq, so binary tensors are exactly ±1 and pack
into bits without a third value (the PyTorch reference code uses torch.sign, where sign(0) = 0;
the two differ only on exact zeros).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


def sign(x: Array) -> Array:
    r"""sign(x) = +1 if x ≥ 0 else −1, in x's dtype (so sign(0) = +1).

    XLA on CPU flushes subnormal floats to zero, so a negative subnormal also maps to +1.
    """
    return jnp.where(x >= 0, 1, -1).astype(x.dtype)


def heaviside(x: Array) -> Array:
    r"""H(x) = 1 if x > 0 else 0, in x's dtype."""
    return (x > 0).astype(x.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def surrogate(forward: Callable, derivative: Callable, x: Array, params: tuple = ()) -> Array:
    """``forward(x)`` with the pseudo-gradient ``g · derivative(x, *params)``.

    ``params`` are extra (possibly traced) arrays the derivative depends on, such as a clip
    threshold computed from the training schedule; they receive a zero gradient.
    """
    del derivative, params  # Unused in the primal.
    return forward(x)


def _surrogate_fwd(forward, derivative, x, params):
    del derivative  # Unused.
    return forward(x), (x, params)


def _surrogate_bwd(forward, derivative, residuals, g):
    del forward  # Unused.
    x, params = residuals
    dx = g * derivative(x, *params).astype(g.dtype)
    return dx, jax.tree_util.tree_map(jnp.zeros_like, params)


surrogate.defvjp(_surrogate_fwd, _surrogate_bwd)


# Pseudo-derivatives, written once and shared by the quantizers (and tested against NumPy).


def ste_derivative(x: Array, clip_value: Array) -> Array:
    r"""1{|x| ≤ c}: the clipped straight-through estimator."""
    return (jnp.abs(x) <= clip_value).astype(x.dtype)


def approx_sign_derivative(x: Array) -> Array:
    r"""max(0, 2 − 2|x|): derivative of Bi-Real Net's piecewise-quadratic ApproxSign."""
    return jnp.maximum(0.0, 2.0 - 2.0 * jnp.abs(x)).astype(x.dtype)


def swish_sign_derivative(x: Array, beta: Array) -> Array:
    r"""β(2 − βx·tanh(βx/2)) / (1 + cosh(βx)).

    The derivative of SignSwish SS_β(x) = 2σ(βx)(1 + βx(1 − σ(βx))) − 1.
    """
    bx = beta * x
    return beta * (2.0 - bx * jnp.tanh(bx / 2.0)) / (1.0 + jnp.cosh(bx))


def filter_axes(w: Array) -> tuple[int, ...]:
    """Axes of one filter in a Flax kernel: all but the last (output-channel) axis."""
    return tuple(range(w.ndim - 1))


def sample_axes(x: Array) -> tuple[int, ...]:
    """Axes of one sample in an activation: all but the leading batch axis."""
    return tuple(range(1, x.ndim))


def standardize(
    x: Array, axes: tuple[int, ...], *, eps: float, target_std: float = 1.0, center: bool = True
) -> Array:
    r"""(x − mean) / (sqrt(var_u + ε) / target_std) over ``axes``.

    var_u is the unbiased variance (ddof = 1), as torch.var in the reference code. The
    statistics are *not* detached: the gradient flows through them, as in the papers' code.
    With ``center=False`` only the scaling is applied (ReCU's training-time activation scaling),
    while the variance is still taken around the mean.
    """
    mean = jnp.mean(x, axis=axes, keepdims=True)
    centred = x - mean
    var = jnp.var(x, axis=axes, keepdims=True, ddof=1)
    denom = jnp.sqrt(var + eps) / target_std
    return (centred if center else x) / denom


def mean_abs_per_filter(w: Array) -> Array:
    """mean |W| over each filter, shape (1, …, 1, C_out)."""
    return jnp.mean(jnp.abs(w), axis=filter_axes(w), keepdims=True)


def _bisect_kth(keys: Array, k, upper: int, steps: int) -> Array:
    """Smallest v in [0, upper] with #{keys ≤ v} ≥ k + 1, per column of ``keys`` (n, *rest):
    the k-th smallest key (0-based), by bisection with one count per step."""
    k = jnp.asarray(k, jnp.int32)
    shape = jnp.broadcast_shapes(keys.shape[1:], k.shape)
    bounds = (jnp.zeros(shape, jnp.int32), jnp.full(shape, upper, jnp.int32))

    def step(_, bounds):
        lo, hi = bounds
        mid = lo + (hi - lo) // 2
        found = jnp.sum(keys <= mid[None], axis=0) >= k + 1
        return jnp.where(found, lo, mid + 1), jnp.where(found, mid, hi)

    return jax.lax.fori_loop(0, steps, step, bounds)[0]


def kth_smallest(x: Array, k) -> Array:
    """Exact k-th smallest (0-based) of non-negative floats along axis 0.

    ``x`` has shape (n, *rest) and ``k`` broadcasts against ``rest``; the result has the
    broadcast shape. Non-negative float32 values order like their int32 bit patterns, so a
    31-step bisection over the bit patterns with a count per step finds the order statistic
    exactly. On CPU this is several times faster than XLA's sort, which ``jnp.percentile`` and
    ``lax.top_k`` use, and it runs in every training step of SiMaN.
    """
    bits = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.int32)
    lo = _bisect_kth(bits, k, 0x7F800000, 31)  # the bit pattern of +inf bounds the search
    return jax.lax.bitcast_convert_type(lo, jnp.float32).astype(x.dtype)


TIE_RULES = ("median", "exact_half")


def upper_half_code(x: Array, ties: str = "median") -> Array:
    r"""The {0, 1} code of the upper half of each column of non-negative ``x`` (n, *rest).

    ``ties="median"``: B_i = 1{x_i > m}, m the lower median (the ((n − 1) // 2)-th smallest);
    exactly ⌊n/2⌋ ones when the values are distinct, fewer when values tie with m.
    ``ties="exact_half"``: the ⌊n/2⌋ largest, ties at m broken by position (earlier rows win),
    so always exactly ⌊n/2⌋ ones.

    The code is a discrete decision over a whole column (a rank), so every comparison that
    decides it must read the same bits. A float recomputed in several XLA fusions can differ by
    an ulp between them (on XLA:CPU, LLVM contracts w − mean into an FMA in some fusions and not
    others; ``optimization_barrier`` is removed before fusion), and then the element at the
    median ranks above it in one pass and below it in another: n/2 + 1 ones. So the values are
    turned into int32 keys once and every decision is taken from one materialised buffer:
    on CPU the operand of a single ``while`` loop that both finds the order statistic and emits
    the code from its final comparison; elsewhere the output of one sort (GPU/TPU sort fast).
    """
    check_tie_rule(ties)
    x = jnp.asarray(x)
    keys = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.int32)
    code = jax.lax.platform_dependent(
        keys,
        cpu=functools.partial(_upper_half_by_bisection, ties=ties),
        default=functools.partial(_upper_half_by_sort, ties=ties),
    )
    return code.astype(x.dtype)


def check_tie_rule(ties: str) -> None:
    if ties not in TIE_RULES:
        raise ValueError(
            f"ties must be one of {TIE_RULES} ('median': 1 for values above the lower median, "
            f"as the SiMaN reference; 'exact_half': exactly half ones), got {ties!r}."
        )


def _upper_half_by_bisection(keys: Array, ties: str) -> Array:
    """One loop: 31 bisection steps on the key value, then (``exact_half``) on the position
    among ties, then one step at the converged threshold whose comparison is the code."""
    n = keys.shape[0]
    k = (n - 1) // 2  # the code is 1 exactly where (key, position) is above the k-th smallest
    rows = jnp.arange(n, dtype=jnp.int32).reshape((n,) + (1,) * (keys.ndim - 1))
    rank = (n - 1) - rows  # among equal keys, earlier rows rank higher
    # Every non-negative int32 (+inf and NaN patterns included, so a NaN filter still gets
    # exactly the rule's count) lies in [0, 2^31 − 1]: 31 halvings.
    value_steps = 31
    position_steps = (n - 1).bit_length() if ties == "exact_half" else 0
    rest = keys.shape[1:]
    full = functools.partial(jnp.full, rest, dtype=jnp.int32)
    lo_p = full(0 if position_steps else n - 1)

    def step(i, carry):
        lo_v, hi_v, lo_p, hi_p, _ = carry
        on_value = i < value_steps
        mid_v = jnp.where(on_value, lo_v + (hi_v - lo_v) // 2, lo_v)
        mid_p = jnp.where(on_value, n - 1, lo_p + (hi_p - lo_p) // 2)
        below = (keys < mid_v[None]) | ((keys == mid_v[None]) & (rank <= mid_p[None]))
        found = jnp.sum(below, axis=0, dtype=jnp.int32) >= k + 1
        on_position = ~on_value
        lo_v = jnp.where(on_value & ~found, mid_v + 1, lo_v)
        hi_v = jnp.where(on_value & found, mid_v, hi_v)
        lo_p = jnp.where(on_position & ~found, mid_p + 1, lo_p)
        hi_p = jnp.where(on_position & found, mid_p, hi_p)
        return lo_v, hi_v, lo_p, hi_p, ~below

    init = (full(0), full(0x7FFFFFFF), lo_p, full(n - 1), jnp.zeros(keys.shape, bool))
    return jax.lax.fori_loop(0, value_steps + position_steps + 1, step, init)[-1]


def _upper_half_by_sort(keys: Array, ties: str) -> Array:
    """Sort (key, rank) along axis 0, decide on the sorted buffer, sort the code back."""
    n = keys.shape[0]
    rows = jax.lax.broadcasted_iota(jnp.int32, keys.shape, 0)
    rank = (n - 1) - rows
    sorted_keys, _, order = jax.lax.sort((keys, rank, rows), dimension=0, num_keys=2)
    if ties == "median":
        code_sorted = sorted_keys > sorted_keys[(n - 1) // 2][None]
    else:
        code_sorted = rows >= n - n // 2
    code = jax.lax.sort((order, code_sorted.astype(jnp.int32)), dimension=0, num_keys=1)[1]
    return code.astype(bool)


def percentile(x: Array, q) -> Array:
    """``np.percentile(x, q)`` (linear interpolation) of non-negative values, via
    ``kth_smallest``; ``q`` may be traced."""
    flat = x.reshape(-1, 1)
    n = flat.shape[0]
    position = jnp.clip(jnp.asarray(q, jnp.float32) / 100.0, 0.0, 1.0) * (n - 1)
    below = jnp.floor(position)
    ks = jnp.stack([below, jnp.minimum(below + 1, n - 1)]).astype(jnp.int32)
    low, high = kth_smallest(flat, ks)
    return low + (high - low) * (position - below).astype(x.dtype)
