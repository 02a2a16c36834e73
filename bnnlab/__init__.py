"""bnnlab: binary and low-precision neural networks in JAX/Flax.

Public entry points:
  * ``bnnlab.quant``: quantizers (``quant.get(name)``, ``quant.available()``).
  * ``bnnlab.layers``: ``QuantConv``, ``QuantDense``, ``RSign``, ``RPReLU``.
  * ``bnnlab.quantize_model(model, rules)``: quantize an unmodified Flax model by rules.
  * ``bnnlab.summary(model, input_shape)``: bit widths, memory, MACs and energy per layer.
"""

from bnnlab import layers, quant
from bnnlab.diagnostics.summary import summary
from bnnlab.intercept import QuantizedModel, Rule, quantize_model

__all__ = ["QuantizedModel", "Rule", "layers", "quant", "quantize_model", "summary"]
__version__ = "0.1.0"
