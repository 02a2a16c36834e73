"""bnnlab: binary and low-precision neural networks in JAX/Flax.

Public entry points:
  * ``bnnlab.quant``: quantizers (``quant.get(name)``, ``quant.available()``).
  * ``bnnlab.layers``: ``QuantConv``, ``QuantDense``, ``RSign``, ``RPReLU``.
  * ``bnnlab.quantize_model(model, rules)``: quantize an unmodified Flax model by rules.
  * ``bnnlab.summary(model, input_shape)``: bit widths, memory, MACs and energy per layer.

The entry points are imported on first use, so ``import bnnlab.data`` (what the input
pipeline's worker processes import) does not start JAX.
"""

import importlib

_EXPORTS = {
    "layers": ("bnnlab.layers", None),
    "quant": ("bnnlab.quant", None),
    "summary": ("bnnlab.diagnostics.summary", "summary"),
    "QuantizedModel": ("bnnlab.intercept", "QuantizedModel"),
    "Rule": ("bnnlab.intercept", "Rule"),
    "quantize_model": ("bnnlab.intercept", "quantize_model"),
}

__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'bnnlab' has no attribute {name!r}")
    module_name, attribute = _EXPORTS[name]
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS])
