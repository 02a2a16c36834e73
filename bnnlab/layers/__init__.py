"""Flax Linen layers built on ``bnnlab.quant``."""

from bnnlab.layers import inventory
from bnnlab.layers.activations import PReLU, RPReLU, RSign, hardtanh
from bnnlab.layers.adder import AdderConv
from bnnlab.layers.batch_norm import BatchNorm
from bnnlab.layers.inventory import QuantizedLayer
from bnnlab.layers.quantized import QuantConv, QuantDense

__all__ = [
    "AdderConv",
    "BatchNorm",
    "PReLU",
    "QuantConv",
    "QuantDense",
    "QuantizedLayer",
    "RPReLU",
    "RSign",
    "hardtanh",
    "inventory",
]
