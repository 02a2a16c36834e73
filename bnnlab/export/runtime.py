"""Running an export: the model zoo's architecture with its binary convs swapped for the packed
XNOR-popcount kernel and the folded BatchNorms for the identity (a Linen method interceptor,
so the float parts run exactly the code they were trained with)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from bnnlab import models, quant
from bnnlab.kernels import xnor


class PackedModel:
    """A loaded export: ``packed(images, backend="auto")`` → logits.

    ``backend`` picks the XNOR kernel (``kernels.backend.BACKENDS``); on CPU "auto" is the
    native kernel where it was built, else XLA.
    """

    def __init__(self, manifest: dict, float_vars: dict, packed: dict[str, dict]):
        self.manifest = manifest
        self.model = models.from_ref(manifest["model"])  # no training config needed
        self.input_shape = tuple(manifest["input_shape"])
        self._geometry = {layer["path"]: layer for layer in manifest["packed"]}
        self._folded = {layer["folded_bn"] for layer in manifest["packed"] if layer["folded_bn"]}
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

    @property
    def packed_layers(self) -> list[str]:
        return list(self._geometry)

    def _forward(self, float_vars, packed, images, backend):
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
            iq = quant.resolve(context.module.input_quantizer)
            # Exactly ±1 (checked at export); without a quantizer, an RSign output already is.
            x = args[0] if iq is None else iq(args[0], progress=None, train=False)
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
            return self.model.apply(float_vars, images, train=False)

    def __call__(self, images, backend: str = "auto") -> jax.Array:
        images = jnp.asarray(images, jnp.float32)
        if images.ndim != 4 or images.shape[1:] != self.input_shape:
            raise ValueError(
                f"Expected images of shape (batch, {', '.join(map(str, self.input_shape))}), "
                f"got {images.shape}."
            )
        return self._apply(self._float, self._packed, images, backend=backend)
