"""A traced JAX computation (its jaxpr) → TFLite builtin ops, with each packed binary conv as
Larq Compute Engine's ``LceQuantize`` → ``LceBconv2d``.

The export's forward pass is traced once with the packed convs replaced by the placeholder
primitive ``BCONV`` (``tflite.export``). Every equation whose inputs are all known is
evaluated here (BatchNorm scales, quantized weights, masks): only what depends on the image
becomes an op. Constants stay compact: an array constant along an axis is stored with size 1
there and broadcast by the elementwise op that reads it (as TFLite's ADD, MUL, … do).

What cannot be written as TFLite/LCE ops raises ``Unsupported`` naming the operation, the
layer it comes from (the jaxpr's source line) and why.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.extend.core as jex
import numpy as np

from bnnlab.export.tflite import flatbuffer

# The placeholder for a packed binary conv: its ±1 input in, the conv's float output out.
BCONV = jex.Primitive("bnnlab_lce_bconv2d")
BCONV.def_abstract_eval(lambda x, *, path, out_shape: jax.core.ShapedArray(out_shape, np.float32))
BCONV.def_impl(lambda x, *, path, out_shape: np.zeros(out_shape, np.float32))

_RELU_CLAMPS = {None: 0, (0.0, float("inf")): 1, (-1.0, 1.0): 2, (0.0, 6.0): 3}
_CALLS = ("pjit", "closed_call", "core_call", "custom_jvp_call", "custom_vjp_call", "remat")
_CALLS += ("custom_vjp_call_jaxpr", "checkpoint", "jit")


class Unsupported(ValueError):
    """The model has an operation TFLite/LCE cannot represent (the message names it)."""


@dataclasses.dataclass(frozen=True)
class Const:
    value: np.ndarray  # compact: size 1 on axes it is constant along
    shape: tuple[int, ...]  # the logical shape

    def full(self) -> np.ndarray:
        return np.broadcast_to(self.value, self.shape)


@dataclasses.dataclass(frozen=True)
class Tensor:
    index: int
    shape: tuple[int, ...]
    dtype: np.dtype


def _compact(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.size <= 1:
        return array
    for axis in range(array.ndim):
        if array.shape[axis] > 1:
            first = np.take(array, [0], axis=axis)
            if np.array_equal(array, np.broadcast_to(first, array.shape), equal_nan=True):
                array = first
    return array


def _where(eqn) -> str:
    info = eqn.source_info
    try:
        frame = jax._src.source_info_util.user_frame(info)
        place = f"{frame.file_name}:{frame.start_line}" if frame else "?"
    except Exception:
        place = "?"
    stack = str(info.name_stack) if getattr(info, "name_stack", None) else ""
    return f"{stack or 'the model'} ({place})"


class Converter:
    def __init__(self, builder: flatbuffer.ModelBuilder, bconv):
        self.b = builder
        self.bconv = bconv  # (path, Tensor of ±1 floats, out_shape) → Tensor
        self._count = 0
        self._quantized: dict[int, Tensor] = {}

    # ----------------------------------------------------------------- values and tensors

    def new(self, shape, dtype, name: str) -> Tensor:
        self._count += 1
        index = self.b.tensor(shape, dtype, f"{name}_{self._count}")
        return Tensor(index, tuple(int(n) for n in shape), np.dtype(dtype))

    def tensor_of(self, value, name: str = "const") -> int:
        if isinstance(value, Tensor):
            return value.index
        array = value.value
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        if array.ndim < len(value.shape):
            array = array.reshape((1,) * (len(value.shape) - array.ndim) + array.shape)
        self._count += 1
        return self.b.constant(array, f"{name}_{self._count}")

    def emit(self, op: str, inputs, shape, dtype, options=None, custom=None) -> Tensor:
        out = self.new(shape, dtype, op.lower())
        self.b.op(
            op,
            [i if isinstance(i, int) else self.tensor_of(i) for i in inputs],
            [out.index],
            options,
            custom,
        )
        return out

    # ----------------------------------------------------------------------- the walk

    def run(self, jaxpr, consts, args):
        env = {}

        def read(v):
            if isinstance(v, jex.Literal):
                value = np.asarray(v.val)
                return Const(value, value.shape)
            return env[v]

        for var, value in zip(jaxpr.constvars, consts, strict=True):
            env[var] = Const(_compact(np.asarray(value)), tuple(np.shape(value)))
        for var, value in zip(jaxpr.invars, args, strict=True):
            env[var] = value
        for eqn in jaxpr.eqns:
            ins = [read(v) for v in eqn.invars]
            outs = self.equation(eqn, ins)
            for var, value in zip(eqn.outvars, outs, strict=True):
                env[var] = value
        return [read(v) for v in jaxpr.outvars]

    def equation(self, eqn, ins):
        name = eqn.primitive.name
        if name == BCONV.name:
            return [self._bconv(eqn, ins[0])]
        if name == "optimization_barrier":
            return ins
        if name in _CALLS or ("jaxpr" in eqn.params and name not in ("cond", "while", "scan")):
            closed = next(
                eqn.params[k] for k in ("jaxpr", "call_jaxpr", "fun_jaxpr") if k in eqn.params
            )
            inner = closed.jaxpr if hasattr(closed, "jaxpr") else closed
            consts = closed.consts if hasattr(closed, "consts") else ()
            n = len(inner.invars)
            return self.run(inner, consts, ins[:n])
        if all(isinstance(v, Const) for v in ins):
            outs = eqn.primitive.bind(*[v.full() for v in ins], **eqn.params)
            outs = outs if eqn.primitive.multiple_results else [outs]
            return [Const(_compact(np.asarray(o)), tuple(np.shape(o))) for o in outs]
        handler = _HANDLERS.get(name)
        if handler is None:
            raise Unsupported(
                f"{_where(eqn)}: the operation {name!r} has no TFLite equivalent in bnnlab's "
                "export (supported: " + ", ".join(sorted(_HANDLERS)) + ")"
            )
        out = eqn.outvars[0].aval
        return [handler(self, eqn, ins, tuple(out.shape), np.dtype(out.dtype))]

    def _bconv(self, eqn, x):
        if not isinstance(x, Tensor):
            raise Unsupported(f"{_where(eqn)}: a binary conv on a constant input")
        return self.bconv(eqn.params["path"], x, eqn.params["out_shape"])

    def quantize(self, x: Tensor) -> Tensor:
        """LceQuantize, once per tensor (two binary convs may read one input)."""
        if x.index not in self._quantized:
            *lead, c = x.shape
            self._quantized[x.index] = self.emit(
                "LceQuantize", [x.index], (*lead, -(-c // 32)), np.int32, custom={}
            )
        return self._quantized[x.index]


# --------------------------------------------------------------------------- handlers


def _elementwise(op):
    def handle(c, eqn, ins, shape, dtype):
        return c.emit(op, ins, shape, dtype)

    return handle


def _unary(op):
    def handle(c, eqn, ins, shape, dtype):
        return c.emit(op, ins[:1], shape, dtype)

    return handle


def _square(c, eqn, ins, shape, dtype):
    return c.emit("MUL", [ins[0], ins[0]], shape, dtype)


def _integer_pow(c, eqn, ins, shape, dtype):
    y = eqn.params["y"]
    if y == 1:
        return ins[0]
    if y == 2:
        return _square(c, eqn, ins, shape, dtype)
    return c.emit("POW", [ins[0], Const(np.float32(y), ())], shape, dtype)


def _select_n(c, eqn, ins, shape, dtype):
    which, *cases = ins
    if len(cases) != 2 or np.dtype(eqn.invars[0].aval.dtype) != np.bool_:
        raise Unsupported(f"{_where(eqn)}: select_n with an integer index")
    return c.emit("SELECT_V2", [which, cases[1], cases[0]], shape, dtype)


def _convert(c, eqn, ins, shape, dtype):
    x = ins[0]
    if x.dtype == dtype:
        return x
    return c.emit("CAST", [x], shape, dtype)


def _identity(c, eqn, ins, shape, dtype):
    return ins[0]


def _clamp(c, eqn, ins, shape, dtype):
    lo, x, hi = ins
    y = c.emit("MAXIMUM", [x, lo], shape, dtype)
    return c.emit("MINIMUM", [y, hi], shape, dtype)


def _reshape_to(c, x, shape, dtype):
    if tuple(x.shape) == tuple(shape):
        return x
    return c.emit(
        "RESHAPE",
        [x, Const(np.asarray(shape, np.int32), (len(shape),))],
        shape,
        dtype,
        options=("ReshapeOptions", {}),
    )


def _reshape(c, eqn, ins, shape, dtype):
    return _reshape_to(c, ins[0], shape, dtype)


def _broadcast_in_dim(c, eqn, ins, shape, dtype):
    x, dims = ins[0], eqn.params["broadcast_dimensions"]
    kept = [1] * len(shape)
    for axis, size in zip(dims, x.shape, strict=True):
        kept[axis] = size
    y = _reshape_to(c, x, tuple(kept), dtype)
    if tuple(kept) == tuple(shape):
        return y
    target = Const(np.asarray(shape, np.int32), (len(shape),))
    return c.emit("BROADCAST_TO", [y, target], shape, dtype)


def _transpose(c, eqn, ins, shape, dtype):
    perm = np.asarray(eqn.params["permutation"], np.int32)
    return c.emit("TRANSPOSE", [ins[0], Const(perm, perm.shape)], shape, dtype)


def _reduce(op):
    def handle(c, eqn, ins, shape, dtype):
        axes = np.asarray(eqn.params["axes"], np.int32)
        return c.emit(
            op,
            [ins[0], Const(axes, axes.shape)],
            shape,
            dtype,
            options=("ReducerOptions", {"KeepDims": False}),
        )

    return handle


def _concatenate(c, eqn, ins, shape, dtype):
    return c.emit(
        "CONCATENATION",
        ins,
        shape,
        dtype,
        options=("ConcatenationOptions", {"Axis": eqn.params["dimension"]}),
    )


def padded_shape(shape, spatial_pads) -> tuple[int, ...]:
    """An NHWC shape with (lo, hi) pads added to H and W."""
    hw = (n + lo + hi for n, (lo, hi) in zip(shape[1:3], spatial_pads, strict=True))
    return (shape[0], *hw, shape[3])


def _pad_op(c, x, pads, value, shape, dtype, where):
    pads = np.asarray(pads, np.int32)
    if (pads < 0).any():
        raise Unsupported(f"{where}: negative padding (a crop)")
    if not pads.any():
        return x
    if value == 0:
        return c.emit("PAD", [x, Const(pads, pads.shape)], shape, dtype)
    fill = Const(np.asarray(value, dtype), ())
    return c.emit("PADV2", [x, Const(pads, pads.shape), fill], shape, dtype)


def _pad(c, eqn, ins, shape, dtype):
    x, value = ins
    config = eqn.params["padding_config"]
    if any(interior for _, _, interior in config):
        raise Unsupported(f"{_where(eqn)}: interior (dilating) padding")
    if not isinstance(value, Const):
        raise Unsupported(f"{_where(eqn)}: a padding value that depends on the input")
    pads = [(lo, hi) for lo, hi, _ in config]
    return _pad_op(c, x, pads, float(value.full()), shape, dtype, _where(eqn))


def _slice(c, eqn, ins, shape, dtype):
    start = np.asarray(eqn.params["start_indices"], np.int32)
    limit = np.asarray(eqn.params["limit_indices"], np.int32)
    strides = eqn.params["strides"]
    strides = np.ones_like(start) if strides is None else np.asarray(strides, np.int32)
    consts = [Const(a, a.shape) for a in (start, limit, strides)]
    return c.emit(
        "STRIDED_SLICE", [ins[0], *consts], shape, dtype, options=("StridedSliceOptions", {})
    )


def _same_pads(size, k, s, d=1):
    k = (k - 1) * d + 1
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return (total // 2, total - total // 2)


def _spatial_padding(pads, in_hw, kernel, strides, dilation=(1, 1)):
    """'VALID', 'SAME', or None (explicit pads TFLite's two modes do not cover)."""
    pads = [tuple(int(p) for p in q) for q in pads]
    if all(p == (0, 0) for p in pads):
        return "VALID"
    same = [_same_pads(*args) for args in zip(in_hw, kernel, strides, dilation, strict=True)]
    return "SAME" if pads == same else None


_PADDING = {"SAME": 0, "VALID": 1}


def _conv(c, eqn, ins, shape, dtype):
    x, w = ins
    p = eqn.params
    where = _where(eqn)
    dn = p["dimension_numbers"]
    if (dn.lhs_spec, dn.rhs_spec, dn.out_spec) != ((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2)):
        raise Unsupported(f"{where}: a convolution not in NHWC/HWIO layout ({dn})")
    if not isinstance(w, Const):
        raise Unsupported(f"{where}: a convolution whose kernel depends on the input")
    if any(d != 1 for d in p["lhs_dilation"]):
        raise Unsupported(f"{where}: a transposed (input-dilated) convolution")
    kernel = w.full().astype(np.float32)
    kh, kw, cin_g, cout = kernel.shape
    strides, dilation = tuple(p["window_strides"]), tuple(p["rhs_dilation"])
    mode = _spatial_padding(p["padding"], x.shape[1:3], (kh, kw), strides, dilation)
    if mode is None:
        full = [(0, 0), *p["padding"], (0, 0)]
        x = _pad_op(c, x, full, 0.0, padded_shape(x.shape, p["padding"]), dtype, where)
        mode = "VALID"
    groups, cin = p["feature_group_count"], x.shape[3]
    fields = {
        "Padding": _PADDING[mode],
        "StrideH": strides[0],
        "StrideW": strides[1],
        "DilationHFactor": dilation[0],
        "DilationWFactor": dilation[1],
    }
    if groups == 1:
        op, kind = "CONV_2D", "Conv2DOptions"
        filt = np.ascontiguousarray(kernel.transpose(3, 0, 1, 2))  # HWIO → OHWI
    elif groups == cin and cin_g == 1:
        op, kind = "DEPTHWISE_CONV_2D", "DepthwiseConv2DOptions"
        filt = np.ascontiguousarray(kernel.reshape(1, kh, kw, cout))
        fields["DepthMultiplier"] = cout // cin
    else:
        raise Unsupported(f"{where}: a grouped convolution ({groups} groups of {cin_g} channels)")
    bias = Const(np.zeros(cout, np.float32), (cout,))
    return c.emit(op, [x, Const(filt, filt.shape), bias], shape, dtype, options=(kind, fields))


def _dot_general(c, eqn, ins, shape, dtype):
    x, w = ins
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    where = _where(eqn)
    if lb or rb or not isinstance(w, Const) or isinstance(x, Const):
        raise Unsupported(f"{where}: a matrix product other than activations × weights")
    if len(w.shape) != 2 or tuple(rc) != (0,) or tuple(lc) != (len(x.shape) - 1,):
        raise Unsupported(f"{where}: a contraction other than the last input axis")
    weights = np.ascontiguousarray(w.full().astype(np.float32).T)  # (out, in)
    if len(x.shape) != 2:
        rows = int(np.prod(x.shape[:-1]))
        x = _reshape_to(c, x, (rows, x.shape[-1]), dtype)
    out2 = (x.shape[0], weights.shape[0])
    y = c.emit(
        "FULLY_CONNECTED",
        [x, Const(weights, weights.shape), -1],
        out2,
        dtype,
        options=("FullyConnectedOptions", {}),
    )
    return _reshape_to(c, y, shape, dtype)


def _window(c, eqn, ins, shape, dtype, kind):
    p, where = eqn.params, _where(eqn)
    x = ins[0]
    dims, strides = tuple(p["window_dimensions"]), tuple(p["window_strides"])
    if len(dims) != 4 or dims[0] != 1 or dims[3] != 1 or strides[0] != 1 or strides[3] != 1:
        raise Unsupported(f"{where}: a pooling window not over H and W of an NHWC tensor")
    if any(d != 1 for d in (*p["base_dilation"], *p["window_dilation"])):
        raise Unsupported(f"{where}: a dilated pooling window")
    pads = p["padding"]
    if tuple(pads[0]) != (0, 0) or tuple(pads[3]) != (0, 0):
        raise Unsupported(f"{where}: pooling padded along N or C")
    mode = _spatial_padding(pads[1:3], x.shape[1:3], dims[1:3], strides[1:3])
    if (kind == "max" and mode is None) or (kind == "sum" and mode != "VALID"):
        # TFLite's pools skip padded elements: a sum over zeros or a max over −inf is a pad
        # op and a VALID pool.
        fill = 0.0 if kind == "sum" else float(np.finfo(np.float32).min)
        x = _pad_op(c, x, pads, fill, padded_shape(x.shape, pads[1:3]), dtype, where)
        mode = "VALID"
    fields = {
        "Padding": _PADDING[mode],
        "StrideH": strides[1],
        "StrideW": strides[2],
        "FilterHeight": dims[1],
        "FilterWidth": dims[2],
    }
    if kind == "max":
        return c.emit("MAX_POOL_2D", [x], shape, dtype, options=("Pool2DOptions", fields))
    mean = c.emit("AVERAGE_POOL_2D", [x], shape, dtype, options=("Pool2DOptions", fields))
    count = Const(np.float32(dims[1] * dims[2]), ())
    return c.emit("MUL", [mean, count], shape, dtype)


_HANDLERS = {
    "add": _elementwise("ADD"),
    "sub": _elementwise("SUB"),
    "mul": _elementwise("MUL"),
    "div": _elementwise("DIV"),
    "max": _elementwise("MAXIMUM"),
    "min": _elementwise("MINIMUM"),
    "pow": _elementwise("POW"),
    "gt": _elementwise("GREATER"),
    "ge": _elementwise("GREATER_EQUAL"),
    "lt": _elementwise("LESS"),
    "le": _elementwise("LESS_EQUAL"),
    "eq": _elementwise("EQUAL"),
    "ne": _elementwise("NOT_EQUAL"),
    "and": _elementwise("LOGICAL_AND"),
    "or": _elementwise("LOGICAL_OR"),
    "not": _unary("LOGICAL_NOT"),
    "neg": _unary("NEG"),
    "abs": _unary("ABS"),
    "exp": _unary("EXP"),
    "log": _unary("LOG"),
    "tanh": _unary("TANH"),
    "logistic": _unary("LOGISTIC"),
    "sqrt": _unary("SQRT"),
    "rsqrt": _unary("RSQRT"),
    "sign": _unary("SIGN"),
    "floor": _unary("FLOOR"),
    "ceil": _unary("CEIL"),
    "round": _unary("ROUND"),
    "square": _square,
    "integer_pow": _integer_pow,
    "select_n": _select_n,
    "convert_element_type": _convert,
    "copy": _identity,
    "copy_p": _identity,
    "clamp": _clamp,
    "reshape": _reshape,
    "squeeze": _reshape,
    "expand_dims": _reshape,
    "broadcast_in_dim": _broadcast_in_dim,
    "transpose": _transpose,
    "reduce_sum": _reduce("SUM"),
    "reduce_max": _reduce("REDUCE_MAX"),
    "reduce_min": _reduce("REDUCE_MIN"),
    "concatenate": _concatenate,
    "pad": _pad,
    "slice": _slice,
    "conv_general_dilated": _conv,
    "dot_general": _dot_general,
    "reduce_window_max": lambda c, e, i, s, d: _window(c, e, i, s, d, "max"),
    "reduce_window_sum": lambda c, e, i, s, d: _window(c, e, i, s, d, "sum"),
}
