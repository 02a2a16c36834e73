"""Per-backend options of the XNOR ops, one small frozen dataclass per backend that has any.

  PallasOptions  the Pallas kernel (compiled on GPU/TPU, or ``backend="interpret"``): tile
                 sizes, the inner product ("popcount" or the tensor-core "dot") and the popcount
  NativeOptions  the native CPU kernel (``kernels.cpu``): its instruction set, and for
                 ``xnor_matmul`` the weights laid out ahead of time (``cpu.panels``)

The XLA path has no options. An op reads only the options of the implementation it runs on a
platform, so the same call can carry both. Each value is checked where it is written: a bad
one raises a ValueError naming it and the allowed values, on every backend.
"""

from __future__ import annotations

import dataclasses
import numbers

import jax

from bnnlab.kernels import cpu

ALGORITHMS = ("auto", "popcount", "dot")
POPCOUNTS = ("native", "swar")


def _one_of(name: str, value, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"Unknown {name} {value!r}; use one of {allowed}.")


def _positive_int(name: str, value) -> None:
    # bool is an int to Python; a block of True rows is a typo, not a size.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")


@dataclasses.dataclass(frozen=True)
class PallasOptions:
    """The Pallas XNOR matmul's options (hashable: a static argument of the jitted ops).

    ``block_m`` × ``block_n``: the output tile of one program (rows × output channels; the
    kernel may shrink ``block_m`` for a GEMV on GPU or raise it to the dot's 16-row minimum).
    ``algorithm``: the inner product, one of ``ALGORITHMS`` ("auto": ``xnor.choose_algorithm``).
    ``popcount``: "native" (the popcount instruction) or "swar" (shifts and masks, for a
    backend without one); read by the "popcount" algorithm only.
    """

    block_m: int = 32
    block_n: int = 128
    algorithm: str = "auto"
    popcount: str = "native"

    def __post_init__(self):
        _positive_int("PallasOptions.block_m", self.block_m)
        _positive_int("PallasOptions.block_n", self.block_n)
        _one_of("XNOR algorithm", self.algorithm, ALGORITHMS)
        _one_of("popcount", self.popcount, POPCOUNTS)


@dataclasses.dataclass(frozen=True)
class NativeOptions:
    """The native CPU kernel's options: a pytree (``b_panels`` is an array, ``isa`` static).

    ``isa``: the instruction set, one of ``cpu.ISAS`` ("auto": the best this CPU runs; whether
    a forced one runs on this CPU is checked when the kernel runs). ``b_panels``: for
    ``xnor_matmul``, ``cpu.panels(b.words)`` laid out ahead of time, which saves the vector
    paths doing it per call; a convolution's panels travel in its ``PackedKernel`` instead.
    """

    isa: str = "auto"
    b_panels: jax.Array | None = None

    def __post_init__(self):
        # Only the static field: unflattening runs this too, with b_panels any placeholder.
        _one_of("instruction set", self.isa, cpu.ISAS)


jax.tree_util.register_dataclass(NativeOptions, data_fields=["b_panels"], meta_fields=["isa"])

# The ops' defaults: today's behaviour. Module constants, as a call in a signature would be
# evaluated once anyway while reading as if per call (ruff's B008).
DEFAULT_PALLAS = PallasOptions()
DEFAULT_NATIVE = NativeOptions()


def check(pallas, native) -> None:
    """Raises a TypeError unless ``pallas`` and ``native`` are the options classes (a dict or a
    string there would otherwise fail much later, inside a lowering)."""
    for name, value, cls in (("pallas", pallas, PallasOptions), ("native", native, NativeOptions)):
        if not isinstance(value, cls):
            raise TypeError(f"{name}= takes a {cls.__name__}, got {value!r}.")
