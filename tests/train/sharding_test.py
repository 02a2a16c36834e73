"""Mesh building and the shardings of state and batch."""

import jax
import jax.numpy as jnp
import pytest

from bnnlab.train import sharding


def test_make_mesh():
    mesh = sharding.make_mesh((("data", -1),))
    assert dict(mesh.shape) == {"data": 8}
    mesh = sharding.make_mesh((("data", -1), ("fsdp", 2)))
    assert dict(mesh.shape) == {"data": 4, "fsdp": 2}
    assert sharding.make_mesh((("data", 3), ("fsdp", 2))).devices.size == 6  # the first six
    with pytest.raises(ValueError, match="needs 16 devices, have 8"):
        sharding.make_mesh((("data", 8), ("fsdp", 2)))
    with pytest.raises(ValueError, match="At most one mesh axis may be -1"):
        sharding.make_mesh((("data", -1), ("fsdp", -1)))


def test_fsdp_shards_large_arrays_only():
    mesh = sharding.make_mesh((("data", -1), ("fsdp", 2)))
    tree = {
        "big": jax.ShapeDtypeStruct((3, 3, 64, 128), jnp.float32),
        "small": jax.ShapeDtypeStruct((128,), jnp.float32),
    }
    shardings = sharding.state_shardings(tree, mesh)
    assert shardings["big"].spec == jax.sharding.PartitionSpec(None, None, None, "fsdp")
    assert shardings["small"].spec == jax.sharding.PartitionSpec()
    assert sharding.batch_sharding(mesh).spec == jax.sharding.PartitionSpec(("data", "fsdp"))
