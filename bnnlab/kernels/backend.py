"""Backend selection for the kernels: ``"pallas"`` (compiled, GPU/TPU), ``"interpret"`` (the
same Pallas kernel run by JAX's interpreter: any device, how the CPU tests run it), ``"xla"``
(plain jnp, any device), ``"native"`` (the compiled CPU custom call of ``kernels.cpu``, XNOR
ops only) and ``"auto"``.

``"auto"``, ``"pallas"`` and ``"native"`` follow the platform the function is *lowered* for
(``kernels.platforms``), so one jitted function or ``jax.export`` carries the right kernel per
platform: "auto" is Pallas on GPU/TPU and, on CPU, the native kernel where the op has one and
it was built, else XLA (with one warning saying why the native kernel is missing). An explicit
"pallas" lowers for GPU/TPU from any host and raises a clear error when compiled for the CPU.

A call resolves its backend once (``plan``): checked, then decided for every platform it may be
lowered for. The lowering for a platform only takes that platform's choice (``Choice.take``),
raising there the error of a backend with no kernel on it, so tracing on any host succeeds.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable

from bnnlab.kernels import cpu, platforms

BACKENDS = ("auto", "pallas", "interpret", "xla", "native")
COMPILED_PALLAS = ("cuda", "rocm", "tpu")
OTHER = "other"  # a plan's entry for every platform ``platforms.PLATFORMS`` does not name


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


@dataclasses.dataclass(frozen=True)
class Choice:
    """What a call runs when lowered for one platform: the implementation ``kind``
    ("pallas", "interpret", "xla" or "native"), or the ``error`` (type, message) it raises
    there; ``warning``, a reason the native kernel is missing, is warned once per process."""

    kind: str | None = None
    error: tuple[type[Exception], str] | None = None
    warning: str | None = None

    def take(self) -> str:
        """``kind``, raising ``error`` or warning ``warning`` first: called where the choice is
        used (the lowering for its platform), so an unused one never raises."""
        if self.error is not None:
            kind, message = self.error
            raise kind(message)
        if self.warning is not None:
            _warn_no_native(self.warning)
        return self.kind


def _choose(backend: str, has_native: bool, platform: str) -> Choice:
    """The one decision: what an op that was asked for (checked) ``backend`` runs on
    ``platform``."""
    if backend in ("xla", "interpret"):
        return Choice(backend)
    if backend == "pallas":
        if platform == "cpu":
            return Choice(
                error=(
                    ValueError,
                    "Pallas kernels compile only for GPU/TPU; on CPU use backend='interpret' "
                    "(the same kernel, interpreted), 'native' or 'xla'. (Lowering for cuda/tpu "
                    "from a CPU host works: "
                    "jax.jit(f).trace(...).lower(lowering_platforms=('cuda',)).)",
                )
            )
        if platform not in COMPILED_PALLAS:
            named = f"s other than {platforms.PLATFORMS}" if platform == OTHER else f" {platform!r}"
            return Choice(
                error=(
                    ValueError,
                    f"No compiled Pallas kernel for platform{named}; use backend='xla' or 'auto'.",
                )
            )
        return Choice("pallas")
    if backend == "native":
        if platform != "cpu":
            return Choice(
                error=(
                    ValueError,
                    "The native kernel runs on the CPU; use backend='auto' on other platforms.",
                )
            )
        if not cpu.available():
            return Choice(
                error=(
                    RuntimeError,
                    f"The native CPU kernel is unavailable: {cpu.unavailable_reason()}.",
                )
            )
        return Choice("native")
    if platform in COMPILED_PALLAS:
        return Choice("pallas")
    if platform == "cpu" and has_native:
        if cpu.available():
            return Choice("native")
        return Choice("xla", warning=cpu.unavailable_reason())
    return Choice("xla")


@dataclasses.dataclass(frozen=True)
class Plan:
    """``backend`` resolved for one call: the ``Choice`` for each of ``platforms.PLATFORMS``
    and ``OTHER`` (any other platform)."""

    backend: str
    choices: dict[str, Choice]

    def on(self, platform: str) -> Choice:
        return self.choices.get(platform, self.choices[OTHER])

    @property
    def uniform(self) -> str | None:
        """The kind every platform runs, when one does with no error or warning ("xla" and
        "interpret"): then there is nothing to choose when lowering."""
        kinds = set(self.choices.values())
        if len(kinds) == 1 and (only := kinds.pop()).error is None and only.warning is None:
            return only.kind
        return None


def plan(backend: str, has_native: bool = False) -> Plan:
    """``backend`` checked and resolved for every platform, once per call of an op."""
    check(backend, has_native)
    names = (*platforms.PLATFORMS, OTHER)
    return Plan(backend, {p: _choose(backend, has_native, p) for p in names})


def resolve(backend: str, has_native: bool = False, platform: str | None = None) -> str:
    """The implementation ``backend`` selects for an op when lowered for ``platform`` (default:
    the host's): "pallas", "interpret", "xla" or "native"; raises where there is none."""
    check(backend, has_native)
    return _choose(backend, has_native, platform or platforms.host_platform()).take()


def run(backend: str, args: tuple, *, xla: Callable, pallas: Callable, native=None):
    """One op on ``args`` (a tuple of pytrees of arrays) by ``backend``.

    ``xla(*args)`` and ``native(*args)`` compute it; ``pallas(platform, *args)`` runs its Pallas
    kernel compiled for ``platform`` (one of ``COMPILED_PALLAS``) or, with "interpret", in
    JAX's interpreter. Every implementation must return the same pytree of the same avals.
    ``backend`` is resolved here, once (``plan``); the lowering for platform ``p`` runs the
    implementation of ``p``'s choice, traced only then.
    """
    chosen = plan(backend, has_native=native is not None)
    by_kind = {"xla": xla, "native": native, "interpret": functools.partial(pallas, "interpret")}
    if (kind := chosen.uniform) is not None:  # the same everywhere: no per-platform choice
        return by_kind[kind](*args)

    def on(platform: str):
        choice = chosen.on(platform)

        def call(*args):
            kind = choice.take()
            return pallas(platform, *args) if kind == "pallas" else by_kind[kind](*args)

        return call

    branches = {p: on(p) for p in platforms.PLATFORMS}
    return platforms.per_platform(args, branches, on(OTHER), like=xla)


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())
