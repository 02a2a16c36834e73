"""Keyed layers: the gradient reaches the shared latent vector through the permutation, and
logits past a task's class count are masked."""

import jax
import jax.numpy as jnp
import numpy as np

from bnnlab.reconfig import layers


def test_gradient_reaches_latent_through_the_permutation():
    layer = layers.KeyedConv(5, (3, 3), 1, "SAME")
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 6, 6, 3)), jnp.float32)
    v = layer.init(jax.random.key(0), x)
    perm = jnp.asarray(np.random.default_rng(2).permutation(135), jnp.int32)
    theta = v["params"]["latent"]
    w = theta[perm].reshape(3, 3, 3, 5)

    def via_layer(theta):
        return jnp.sum(layer.apply({"params": {"latent": theta}, "task": {"perm": perm}}, x) ** 2)

    def via_weight(w):
        y = jax.lax.conv_general_dilated(
            x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return jnp.sum(y**2)

    d_theta, d_w = jax.grad(via_layer)(theta), jax.grad(via_weight)(w)
    # ∂L/∂θ is ∂L/∂W scattered back through π.
    np.testing.assert_allclose(d_theta[perm], d_w.ravel(), rtol=1e-5)


def test_mask_logits_keeps_the_first_class_count_outputs():
    logits = jnp.asarray([[0.5, -2.0, 3.0, 1.0]])
    np.testing.assert_array_equal(
        layers.mask_logits(logits, jnp.int32(2)), [[0.5, -2.0, -1e9, -1e9]]
    )
