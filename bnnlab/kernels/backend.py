"""Backend selection for the kernels: ``"pallas"`` (compiled, GPU/TPU), ``"interpret"`` (the
same Pallas kernel run by JAX's interpreter: any device, how the CPU tests run it), ``"xla"``
(plain jnp, any device), ``"native"`` (the compiled CPU custom call of ``kernels.cpu``, XNOR
ops only) and ``"auto"``: Pallas on GPU/TPU; on CPU the native kernel where the op has one and
it was built, else XLA (with one warning saying why the native kernel is missing)."""

from __future__ import annotations

import functools
import warnings

import jax

from bnnlab.kernels import cpu

BACKENDS = ("auto", "pallas", "interpret", "xla", "native")


@functools.cache
def _warn_no_native(reason: str) -> None:
    warnings.warn(
        f"bnnlab: the native CPU XNOR kernel is unavailable ({reason}); using the slower XLA path.",
        RuntimeWarning,
        stacklevel=4,
    )


def resolve(backend: str, has_native: bool = False) -> str:
    """The concrete backend for ``backend`` on the default device; ``has_native``: the op
    has a native CPU kernel."""
    if backend not in BACKENDS:
        raise ValueError(f"Unknown kernel backend {backend!r}; use one of {BACKENDS}.")
    platform = jax.default_backend()
    if backend == "auto":
        if platform in ("gpu", "tpu"):
            return "pallas"
        if platform == "cpu" and has_native:
            if cpu.available():
                return "native"
            _warn_no_native(cpu.unavailable_reason())
        return "xla"
    if backend == "pallas" and platform == "cpu":
        raise ValueError(
            "Pallas kernels compile only for GPU/TPU; on CPU use backend='interpret' (the same "
            "kernel, interpreted), 'native' or 'xla'."
        )
    if backend == "native":
        if not has_native:
            raise ValueError("This op has no native kernel; use backend='xla' or 'auto'.")
        if platform != "cpu":
            raise ValueError(
                f"The native kernel runs on the CPU; the default device is {platform!r}."
            )
        if not cpu.available():
            raise RuntimeError(f"The native CPU kernel is unavailable: {cpu.unavailable_reason()}.")
    return backend


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())
