"""Backend selection for the kernels: ``"pallas"`` (compiled, GPU/TPU), ``"interpret"`` (the
same Pallas kernel run by JAX's interpreter: any device, how the CPU tests run it), ``"xla"``
(plain jnp, any device), ``"native"`` (the compiled CPU custom call of ``kernels.cpu``, XNOR
ops only) and ``"auto"``.

``"auto"``, ``"pallas"`` and ``"native"`` follow the platform the function is *lowered* for
(``kernels.platforms``), so one jitted function or ``jax.export`` carries the right kernel per
platform: "auto" is Pallas on GPU/TPU and, on CPU, the native kernel where the op has one and
it was built, else XLA (with one warning saying why the native kernel is missing). An explicit
"pallas" lowers for GPU/TPU from any host and raises a clear error when compiled for the CPU.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable

from bnnlab.kernels import cpu, platforms

BACKENDS = ("auto", "pallas", "interpret", "xla", "native")
COMPILED_PALLAS = ("cuda", "rocm", "tpu")


@functools.cache
def _warn_no_native(reason: str) -> None:
    warnings.warn(
        f"bnnlab: the native CPU XNOR kernel is unavailable ({reason}); using the slower XLA path.",
        RuntimeWarning,
        stacklevel=4,
    )


def check(backend: str, has_native: bool = False) -> str:
    """``backend`` if the op can be asked for it; raises a ValueError naming the choices."""
    if backend not in BACKENDS:
        raise ValueError(f"Unknown kernel backend {backend!r}; use one of {BACKENDS}.")
    if backend == "native" and not has_native:
        raise ValueError("This op has no native kernel; use backend='xla' or 'auto'.")
    return backend


def run(backend: str, args: tuple, *, xla: Callable, pallas: Callable, native=None):
    """One op on ``args`` (a tuple of pytrees of arrays) by ``backend``.

    ``xla(*args)`` and ``native(*args)`` compute it; ``pallas(platform, *args)`` runs its Pallas
    kernel compiled for ``platform`` (one of ``COMPILED_PALLAS``) or, with "interpret", in
    JAX's interpreter. Every implementation must return the same pytree of the same avals.
    Which one runs is ``resolve(backend, platform=p)`` for the platform ``p`` being lowered for.
    """
    check(backend, has_native=native is not None)

    def on(platform: str):
        def call(*args):
            kind = resolve(backend, has_native=native is not None, platform=platform)
            if kind in ("pallas", "interpret"):
                return pallas(platform if kind == "pallas" else "interpret", *args)
            return (native if kind == "native" else xla)(*args)

        return call

    if backend == "xla":  # the same everywhere: no per-platform choice
        return xla(*args)
    if backend == "interpret":
        return pallas("interpret", *args)
    branches = {p: on(p) for p in platforms.PLATFORMS}
    return platforms.per_platform(args, branches, on("other"), like=xla)


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def resolve(backend: str, has_native: bool = False, platform: str | None = None) -> str:
    """The implementation ``backend`` selects for an op when lowered for ``platform`` (default:
    the host's): "pallas", "interpret", "xla" or "native"; raises where there is none."""
    check(backend, has_native)
    if backend in ("xla", "interpret"):
        return backend
    platform = platform or platforms.host_platform()
    if backend == "pallas":
        if platform == "cpu":
            raise ValueError(
                "Pallas kernels compile only for GPU/TPU; on CPU use backend='interpret' (the "
                "same kernel, interpreted), 'native' or 'xla'. (Lowering for cuda/tpu from a CPU "
                "host works: jax.jit(f).trace(...).lower(lowering_platforms=('cuda',)).)"
            )
        if platform not in COMPILED_PALLAS:
            raise ValueError(
                f"No compiled Pallas kernel for platform {platform!r}; use backend='xla' or 'auto'."
            )
        return "pallas"
    if backend == "native":
        if platform != "cpu":
            raise ValueError(
                "The native kernel runs on the CPU; use backend='auto' on other platforms."
            )
        if not cpu.available():
            raise RuntimeError(f"The native CPU kernel is unavailable: {cpu.unavailable_reason()}.")
        return "native"
    if platform in COMPILED_PALLAS:
        return "pallas"
    if platform == "cpu" and has_native:
        if cpu.available():
            return "native"
        _warn_no_native(cpu.unavailable_reason())
    return "xla"
