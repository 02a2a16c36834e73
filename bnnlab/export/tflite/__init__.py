"""An export → a ``.tflite`` flatbuffer for TFLite with Larq Compute Engine's custom ops (LCE,
the runtime with optimised ARM kernels for binary convolutions).

  report = export.tflite.write("simaN.npz", "simaN.tflite")      # or a loaded PackedModel

What is written: the export's forward pass, traced once (``convert``). The float stem,
shortcuts, activations and classifier become builtin TFLite ops; each packed binary conv
becomes ``LceQuantize`` (its ±1 input → 32-bit words, bit 1 = −1) and ``LceBconv2d`` with the
packed OHWI filter and the folded scales/BatchNorm as its per-channel multiplier and bias
(y = dot·multiplier + bias, dot the ±1 dot product; ``write(fused=False)``, the default,
applies them as MUL and ADD in bnnlab's own float order instead), +1 padding as
``pad_values=1`` (or a padded packed input where the pads are not SAME's, e.g. PyTorch's
padding=1 at stride 2) and zero padding as +1 padding less an exact per-position correction.

The input: float32 NHWC images of the export's input shape (batch ``batch_size``) as unit
pixels (uint8 pixels / 255), already resized/cropped as the run's evaluation does; the
recorded normalisation ``(x − mean) / std`` is folded into the file. An export without a
recorded normalisation takes the model's input as is. The file's description says which.
"""

from __future__ import annotations

import dataclasses
import pathlib

import jax
import jax.numpy as jnp
import numpy as np

from bnnlab.export import archive, runtime
from bnnlab.export.tflite import convert, flatbuffer
from bnnlab.export.tflite.convert import Unsupported

__all__ = ["TFLiteReport", "Unsupported", "write"]


@dataclasses.dataclass(frozen=True)
class TFLiteReport:
    path: pathlib.Path
    file_bytes: int
    input_shape: tuple[int, ...]
    input_description: str
    binary_convs: int
    operators: dict[str, int]

    def __str__(self) -> str:
        ops = ", ".join(f"{n} {name}" for name, n in sorted(self.operators.items()))
        return (
            f"{self.path}: {self.file_bytes / 1e6:.3f} MB TFLite + LCE, {self.binary_convs} "
            f"binary convs as LceBconv2d; input {list(self.input_shape)} {self.input_description}"
            f"; ops: {ops}"
        )


def _out_shape(x_shape, geometry) -> tuple[int, ...]:
    kh, kw, _, cout = geometry["shape"]
    (pt, pb), (pl, pr) = geometry["padding"]
    sh, sw = geometry["strides"]
    n, h, w, _ = x_shape
    return (n, (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1, cout)


def _padding_correction(kernel, pads, in_hw, strides) -> np.ndarray:
    """(H', W', O): Σ over the taps of each output position that read the padding of the
    kernel's per-tap channel sums, i.e. what +1 padding adds to the dot product over zero
    padding."""
    tap_sums = np.asarray(kernel.tap_sums, np.float64)[:, :, 0, :]  # (kh, kw, O)
    kh, kw, _ = tap_sums.shape
    (pt, pb), (pl, pr) = pads
    (h, w), (sh, sw) = in_hw, strides
    outside = np.ones((h + pt + pb, w + pl + pr))
    outside[pt : pt + h, pl : pl + w] = 0
    ho, wo = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
    corr = np.zeros((ho, wo, tap_sums.shape[-1]))
    for a in range(kh):
        for b in range(kw):
            hit = outside[a : a + sh * (ho - 1) + 1 : sh, b : b + sw * (wo - 1) + 1 : sw]
            corr += hit[:, :, None] * tap_sums[a, b]
    return corr


def _input_description(spec) -> str:
    if not spec:
        return "float32, the model's input as is (no normalisation was recorded)"
    return (
        f"float32 unit pixels in [0, 1] (uint8 / 255), resized as the run's evaluation does; "
        f"normalised inside: (x − {spec['mean']}) / {spec['std']} ({spec['normalization']})"
    )


def _bconv_writer(c: convert.Converter, model: runtime.PackedModel, fused: bool):
    def write(path, x: convert.Tensor, out_shape):
        geometry = model._geometry[path]
        kernel, transform = model._packed[path]
        kh, kw, cin, cout = geometry["shape"]
        strides = tuple(geometry["strides"])
        pads = [tuple(p) for p in geometry["padding"]]
        mode = convert._spatial_padding(pads, x.shape[1:3], (kh, kw), strides)
        pad_value = float(geometry["pad_value"])
        q = c.quantize(x)
        # Zero padding is written as +1 padding (bit 0) and an exact correction: the two
        # differ by a constant, the kernel's sum over the taps that fall in the padding, per
        # output position: dot₀ = dot₊₁ − corr. (LCE's own pad_values=0 is exact only in its
        # reference kernel; with its optimised x86 kernels the SiMaN :runlocal model gave 75
        # of 356 predictions equal.)
        correction = None
        if pad_value == 0.0 and mode != "VALID":
            correction = _padding_correction(kernel, pads, x.shape[1:3], strides)
        if mode is None:  # pads SAME does not cover (PyTorch's padding=1 at stride 2)
            full = [(0, 0), *pads, (0, 0)]
            shape = convert.padded_shape(q.shape, pads)
            q = convert._pad_op(c, q, full, 0, shape, np.int32, path)
            mode = "VALID"
        words = np.asarray(kernel.words).view(np.int32).reshape(cout, kh, kw, -1)
        options = dict(
            channels_in=int(cin),
            dilation_height_factor=1,
            dilation_width_factor=1,
            fused_activation_function=0,
            pad_values=1 if mode == "SAME" else 0,
            padding=convert._PADDING[mode],
            stride_height=int(strides[0]),
            stride_width=int(strides[1]),
        )
        multiplier = np.asarray(transform.multiplier, np.float32)
        bias = np.asarray(transform.bias, np.float32)
        if fused:  # LCE's own output transform (its float formula, within ~1e-4)
            m, b = multiplier, bias
            if correction is not None:
                correction = correction * multiplier.astype(np.float64)
        else:  # the exact integer dot, then bnnlab's y = f32(f32(dot·m) + b) as two ops
            m, b = np.ones(cout, np.float32), np.zeros(cout, np.float32)
        inputs = [
            q,
            convert.Const(words, words.shape),
            convert.Const(m, (cout,)),
            convert.Const(b, (cout,)),
            -1,
        ]
        y = c.emit("LceBconv2d", inputs, out_shape, np.float32, custom=options)
        if correction is not None:
            fix = correction.astype(np.float32)[None]
            y = c.emit(
                "SUB", [y, convert.Const(convert._compact(fix), fix.shape)], out_shape, np.float32
            )
        if fused:
            return y
        y = c.emit("MUL", [y, convert.Const(multiplier, (cout,))], out_shape, np.float32)
        return c.emit("ADD", [y, convert.Const(bias, (cout,))], out_shape, np.float32)

    return write


def convert_model(
    model: runtime.PackedModel, batch_size: int = 1, fused: bool = False
) -> tuple[bytes, dict]:
    """The flatbuffer of a loaded export and what it holds (``write`` says what ``fused``
    does)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size!r}")
    spec = model.manifest.get("input")
    shape = (batch_size, *model.input_shape)

    def placeholder(path, x, geometry):
        return convert.BCONV.bind(x, path=path, out_shape=_out_shape(x.shape, geometry))

    def forward(images):
        x = images
        if spec:
            mean = jnp.asarray(spec["mean"], jnp.float32)
            x = (x - mean) / jnp.asarray(spec["std"], jnp.float32)
        return model._forward(model._float, model._packed, x, backend="xla", conv=placeholder)

    closed = jax.make_jaxpr(forward)(jax.ShapeDtypeStruct(shape, jnp.float32))
    description = _input_description(spec)
    builder = flatbuffer.ModelBuilder(f"bnnlab export; input {list(shape)} {description}")
    c = convert.Converter(builder, None)
    c.bconv = _bconv_writer(c, model, fused)
    image = c.new(shape, np.float32, "images")
    (logits,) = c.run(closed.jaxpr, closed.consts, [image])
    if not isinstance(logits, convert.Tensor):
        raise Unsupported("the model's output does not depend on its input")
    builder.inputs, builder.outputs = [image.index], [logits.index]
    builder.prune()
    names = builder.operator_names
    info = dict(
        input_shape=shape,
        input_description=description,
        binary_convs=names.count("LceBconv2d"),
        operators={n: names.count(n) for n in set(names)},
    )
    return builder.serialize(), info


def write(export, path, batch_size: int = 1, fused: bool = False, model=None) -> TFLiteReport:
    """Writes ``export`` (a ``.npz`` export's path or a loaded ``PackedModel``) as a
    ``.tflite`` file at ``path``; ``model`` as for ``export.load``.

    ``fused=False`` (the default): each ``LceBconv2d`` outputs the exact integer dot product
    (multiplier 1, bias 0) and a MUL and an ADD apply the export's y = dot·m + b in the same
    float32 order as bnnlab, so the file reproduces the export's arithmetic (a pre-sign value
    within an ulp of zero keeps its sign). ``fused=True`` puts m and b into the LCE op, LCE's
    fastest form, whose float formula differs from bnnlab's by ~1e-4 relative."""
    if not isinstance(export, runtime.PackedModel):
        from bnnlab import export as export_lib

        export = export_lib.load(export, model=model)
    data, info = convert_model(export, batch_size, fused)
    path = pathlib.Path(path)
    archive.write_shared(path, lambda f: f.write(data))
    return TFLiteReport(path, len(data), **info)
