"""QuantConv and QuantDense: ``nn.Conv`` / ``nn.Dense`` with pluggable weight and input quantizers.

With no quantizers (or ``identity``) and no scale they compute exactly what ``nn.Conv`` /
``nn.Dense`` compute, with the same parameter names and shapes, so float checkpoints load.
The forward is

    y = α ⊙ op(q_in(x), q_w(W)) + b

where α is the optional learnable per-output-channel scale (ReCU, SiMaN) and b the bias.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen import initializers
from flax.linen.dtypes import promote_dtype
from flax.linen.linear import canonicalize_padding, default_kernel_init
from jax import lax

from bnnlab import quant
from bnnlab.layers import sown
from bnnlab.quant import math as qmath

Array = jax.Array
QuantizerLike = quant.Quantizer | str | None

PAD_VALUES = (0.0, 1.0)
STATE_COLLECTION = "quant_state"


def scale_initializer(kind: str | Callable, kernel: Array) -> Callable:
    """Initializer of the per-channel scale α.

    ``"uniform"``: U[0, 1) (ReCU's code); ``"mean_abs"``: mean |W| of each initial filter
    (SiMaN's code); ``"ones"``; or any ``init(rng, shape, dtype)`` callable.
    """
    if callable(kind):
        return kind
    if kind == "uniform":
        return initializers.uniform(1.0)
    if kind == "ones":
        return initializers.ones_init()
    if kind == "mean_abs":
        return lambda rng, shape, dtype: (
            qmath.mean_abs_per_filter(kernel).reshape(shape).astype(dtype)
        )
    raise ValueError(
        f"Unknown scale {kind!r}: use None, 'uniform' (ReCU), 'mean_abs' (SiMaN), 'ones' or an "
        "initializer callable."
    )


def check_pad_value(pad_value: float) -> None:
    if pad_value not in PAD_VALUES:
        raise ValueError(
            f"pad_value must be 0 (zero padding, as the PyTorch reference code) or 1 (+1 "
            f"padding, free in a bit-packed kernel), got {pad_value!r}."
        )


def explicit_padding(padding, inputs_shape, kernel_shape, strides, kernel_dilation):
    """Lax padding (string or pairs) as explicit (low, high) pairs per spatial axis."""
    if not isinstance(padding, str):
        return [tuple(p) for p in padding]
    if padding not in ("SAME", "VALID"):
        raise ValueError(
            f"padding {padding!r} is not supported by quantized convolutions; use 'SAME', "
            "'VALID', an int or (low, high) pairs."
        )
    dilated = [(k - 1) * d + 1 for k, d in zip(kernel_shape, kernel_dilation, strict=True)]
    return lax.padtype_to_pads(inputs_shape, dilated, strides, padding)


def pad_inputs(x, padding, kernel_spatial, strides, input_dilation, kernel_dilation, pad_value):
    """Pads ``x`` (N, spatial…, C) with ``pad_value`` and returns it with lax padding 'VALID'.

    Zero padding is left to lax (identical to nn.Conv); +1 padding must be explicit because
    lax pads with zeros.
    """
    if pad_value == 0.0 or padding == "VALID":
        return x, padding
    if any(d != 1 for d in input_dilation):
        raise ValueError("pad_value=1 with input_dilation > 1 is not supported.")
    pads = explicit_padding(padding, x.shape[1:-1], kernel_spatial, strides, kernel_dilation)
    if all(p == (0, 0) for p in pads):
        return x, "VALID"
    x = jnp.pad(x, [(0, 0), *pads, (0, 0)], constant_values=pad_value)
    return x, "VALID"


def accumulator_dtype(compute_dtype, quantizers):
    """The dtype a layer's convolution or matmul returns: float32 for a quantized layer under a
    narrower compute dtype, else the compute dtype (as ``nn.Conv``/``nn.Dense``).

    A binary conv's output is an integer sum of up to k²·C_in terms (times α), which bfloat16
    represents exactly only up to 256; the layer hands the float32 accumulator to the
    BatchNorm after it, which normalises in float32 and returns the compute dtype. Rounding
    these sums to bfloat16 cost 2–4 points of accuracy (docs/numerics.md).
    """
    if any(q is not None and q.precision < 16 for q in quantizers):
        return jnp.promote_types(compute_dtype, jnp.float32)
    return compute_dtype


def accumulate(op: Callable, lhs: Array, rhs: Array, dtype) -> Array:
    """``op(lhs, rhs)`` (a convolution or matmul) returning ``dtype``.

    When ``dtype`` is wider than the operands (a quantized layer's float32 accumulator under
    bfloat16), the backward still runs in the operands' dtype: the cotangent is rounded to it
    and the transposed ops take bf16 operands, as PyTorch's autocast does. Without this JAX
    would transpose the float32-result op into float32 ops (no bf16 tensor cores backward).
    """
    if jnp.dtype(dtype) == jnp.result_type(lhs, rhs):
        return op(lhs, rhs)

    @jax.custom_vjp
    def wide(a, b):
        return op(a, b, preferred_element_type=dtype)

    def forward(a, b):
        return wide(a, b), (a, b)

    def backward(residuals, g):
        a, b = residuals
        _, vjp = jax.vjp(op, a, b)
        return vjp(g.astype(jnp.result_type(a, b)))

    wide.defvjp(forward, backward)
    return wide(lhs, rhs)


def resolve_train(module_train: bool | None, call_train: bool | None, quantizers) -> bool:
    """The effective train flag; required only when a quantizer behaves differently in eval."""
    train = module_train if call_train is None else call_train
    if train is None:
        needing = [q.name for q in quantizers if q is not None and q.mode_dependent]
        if needing:
            raise ValueError(
                f"Quantizer(s) {needing} behave differently in training and evaluation: pass "
                "train=True/False to the layer call (or set it as a layer attribute)."
            )
        return False
    return bool(train)


def quantize(
    module: nn.Module, q: quant.Quantizer | None, x: Array, role: str, *, train: bool, progress
) -> Array:
    """Applies ``q`` inside ``module``, creating its learnable arrays and stored state.

    Learnable arrays become params named ``{role}_{name}`` (e.g. ``kernel_step``); stored state
    lives in the ``quant_state`` collection as ``{role}_state``. In training the state is
    recomputed (``q.next_state``), used by the forward and stored when that collection is
    mutable; in eval the stored state is used.
    """
    if q is None:
        return x
    kwargs: dict[str, Any] = {}
    for name in q.learnable:
        kwargs[name] = module.param(f"{role}_{name}", lambda _, n=name: q.init_learnable(x)[n])
    if q.stateful:
        state = module.variable(STATE_COLLECTION, f"{role}_state", q.init_state, x)
        if train:
            # Computed once: the forward and the stored state are the same array (two
            # computations of a discrete state may differ by XLA's per-fusion rounding).
            fresh = q.next_state(x, progress=progress)
            if module.is_mutable_collection(STATE_COLLECTION) and not module.is_initializing():
                state.value = fresh
            kwargs["state"] = fresh
        else:
            kwargs["state"] = state.value
    return q(x, progress=progress, train=train, **kwargs)


class _QuantBase(nn.Module):
    """Shared steps; subclasses declare the fields (so ``features`` can stay positional).

    Subclasses define ``features``, ``use_bias``, ``dtype``, ``param_dtype``, ``kernel_init``,
    ``bias_init``, ``kernel_quantizer``, ``input_quantizer``, ``scale`` and ``train``.
    """

    def _quantizers(self):
        return quant.resolve(self.kernel_quantizer), quant.resolve(self.input_quantizer)

    def _quantized_operands(self, inputs, kernel_shape, train, progress):
        """Creates kernel/bias/scale like nn.Conv/nn.Dense, then quantizes kernel and inputs.

        Returns (inputs, kernel, bias, scale), bias and scale possibly None.
        """
        kernel_q, input_q = self._quantizers()
        train = resolve_train(self.train, train, (kernel_q, input_q))
        kernel = self.param("kernel", self.kernel_init, kernel_shape, self.param_dtype)
        bias = (
            self.param("bias", self.bias_init, (self.features,), self.param_dtype)
            if self.use_bias
            else None
        )
        scale = (
            None
            if self.scale is None
            else self.param(
                "scale",
                scale_initializer(self.scale, kernel),
                (self.features,),
                self.param_dtype,
            )
        )
        # Mixed precision: the quantizers see float32 (at least), so every binarisation
        # decision and every statistic (standardisation, scales, percentiles, steps) is the
        # float32 one; only their outputs are cast to the compute dtype for the conv/matmul.
        # ±1 codes are exact in bfloat16.
        compute = self.dtype or jnp.result_type(
            *(a for a in (inputs, kernel, bias) if a is not None)
        )
        statistics = jnp.promote_types(compute, jnp.float32)
        inputs, kernel = inputs.astype(statistics), kernel.astype(statistics)
        kernel = quantize(self, kernel_q, kernel, "kernel", train=train, progress=progress)
        if kernel_q is not None and kernel_q.precision == 1:
            # The binary code this step computes with, for flip tracking.
            self.sow(sown.TRACKING, sown.KERNEL_CODES, kernel > 0)
        inputs = quantize(self, input_q, inputs, "input", train=train, progress=progress)
        if input_q is not None and input_q.precision == 1:
            # Sign balance of the binarised input, for the diagnostics.
            self.sow(sown.INTERMEDIATES, sown.INPUT_BALANCE, jnp.mean(inputs > 0))
        inputs, kernel, bias = promote_dtype(inputs, kernel, bias, dtype=compute)
        return inputs, kernel, bias, scale

    @staticmethod
    def _scale_and_bias(y, scale, bias):
        if scale is not None:
            y = y * scale.astype(y.dtype)
        if bias is not None:
            y += jnp.reshape(bias, (1,) * (y.ndim - 1) + (-1,))
        return y


class QuantConv(_QuantBase):
    """``nn.Conv`` with quantizers: y = α ⊙ conv(pad(q_in(x)), q_w(W)) + b.

    Attributes (beyond ``nn.Conv``'s):
      kernel_quantizer: quantizer (or its registered name) for the HWIO kernel; the last axis
        is the output channel, so per-filter statistics reduce over the other axes.
      input_quantizer: quantizer for the inputs (batch axis first).
      scale: None, ``"uniform"`` (ReCU), ``"mean_abs"`` (SiMaN), ``"ones"`` or an initializer;
        creates a learnable per-output-channel ``scale`` param.
      pad_value: value of padded taps *after* input quantization: 0 (zero padding, as the
        PyTorch reference code) or 1 (+1 padding, free for a bit-packed kernel).
      train: default train flag (the call argument overrides it).
      dtype: compute dtype of the conv operands and output (None: promoted from the inputs
        and params, as ``nn.Conv``). The quantizers always run in float32 or wider (see
        ``docs/numerics.md``, mixed precision), so the binary codes do not depend on it.

    Call: ``layer(x, train=..., progress=...)``; ``progress`` ∈ [0, 1] drives schedules.
    """

    features: int
    kernel_size: int | Sequence[int]
    strides: int | Sequence[int] = 1
    padding: Any = "SAME"
    input_dilation: int | Sequence[int] = 1
    kernel_dilation: int | Sequence[int] = 1
    feature_group_count: int = 1
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    kernel_init: Callable = default_kernel_init
    bias_init: Callable = initializers.zeros_init()
    kernel_quantizer: QuantizerLike = None
    input_quantizer: QuantizerLike = None
    scale: str | Callable | None = None
    pad_value: float = 0.0
    train: bool | None = None

    @nn.compact
    def __call__(self, inputs: Array, *, train: bool | None = None, progress=None) -> Array:
        check_pad_value(self.pad_value)
        kernel_size = (
            (self.kernel_size,) if isinstance(self.kernel_size, int) else tuple(self.kernel_size)
        )
        rank = len(kernel_size)

        def broadcast(v):
            return (v,) * rank if isinstance(v, int) else tuple(v)

        strides = broadcast(self.strides)
        input_dilation = broadcast(self.input_dilation)
        kernel_dilation = broadcast(self.kernel_dilation)

        batch_shape = inputs.shape[: inputs.ndim - (rank + 1)]
        if len(batch_shape) != 1:
            inputs = jnp.reshape(inputs, (-1,) + inputs.shape[len(batch_shape) :])

        in_features = inputs.shape[-1]
        if in_features % self.feature_group_count:
            raise ValueError(
                f"Input features ({in_features}) must be divisible by feature_group_count "
                f"({self.feature_group_count})."
            )
        kernel_shape = kernel_size + (in_features // self.feature_group_count, self.features)
        inputs, kernel, bias, scale = self._quantized_operands(
            inputs, kernel_shape, train, progress
        )
        padding = canonicalize_padding(self.padding, rank)
        inputs, padding = pad_inputs(
            inputs,
            padding,
            kernel_size,
            strides,
            input_dilation,
            kernel_dilation,
            self.pad_value,
        )
        dimension_numbers = lax.ConvDimensionNumbers(
            (0, rank + 1) + tuple(range(1, rank + 1)),
            (rank + 1, rank) + tuple(range(rank)),
            (0, rank + 1) + tuple(range(1, rank + 1)),
        )
        conv = functools.partial(
            lax.conv_general_dilated,
            window_strides=strides,
            padding=padding,
            lhs_dilation=input_dilation,
            rhs_dilation=kernel_dilation,
            dimension_numbers=dimension_numbers,
            feature_group_count=self.feature_group_count,
            precision=self.precision,
        )
        out_dtype = accumulator_dtype(inputs.dtype, self._quantizers())
        y = accumulate(conv, inputs, kernel, out_dtype)
        y = self._scale_and_bias(y, scale, bias)
        if len(batch_shape) != 1:
            y = jnp.reshape(y, batch_shape + y.shape[1:])
        return y


class QuantDense(_QuantBase):
    """``nn.Dense`` with quantizers: y = α ⊙ (q_in(x) · q_w(W)) + b.

    Attributes are those of ``nn.Dense`` plus ``kernel_quantizer``, ``input_quantizer``,
    ``scale`` and ``train`` as in ``QuantConv`` (``dtype`` too: quantizers in float32). The
    kernel is (in, out): the last axis is the output unit.
    """

    features: int
    use_bias: bool = True
    dtype: Any = None
    param_dtype: Any = jnp.float32
    precision: Any = None
    kernel_init: Callable = default_kernel_init
    bias_init: Callable = initializers.zeros_init()
    kernel_quantizer: QuantizerLike = None
    input_quantizer: QuantizerLike = None
    scale: str | Callable | None = None
    train: bool | None = None

    @nn.compact
    def __call__(self, inputs: Array, *, train: bool | None = None, progress=None) -> Array:
        inputs, kernel, bias, scale = self._quantized_operands(
            inputs, (inputs.shape[-1], self.features), train, progress
        )
        matmul = functools.partial(
            lax.dot_general,
            dimension_numbers=(((inputs.ndim - 1,), (0,)), ((), ())),
            precision=self.precision,
        )
        out_dtype = accumulator_dtype(inputs.dtype, self._quantizers())
        y = accumulate(matmul, inputs, kernel, out_dtype)
        return self._scale_and_bias(y, scale, bias)
