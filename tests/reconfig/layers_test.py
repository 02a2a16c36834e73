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


def test_task_batch_norm_reads_and_updates_its_masked_rows():
    """Stored rows are r + A·u; the layer reads r and keeps the running statistics of r by
    PyTorch's rule (momentum 0.1), stored back masked; the variance in log₂."""
    c, m, a = 4, 0.9, layers.MASK_AMPLITUDE
    rng = np.random.default_rng(3)
    x = rng.normal(2.0, 3.0, size=(16, 3, 3, c)).astype(np.float32)
    u = {k: rng.uniform(-1, 1, c).astype(np.float32) for k in ("scale", "bias", "mean", "log_var")}
    gamma, beta = rng.uniform(0.5, 1.5, c), rng.normal(size=c)
    mean0, var0 = rng.normal(size=c), rng.uniform(0.5, 2.0, c)
    stored = lambda r, k: jnp.asarray(np.stack([np.zeros(c), r + a * u[k]]), jnp.float32)  # noqa: E731
    variables = {
        "params": {"scale": stored(gamma, "scale"), "bias": stored(beta, "bias")},
        "batch_stats": {"mean": stored(mean0, "mean"), "log_var": stored(np.log2(var0), "log_var")},
        "task": {"index": jnp.int32(1), **{f"{k}_mask": v for k, v in u.items()}},
    }
    bn = layers.TaskBatchNorm(num_tasks=2)
    y, new = bn.apply(variables, x, train=True, mutable=["batch_stats"])
    mu, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(y, (x - mu) / np.sqrt(var + 1e-5) * gamma + beta, atol=1e-4)
    stats = new["batch_stats"]
    np.testing.assert_allclose(
        stats["mean"][1] - a * u["mean"], m * mean0 + (1 - m) * mu, rtol=1e-5, atol=1e-5
    )
    np.testing.assert_allclose(
        2 ** (stats["log_var"][1] - a * u["log_var"]), m * var0 + (1 - m) * var, rtol=1e-5
    )
    np.testing.assert_array_equal(stats["mean"][0], 0.0)  # the other task's row is untouched
    y_eval = bn.apply(variables, x, train=False)
    np.testing.assert_allclose(
        y_eval, (x - mean0) / np.sqrt(var0 + 1e-5) * gamma + beta, rtol=1e-4, atol=1e-4
    )


def test_shared_rows_read_through_the_model_mask():
    x = jnp.asarray(np.random.default_rng(4).normal(size=(3, 5)), jnp.float32)
    u = np.random.default_rng(5).uniform(-1, 1, 5).astype(np.float32)
    a = layers.MASK_AMPLITUDE
    shift = np.float32([0.1, -0.2, 0.3, 0.0, 0.5])
    out = layers.KeyedRSign().apply(
        {"params": {"bias": shift + a * u}, "task": {"bias_shared_mask": u}}, x
    )
    np.testing.assert_array_equal(out, np.where(np.asarray(x) + shift >= 0, 1.0, -1.0))
    g, b, z = np.float32(0.2), np.float32(0.25), np.float32(-0.1)
    params = {
        k: np.full(5, v, np.float32) + a * u
        for k, v in zip(("gamma", "beta", "zeta"), (g, b, z), strict=True)
    }
    masks = {f"{k}_shared_mask": u for k in ("gamma", "beta", "zeta")}
    out = layers.KeyedRPReLU().apply({"params": params, "task": masks}, x)
    v = np.asarray(x) - g
    np.testing.assert_allclose(out, np.where(v >= 0, v, b * v) + z, rtol=1e-5, atol=1e-6)
