"""Running an export: the model's architecture (a zoo model or any Linen module,
``described``) with its binary convs swapped for the packed
XNOR-popcount kernel and the folded BatchNorms for the identity (a Linen method interceptor,
so the float parts run exactly the code they were trained with)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from bnnlab import quant
from bnnlab.export import archive, described, fold, inputs
from bnnlab.kernels import xnor

_FLOAT_COLLECTIONS = ("params", "batch_stats", "quant_state")


class PackedModel:
    """A loaded export: ``packed(images, backend="auto")`` → logits.

    ``backend`` picks the XNOR kernel (``kernels.backend.BACKENDS``); on CPU "auto" is the
    native kernel where it was built, else XLA.
    """

    def __init__(
        self,
        manifest: dict,
        float_vars: dict,
        packed: dict[str, dict],
        source="the export",
        model=None,
    ):
        self.manifest = manifest
        self._call = manifest.get("call", {"train": False})
        try:
            # No training config needed; a user's own model may be given (``described``).
            self.model = described.build(manifest["model"], model, source)
            self.input_shape = tuple(int(n) for n in manifest["input_shape"])
        except described.ModelNotBuilt:
            raise
        except (KeyError, TypeError, ValueError) as e:
            raise archive.DamagedExport(
                source, f"its model description does not build ({e})"
            ) from e
        self._geometry = {layer["path"]: layer for layer in manifest["packed"]}
        self._folded = {layer["folded_bn"] for layer in manifest["packed"] if layer["folded_bn"]}
        self._check_structure(float_vars, source)
        self._float = jax.tree.map(jnp.asarray, float_vars)
        self._packed = {}
        for path, arrays in packed.items():
            kernel = xnor.PackedKernel.from_words(arrays["words"], self._geometry[path]["shape"])
            self._packed[path] = (
                xnor.native_layout(kernel),  # weights laid out once for the CPU kernel
                xnor.OutputTransform(
                    jnp.asarray(arrays["multiplier"]), jnp.asarray(arrays["bias"])
                ),
            )
        self._apply = jax.jit(self._forward, static_argnames="backend")

    def _check_structure(self, float_vars: dict, source) -> None:
        """The float variables are exactly those the architecture has, less the packed convs'
        and folded BatchNorms' (so a file altered consistently with its own manifest, or one
        written for another architecture, fails here instead of at the first call)."""
        example = jax.ShapeDtypeStruct((1, *self.input_shape), jnp.float32)
        shapes = jax.eval_shape(
            lambda x: self.model.init(jax.random.key(0), x, **self._call), example
        )
        removed = set(self._geometry) | self._folded
        want = {
            k: (tuple(v.shape), np.dtype(v.dtype).str)
            for k, v in traverse_util.flatten_dict(
                {c: shapes[c] for c in _FLOAT_COLLECTIONS if c in shapes}, sep="/"
            ).items()
            if not any(f"{k}/".startswith(f"{c}/{r}/") for c in _FLOAT_COLLECTIONS for r in removed)
        }
        got = {
            k: (tuple(np.shape(v)), np.asarray(v).dtype.str)
            for k, v in traverse_util.flatten_dict(float_vars, sep="/").items()
        }
        if got == want:
            return
        missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
        differ = [k for k in sorted(set(want) & set(got)) if want[k] != got[k]]
        problem = "; ".join(
            part
            for part in (
                missing and f"missing {missing[:3]}",
                extra and f"not in the architecture {extra[:3]}",
                differ
                and ", ".join(f"{k} is {got[k]}, the model has {want[k]}" for k in differ[:3]),
            )
            if part
        )
        raise archive.DamagedExport(source, f"its arrays do not fit its architecture: {problem}")

    @property
    def packed_layers(self) -> list[str]:
        return list(self._geometry)

    def _forward(self, float_vars, packed, images, backend, conv=None):
        """``conv(path, x, geometry)``, when given, stands in for the packed conv of ``path``
        on its ±1 input (the TFLite export traces the model with a placeholder there)."""

        def interceptor(next_fun, args, kwargs, context):
            if context.method_name != "__call__":
                return next_fun(*args, **kwargs)
            path = "/".join(context.module.path)
            if path in self._folded:
                return args[0]  # folded into the preceding conv's output transform
            if path not in packed:
                return next_fun(*args, **kwargs)
            geometry = self._geometry[path]
            kernel, transform = packed[path]
            iq = quant.resolve(fold.rule_view(self.model, context.module).input_quantizer)
            # Exactly ±1 (checked at export); without a quantizer, an RSign output already is.
            x = args[0] if iq is None else iq(args[0], progress=None, train=False)
            if conv is not None:
                return conv(path, x, geometry)
            y = xnor.xnor_conv2d(
                x,
                kernel,
                transform,
                strides=tuple(geometry["strides"]),
                padding=tuple(tuple(p) for p in geometry["padding"]),
                pad_value=geometry["pad_value"],
                backend=backend,
            )
            return y.astype(args[0].dtype)

        with nn.intercept_methods(interceptor):
            return self.model.apply(float_vars, images, **self._call)

    def __call__(
        self, images, backend: str = "auto", check_inputs: bool = True, normalized: bool = False
    ) -> jax.Array:
        """Logits of ``images``: pixels as the dataset gives them (uint8, or floats in [0, 1]),
        preprocessed here as in the run's evaluation; ``normalized=True`` for images already
        preprocessed as in training. ``export.inputs`` says what is checked;
        ``check_inputs=False`` skips the range check, not the dtype or NaN one."""
        images = inputs.validate(
            images,
            self.input_shape,
            self.manifest.get("input"),
            check_range=check_inputs,
            normalized=normalized,
        )
        return self._apply(self._float, self._packed, images, backend=backend)
