"""Quantizers: pure JAX functions with custom pseudo-gradients, as hashable configs.

    >>> from bnnlab import quant
    >>> q = quant.get("recu")              # or quant.get("dorefa(k_bit=2, mode='weights')")
    >>> wb = q(w, progress=0.3)            # ±1 weights; jax.grad gives ReCU's masked STE

Every quantizer works on plain arrays, so Linen, NNX or hand-written JAX can call it.
``quant.available()`` lists the registered names.
"""

from __future__ import annotations

from bnnlab.quant import bitnet, dorefa, irnet, lsq, rbnn, recu, scaled, sign, siman, tokens
from bnnlab.quant.base import REGISTRY, Encoded, Quantizer
from bnnlab.quant.bitnet import BinaryAbsmean, TernaryAbsmean
from bnnlab.quant.dorefa import DoReFa
from bnnlab.quant.irnet import EdeSign, IRNet
from bnnlab.quant.lsq import LSQ
from bnnlab.quant.rbnn import RbnnSign
from bnnlab.quant.recu import ReCU, ReCUActivation
from bnnlab.quant.scaled import MagnitudeAwareSign, XnorSign
from bnnlab.quant.sign import ApproxSign, Identity, SteHeaviside, SteSign, SwishSign
from bnnlab.quant.siman import SiMaN, SiMaNActivation
from bnnlab.quant.tokens import TokenAbsmax

__all__ = [
    "LSQ",
    "ApproxSign",
    "BinaryAbsmean",
    "DoReFa",
    "EdeSign",
    "Encoded",
    "IRNet",
    "Identity",
    "MagnitudeAwareSign",
    "Quantizer",
    "RbnnSign",
    "ReCU",
    "ReCUActivation",
    "SiMaN",
    "SiMaNActivation",
    "SteHeaviside",
    "SteSign",
    "SwishSign",
    "TernaryAbsmean",
    "TokenAbsmax",
    "XnorSign",
    "available",
    "bitnet",
    "dorefa",
    "get",
    "irnet",
    "lsq",
    "rbnn",
    "recu",
    "resolve",
    "scaled",
    "sign",
    "siman",
    "tokens",
]


def get(name: str, **kwargs) -> Quantizer:
    """Builds a registered quantizer by name or call string.

    ``get("ste_sign", clip_value=1.5)`` and ``get("ste_sign(clip_value=1.5)")`` are the same.

    Raises:
      ValueError: for an unknown name (the message lists the available ones) or bad arguments.
    """
    return REGISTRY.get(name, **kwargs)


def available() -> list[str]:
    """Sorted names of the registered quantizers."""
    return REGISTRY.available()


def resolve(q: Quantizer | str | None) -> Quantizer | None:
    """Accepts a quantizer, a registered name / call string, or None."""
    if q is None or isinstance(q, Quantizer):
        return q
    if isinstance(q, str):
        return get(q)
    raise TypeError(
        f"Expected a bnnlab.quant.Quantizer, a quantizer name or None, "
        f"got {type(q).__name__}: {q!r}."
    )
