"""Finding a model's quantized layers; SiMaN's projection and decay partition (docs/siman.md)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bnnlab import layers
from bnnlab.quant import siman


class Net(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True, progress=None):
        x = nn.Conv(8, (3, 3), name="stem")(x)
        x = layers.QuantConv(
            8,
            (3, 3),
            kernel_quantizer="siman",
            input_quantizer="siman_act",
            scale="mean_abs",
            name="binary_siman",
        )(x, train=train, progress=progress)
        x = nn.BatchNorm(use_running_average=not train)(x)
        x = layers.QuantConv(
            8, (3, 3), kernel_quantizer="recu", scale="uniform", name="binary_recu"
        )(x, train=train, progress=progress)
        return layers.QuantDense(3, name="head")(x.mean((1, 2)))


X = jnp.ones((2, 6, 6, 3))


def test_find():
    found = layers.inventory.find(Net(), X)
    assert sorted(found) == ["binary_recu", "binary_siman", "head"]
    assert found["binary_siman"].kernel_quantizer.name == "siman"
    assert found["binary_siman"].input_quantizer.name == "siman_act"
    assert found["head"].kernel_quantizer is None


def test_project_applies_simaN_clip_only():
    found = layers.inventory.find(Net(), X)
    params = Net().init(jax.random.key(0), X)["params"]
    projected = layers.inventory.project(params, found, progress=0.0)
    np.testing.assert_allclose(
        projected["binary_siman"]["kernel"],
        siman.clip_latent(params["binary_siman"]["kernel"], 15.0),
    )
    for name in ("stem", "binary_recu", "head"):
        np.testing.assert_array_equal(projected[name]["kernel"], params[name]["kernel"])
    with pytest.raises(KeyError, match="binary_siman/kernel not found"):
        layers.inventory.project({"stem": params["stem"]}, found)


def test_weight_decay_mask_excludes_simaN_layer():
    found = layers.inventory.find(Net(), X)
    params = Net().init(jax.random.key(0), X)["params"]
    mask = layers.inventory.weight_decay_mask(params, found)
    assert mask["binary_siman"] == {"kernel": False, "bias": False, "scale": False}
    assert mask["binary_recu"] == {"kernel": True, "bias": True, "scale": True}
    assert all(jax.tree.leaves(mask["stem"])) and all(jax.tree.leaves(mask["BatchNorm_0"]))
    # The optimizer picks it up: with zero gradients only decayed params move.
    tx = optax.chain(optax.add_decayed_weights(0.1, mask=mask), optax.sgd(1.0))
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zeros, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_array_equal(new["binary_siman"]["kernel"], params["binary_siman"]["kernel"])
    np.testing.assert_array_equal(new["binary_siman"]["scale"], params["binary_siman"]["scale"])
    np.testing.assert_allclose(
        new["binary_recu"]["kernel"], 0.9 * params["binary_recu"]["kernel"], rtol=1e-6
    )
