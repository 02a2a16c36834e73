"""The quantizer protocol, the encoded (export) form, and the quantizer registry.

A quantizer is a frozen dataclass (hashable, so it can be a Linen attribute or a static jit
argument) whose ``__call__`` is a pure JAX function with a custom pseudo-gradient. Conventions:

* Kernels use Flax layout (HWIO for conv, IO for dense): the **last axis is the output channel**,
  so "per filter" statistics reduce over every axis but the last.
* Activations have the batch on axis 0, so "per sample" statistics reduce over the other axes.
* Weight quantizers return the ±1 (or coded) tensor *before* any learnable per-channel scale;
  the layer owns that scale. Analytic scales (XNOR, Bi-Real) are part of the quantizer.
* Anything that changes during training (ReCU's τ, SiMaN's clip percentile, IR-Net's EDE
  temperature) is computed from ``progress`` ∈ [0, 1], the fraction of training done. It may be
  a traced scalar, so changing it never recompiles. ``progress=None`` means the end of the
  schedule (1.0).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from bnnlab import registry

REGISTRY = registry.Registry("quantizer")

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Encoded:
    """Integer codes plus the affine map back to the quantized values.

    ``decode() == codes * scale + offset`` reproduces the quantizer's forward output exactly
    (it is what an export stores). ``scale`` and ``offset`` broadcast against ``codes``, except
    that a group-wise scale (``group_size > 1``) holds one row per group of ``group_size``
    consecutive entries along the codes' axis −2 and is repeated along it.
    """

    codes: Array
    scale: Array
    offset: Array
    bits: int
    group_size: int = 1

    def full_scale(self) -> Array:
        """The scale broadcastable against ``codes`` (group-wise scales repeated)."""
        if self.group_size == 1:
            return self.scale
        return jnp.repeat(self.scale, self.group_size, axis=-2)

    def decode(self) -> Array:
        return self.codes.astype(jnp.float32) * self.full_scale() + self.offset


jax.tree_util.register_dataclass(
    Encoded, data_fields=["codes", "scale", "offset"], meta_fields=["bits", "group_size"]
)


def resolve_progress(progress: float | Array | None) -> Array:
    """Validates a training fraction; ``None`` means the end of the schedule."""
    if progress is None:
        return jnp.float32(1.0)
    if isinstance(progress, (int, float)) and not 0.0 <= progress <= 1.0:
        raise ValueError(f"progress must be in [0, 1] (fraction of training done), got {progress}.")
    # Traced values cannot be checked here; clipping keeps schedules inside their range.
    return jnp.clip(jnp.asarray(progress, jnp.float32), 0.0, 1.0)


def check_bits(name: str, k_bit: int, low: int = 1, high: int = 8) -> None:
    if not isinstance(k_bit, int) or isinstance(k_bit, bool) or not low <= k_bit <= high:
        raise ValueError(f"{name}: k_bit must be an integer in [{low}, {high}], got {k_bit!r}.")


def check_choice(name: str, field: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}: {field} must be one of {allowed}, got {value!r}.")


def check_positive(name: str, field: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name}: {field} must be > 0, got {value!r}.")


def require_kernel_rank(name: str, w: Array) -> None:
    if w.ndim < 2:
        raise ValueError(
            f"{name} works per filter and needs a kernel with an output-channel axis last "
            f"(ndim >= 2), got shape {w.shape}."
        )


def require_batched(name: str, x: Array) -> None:
    if x.ndim < 2:
        raise ValueError(
            f"{name} normalises per sample and needs a batch axis first (ndim >= 2), "
            f"got shape {x.shape}."
        )


@dataclasses.dataclass(frozen=True)
class Quantizer:
    """Base class. Subclasses implement ``__call__`` and ``encode``.

    Class attributes tell layers and training code what a quantizer needs:

    * ``learnable``: names of learnable arrays the layer must create (via ``init_learnable``)
      and pass as keyword arguments (e.g. LSQ's ``step``).
    * ``stateful``: the forward in eval mode reads a stored tensor (SiMaN's code B) that
      training recomputes; the layer keeps it in the ``quant_state`` collection.
    * ``mode_dependent``: the output or gradient differs between ``train=True`` and
      ``train=False``.
    * ``weight_decay``: whether the latent weights (and the layer's scale) should be decayed;
      SiMaN says no, and training code reads this flag to build its optax mask.
    """

    name: ClassVar[str] = ""
    learnable: ClassVar[tuple[str, ...]] = ()
    stateful: ClassVar[bool] = False
    mode_dependent: ClassVar[bool] = False
    weight_decay: ClassVar[bool] = True

    @property
    def precision(self) -> int:
        """Bit width of the quantized values (32 for a no-op)."""
        return 1

    def __call__(self, x: Array, *, progress=None, train: bool = True, **kwargs) -> Array:
        raise NotImplementedError

    def encode(self, x: Array, *, progress=None, train: bool = True, **kwargs) -> Encoded:
        raise NotImplementedError

    def schedule(self, progress=None) -> dict[str, Array]:
        """The values this quantizer's schedules take at ``progress`` (for logging)."""
        del progress  # Unused.
        return {}

    def statistics(self, w: Array, progress=None) -> dict[str, Array]:
        """Method-specific diagnostics of latent weights ``w`` (e.g. ReCU's dead fraction),
        logged beside the statistics every binary layer gets; none by default."""
        del w, progress  # Unused.
        return {}

    def project(self, w: Array, progress=None) -> Array:
        """Projection the training step applies to the latent weights (identity by default)."""
        del progress  # Unused.
        return w

    def init_learnable(self, x: Array) -> dict[str, Array]:
        """Initial values of the ``learnable`` arrays, given the tensor to be quantized."""
        del x  # Unused.
        return {}

    def init_state(self, x: Array) -> Array:
        """Initial stored state of a ``stateful`` quantizer."""
        raise NotImplementedError(f"{type(self).__name__} is not stateful.")

    def next_state(self, x: Array, *, progress=None) -> Array:
        """State a training step stores for later eval-mode calls."""
        raise NotImplementedError(f"{type(self).__name__} is not stateful.")


def register(name: str):
    """Class decorator: registers a quantizer class under ``name`` and sets ``cls.name``."""

    def decorator(cls):
        cls.name = name
        return REGISTRY.register(name)(cls)

    return decorator


def signs_encoded(b: Array, scale: Array | float = 1.0) -> Encoded:
    """Encodes a ±1 tensor (times an optional scale) as int8 codes."""
    return Encoded(
        codes=b.astype(jnp.int8),
        scale=jnp.asarray(scale, jnp.float32),
        offset=jnp.float32(0.0),
        bits=1,
    )
