"""AdderNet layer: forward against a direct NumPy loop, both custom gradients against their
closed forms, the docs/addernet.md examples, and the adaptive gradient scaling."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bnnlab import layers, models
from bnnlab.layers import inventory
from bnnlab.models import QuantSpec
from bnnlab.train import optim

SPEC_X = np.arange(9.0, dtype=np.float32).reshape(1, 3, 3, 1)


def pads(padding, size, k, stride):
    if padding == "VALID":
        return 0, 0
    out = -(-size // stride)
    total = max((out - 1) * stride + k - size, 0)
    return total // 2, total - total // 2


def reference_forward(x, f, stride, padding):
    """Y[n, i, j, o] = −Σ |X_patch − F| with zero padding, by explicit loops."""
    n, h, w, _ = x.shape
    kh, kw, _, co = f.shape
    (pt, pb), (pl, pr) = pads(padding, h, kh, stride), pads(padding, w, kw, stride)
    xp = np.pad(x, [(0, 0), (pt, pb), (pl, pr), (0, 0)])
    ho, wo = (xp.shape[1] - kh) // stride + 1, (xp.shape[2] - kw) // stride + 1
    y = np.zeros((n, ho, wo, co), np.float64)
    for b in range(n):
        for i in range(ho):
            for j in range(wo):
                patch = xp[b, i * stride : i * stride + kh, j * stride : j * stride + kw]
                for o in range(co):
                    y[b, i, j, o] = -np.abs(patch - f[..., o]).sum()
    return y, xp, (pt, pl)


def reference_grads(x, f, g, stride, padding):
    """∂L/∂F = Σ g·(X − F) and ∂L/∂X = Σ g·clip(F − X, −1, 1), by explicit loops."""
    _, xp, (pt, pl) = reference_forward(x, f, stride, padding)
    kh, kw, _, _ = f.shape
    df, dxp = np.zeros_like(f, np.float64), np.zeros_like(xp, np.float64)
    for b, i, j, o in np.ndindex(*g.shape):
        window = (b, slice(i * stride, i * stride + kh), slice(j * stride, j * stride + kw))
        df[..., o] += g[b, i, j, o] * (xp[window] - f[..., o])
        dxp[window] += g[b, i, j, o] * np.clip(f[..., o] - xp[window], -1, 1)
    return dxp[:, pt : pt + x.shape[1], pl : pl + x.shape[2]], df


def layer_output(x, f, stride, padding):
    layer = layers.AdderConv(f.shape[-1], f.shape[:2], strides=stride, padding=padding)
    return layer.apply({"params": {"kernel": jnp.asarray(f)}}, jnp.asarray(x))


def test_spec_forward_examples():
    zero = layer_output(SPEC_X, np.zeros((3, 3, 1, 1), np.float32), 1, 1)
    np.testing.assert_array_equal(
        zero[0, ..., 0], [[-8, -15, -12], [-21, -36, -27], [-20, -33, -24]]
    )
    ones = layer_output(SPEC_X, np.ones((3, 3, 1, 1), np.float32), 1, 1)
    # Padded taps count |0 − 1| = 1: the corner is −11, not −6.
    np.testing.assert_array_equal(
        ones[0, ..., 0], [[-11, -14, -13], [-20, -29, -24], [-21, -30, -25]]
    )


@pytest.mark.parametrize("stride,padding", [(1, "SAME"), (1, "VALID"), (2, "SAME"), (2, "VALID")])
def test_forward_and_gradients_match_loops(stride, padding):
    rng = np.random.default_rng(stride)
    x = rng.normal(size=(2, 7, 6, 3)).astype(np.float32)
    f = rng.normal(size=(3, 3, 3, 4)).astype(np.float32)
    expected, _, _ = reference_forward(x, f, stride, padding)
    y = layer_output(x, f, stride, padding)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-4)
    g = rng.normal(size=y.shape).astype(np.float32)
    _, vjp = jax.vjp(
        lambda x, f: layer_output(x, f, stride, padding), jnp.asarray(x), jnp.asarray(f)
    )
    dx, df = vjp(jnp.asarray(g))
    ref_dx, ref_df = reference_grads(x, f, g, stride, padding)
    np.testing.assert_allclose(df, ref_df, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(dx, ref_dx, rtol=1e-5, atol=1e-4)


def test_spec_gradient_example_and_not_finite_differences():
    f = np.ones((3, 3, 1, 1), np.float32)
    g = np.zeros((1, 3, 3, 1), np.float32)
    g[0, 1, 1, 0] = 1.0  # upstream gradient at the centre output only
    _, vjp = jax.vjp(lambda x, f: layer_output(x, f, 1, 1), jnp.asarray(SPEC_X), jnp.asarray(f))
    dx, df = vjp(jnp.asarray(g))
    np.testing.assert_array_equal(df.ravel(), [-1, 0, 1, 2, 3, 4, 5, 6, 7])  # X − F
    np.testing.assert_allclose(np.linalg.norm(df), np.sqrt(141), rtol=1e-6)
    np.testing.assert_array_equal(dx.ravel(), [1, 0, -1, -1, -1, -1, -1, -1, -1])
    # The true derivative of −|X − F| w.r.t. F is sgn(X − F): the custom rule is not it.
    assert not np.allclose(df.ravel(), np.sign(SPEC_X.ravel() - 1.0))


def test_output_is_non_positive_and_zero_only_on_a_match():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(1, 4, 4, 2)).astype(np.float32)
    f = x[0, 1:4, 0:3].copy()[..., None]  # equal to the patch centred at (2, 1)
    y = np.asarray(layer_output(x, f, 1, "SAME"))
    assert (y <= 0).all() and y[0, 2, 1, 0] == 0 and np.count_nonzero(y == 0) == 1


def test_adaptive_gradient_scaling():
    tx = optim.scale_adder_gradients(0.2)
    rng = np.random.default_rng(4)
    grads = {
        "big": jnp.asarray(rng.normal(size=(3, 3, 64, 64))),
        "small": jnp.asarray(rng.normal(size=(3, 3, 16, 16))),
        "zero": jnp.zeros((3, 3, 4, 4)),
    }
    scaled, _ = tx.update(grads, tx.init(grads))
    np.testing.assert_allclose(jnp.linalg.norm(scaled["big"]), 38.4, rtol=1e-5)
    np.testing.assert_allclose(jnp.linalg.norm(scaled["small"]), 9.6, rtol=1e-5)
    np.testing.assert_array_equal(scaled["zero"], 0.0)
    # docs/addernet.md, "Checks": the 3×3 example's gradient rescaled with η = 0.2, k = 9.
    g = jnp.asarray([-1.0, 0, 1, 2, 3, 4, 5, 6, 7]).reshape(3, 3, 1, 1)
    expected = [-0.050529, 0, 0.050529, 0.101058, 0.151587, 0.202116, 0.252646, 0.303175, 0.353704]
    np.testing.assert_allclose(tx.update({"f": g}, None)[0]["f"].ravel(), expected, atol=1e-6)


def test_adder_resnet20_layers_init_and_optimizer_mask():
    model = models.get("resnet20", quant=QuantSpec(adder=True), width=0.5)
    x = jnp.zeros((2, 8, 8, 3))
    paths = inventory.adder_layers(model, x, train=True)
    assert len(paths) == 18 + 2  # 3×3 convs of 9 blocks, and two 1×1 downsamples
    assert "stem/conv" not in paths
    params = model.init(jax.random.key(0), x, train=True)["params"]
    kernel = np.asarray(params["stage3_block3"]["conv2"]["kernel"])
    assert abs(kernel.std() - 1.0) < 0.05 and "bias" not in params["stage3_block3"]["conv2"]
    mask = optim.adder_mask(params, paths)
    assert mask["stage1_block1"]["conv1"]["kernel"] and not mask["stem"]["conv"]["kernel"]
    tx = optax.masked(optim.scale_adder_gradients(0.2), mask)
    grads = jax.tree.map(jnp.ones_like, params)
    scaled, _ = tx.update(grads, tx.init(params))
    k = kernel.size
    np.testing.assert_allclose(
        jnp.linalg.norm(scaled["stage3_block3"]["conv2"]["kernel"]), 0.2 * np.sqrt(k), rtol=1e-5
    )
    np.testing.assert_array_equal(scaled["stem"]["conv"]["kernel"], 1.0)


def test_adder_summary_counts_additions():
    import bnnlab

    a = bnnlab.summary(
        models.get("resnet20", quant=QuantSpec(adder=True)), (32, 32, 3), print_fn=None
    )
    f = bnnlab.summary(models.get("resnet20"), (32, 32, 3), print_fn=None)
    assert a.total("macs") == f.total("macs") and a.total("params") == f.total("params")
    adder_macs = sum(r.macs for r in a.rows if r.kind == "AdderConv")
    assert a.total("adds") == 2 * adder_macs
    assert a.total("energy_pj") < f.total("energy_pj") / 2


def test_errors():
    with pytest.raises(ValueError, match="AdderConv is 2-D"):
        layers.AdderConv(4, (3,)).init(jax.random.key(0), jnp.zeros((1, 5, 3)))
    with pytest.raises(ValueError, match=r"adder=True .* takes no quantizers"):
        QuantSpec(kernel="ste_sign", adder=True)
    with pytest.raises(ValueError, match=r"Unknown kernel backend 'cuda'"):
        layers.AdderConv(2, (3, 3), backend="cuda").init(jax.random.key(0), jnp.zeros((1, 5, 5, 1)))
