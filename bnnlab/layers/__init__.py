"""Flax Linen layers built on ``bnnlab.quant``."""

from bnnlab.layers import inventory
from bnnlab.layers.inventory import QuantizedLayer
from bnnlab.layers.quantized import QuantConv, QuantDense
from bnnlab.layers.reactnet import RPReLU, RSign

__all__ = ["QuantConv", "QuantDense", "QuantizedLayer", "RPReLU", "RSign", "inventory"]
