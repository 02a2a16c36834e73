"""Device mesh and shardings: batch over the data axes, params replicated (or FSDP-sharded).

``jax.jit`` with these ``NamedSharding``s is what pjit became: the same code runs on one CPU,
8 fake CPU devices and an accelerator slice.
"""

from __future__ import annotations

import math

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

FSDP_MIN_SIZE = 2**14  # smaller arrays stay replicated: sharding them costs more than it saves


def make_mesh(axes, devices=None) -> Mesh:
    """A mesh from ``(("data", -1), ("fsdp", 2), ...)``; one -1 takes the remaining devices.

    Without -1, a mesh smaller than the machine uses its first devices (``(("data", 1),)`` is
    one device).
    """
    devices = np.asarray(jax.devices() if devices is None else devices)
    if -1 not in [size for _, size in axes]:
        devices = devices[: math.prod(size for _, size in axes)]
    names = [name for name, _ in axes]
    sizes = [size for _, size in axes]
    fixed = math.prod(s for s in sizes if s != -1)
    if sizes.count(-1) > 1:
        raise ValueError(f"At most one mesh axis may be -1, got {axes}.")
    if -1 in sizes:
        if devices.size % fixed:
            raise ValueError(f"Mesh {axes} does not divide {devices.size} devices.")
        sizes[sizes.index(-1)] = devices.size // fixed
    if math.prod(sizes) != devices.size:
        raise ValueError(f"Mesh {axes} needs {math.prod(sizes)} devices, have {devices.size}.")
    return Mesh(devices.reshape(sizes), names)


def batch_axes(mesh: Mesh) -> tuple[str, ...]:
    return tuple(a for a in mesh.axis_names if a in ("data", "fsdp"))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(batch_axes(mesh)))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def state_shardings(abstract_state, mesh: Mesh):
    """Replicated leaves, except that with an 'fsdp' axis each large array is split along its
    largest dimension divisible by the axis size (big_vision's fsdp strategy)."""
    fsdp = mesh.shape.get("fsdp", 1)

    def spec(leaf):
        shape = getattr(leaf, "shape", ())
        if fsdp > 1 and math.prod(shape) >= FSDP_MIN_SIZE:
            for dim in sorted(range(len(shape)), key=lambda d: -shape[d]):
                if shape[dim] % fsdp == 0:
                    parts = [None] * len(shape)
                    parts[dim] = "fsdp"
                    return NamedSharding(mesh, PartitionSpec(*parts))
        return replicated(mesh)

    return jax.tree.map(spec, abstract_state)


def global_batch(batch: dict, sharding: NamedSharding) -> dict:
    """Assembles each process's local NumPy batch into one global, sharded array per key."""
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}
