"""Which layers of a model are quantized, and the training-time pieces that follow from it.

Training code needs to know, per parameter, whether it is the latent weight of a quantized
layer: to apply a quantizer's projection (SiMaN's clip) after each step, and to exclude binary
layers from weight decay where the method says so. ``find`` answers that once, by tracing the
model's ``init`` abstractly (no compute), for models built from ``QuantConv``/``QuantDense`` and
for models wrapped by ``bnnlab.quantize_model`` alike.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
from flax import traverse_util

from bnnlab import quant
from bnnlab.layers import adder, quantized


@dataclasses.dataclass(frozen=True)
class QuantizedLayer:
    """One quantized layer: its module path (= its prefix in ``params``) and quantizers."""

    path: tuple[str, ...]
    kernel_quantizer: quant.Quantizer | None
    input_quantizer: quant.Quantizer | None


@dataclasses.dataclass(frozen=True)
class Scan:
    """What one abstract ``init`` of a model shows: its quantized layers, its AdderNet layers
    and the shapes and dtypes of its variables."""

    layers: dict[str, QuantizedLayer]
    adder_paths: list[str]
    variables: Any  # jax.ShapeDtypeStruct leaves


def scan(model: Any, *args, rngs=None, method=None, **kwargs) -> Scan:
    """Traces ``model.init`` on ``args`` once, abstractly (no compute), and records its layers.

    ``args``/``kwargs`` are example inputs as for ``model.init`` (only their shapes matter).
    """
    found: dict[str, QuantizedLayer] = {}
    adders: set[str] = set()

    def record(next_fun, call_args, call_kwargs, context):
        module = context.module
        if context.method_name == "__call__":
            if isinstance(module, quantized._QuantBase):
                kernel_q, input_q = module._quantizers()
                found["/".join(module.path)] = QuantizedLayer(tuple(module.path), kernel_q, input_q)
            elif isinstance(module, adder.AdderConv):
                adders.add("/".join(module.path))
        return next_fun(*call_args, **call_kwargs)

    rngs = jax.random.key(0) if rngs is None else rngs
    with nn.intercept_methods(record):
        variables = jax.eval_shape(lambda: model.init(rngs, *args, method=method, **kwargs))
    if hasattr(model, "quantized_layers"):  # a model that declares its own (quantize_model)
        found = model.quantized_layers(*args, rngs=rngs, method=method, **kwargs)
    return Scan(found, sorted(adders), variables)


def find(model: Any, *args, rngs=None, method=None, **kwargs) -> dict[str, QuantizedLayer]:
    """Maps '/'-joined module paths to the quantized layers ``model`` calls on ``args``.

    For a model built from ``QuantConv``/``QuantDense`` that is every such layer, including
    those that stay float (both quantizers None, e.g. a model zoo's stem conv); for a
    ``bnnlab.quantize_model`` wrapper, the modules matched by a rule with a quantizer.
    ``args``/``kwargs`` are example inputs as for ``model.init`` (only their shapes matter).
    """
    if hasattr(model, "quantized_layers"):
        return model.quantized_layers(*args, rngs=rngs, method=method, **kwargs)
    return scan(model, *args, rngs=rngs, method=method, **kwargs).layers


def adder_layers(model: Any, *args, rngs=None, method=None, **kwargs) -> list[str]:
    """'/'-joined module paths of the AdderNet layers ``model`` calls on ``args``."""
    return scan(model, *args, rngs=rngs, method=method, **kwargs).adder_paths


def _lookup(flat: dict, key: tuple[str, ...]) -> Any:
    if key not in flat:
        raise KeyError(
            f"Parameter {'/'.join(key)} not found; pass the 'params' collection of the model "
            "that `find` inspected."
        )
    return flat[key]


def project(params: Any, layers: dict[str, QuantizedLayer], progress=None) -> Any:
    """Applies each kernel quantizer's ``project`` (e.g. SiMaN's clip) to its latent kernel.

    Call it in the training step (on the ``params`` collection) with the step's ``progress``;
    quantizers without a projection leave their kernels untouched.
    """
    flat = traverse_util.flatten_dict(params)
    for layer in layers.values():
        q = layer.kernel_quantizer
        if q is None or type(q).project is quant.Quantizer.project:
            continue
        key = layer.path + ("kernel",)
        flat[key] = q.project(_lookup(flat, key), progress)
    return traverse_util.unflatten_dict(flat)


def weight_decay_mask(params: Any, layers: dict[str, QuantizedLayer]) -> Any:
    """A bool tree like ``params``: False for every param of a layer whose kernel quantizer
    opts out of weight decay (SiMaN: latent weights and α), True elsewhere.

    Use with ``optax.add_decayed_weights(wd, mask=...)`` or ``optax.masked``.
    """
    no_decay = [
        layer.path
        for layer in layers.values()
        if layer.kernel_quantizer is not None and not layer.kernel_quantizer.weight_decay
    ]
    flat = traverse_util.flatten_dict(params)
    mask = {key: not any(key[: len(p)] == p for p in no_decay) for key in flat}
    return traverse_util.unflatten_dict(mask)
