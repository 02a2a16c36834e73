"""Backend selection for the kernels: ``"pallas"`` (compiled, GPU/TPU), ``"interpret"``
(the same Pallas kernel run by JAX's interpreter: any device, how the CPU tests run it),
``"xla"`` (plain jnp, any device) and ``"auto"`` (Pallas where it compiles, else XLA)."""

from __future__ import annotations

import jax

BACKENDS = ("auto", "pallas", "interpret", "xla")


def resolve(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"Unknown kernel backend {backend!r}; use one of {BACKENDS}.")
    if backend == "auto":
        return "pallas" if jax.default_backend() in ("gpu", "tpu") else "xla"
    if backend == "pallas" and jax.default_backend() == "cpu":
        raise ValueError(
            "Pallas kernels compile only for GPU/TPU; on CPU use backend='interpret' (the same "
            "kernel, interpreted) or 'xla'."
        )
    return backend


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def next_power_of_2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())
