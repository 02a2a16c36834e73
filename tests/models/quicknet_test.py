"""QuickNet against larq zoo's published sizes, its blur pool against a float reference, and
its recipe's pieces: larq's CaseOptimizer (Adam on binary latent kernels, SGD elsewhere) and
WeightClip (latent kernels clipped to ±1.25)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnlab import models, quant
from bnnlab.layers import inventory
from bnnlab.models import QuantSpec, quicknet
from bnnlab.train import optim

import recipes

BINARY = QuantSpec(
    "ste_sign(clip_value=1.25, latent_clip=1.25)", "ste_sign(clip_value=1.25)", pad_value=1.0
)


def _count(name):
    m = models.get(name, num_classes=1000, quant=BINARY)
    v = jax.eval_shape(
        lambda x: m.init(jax.random.key(0), x), jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    )
    count = lambda tree: sum(int(np.prod(a.shape)) for a in jax.tree.leaves(tree))  # noqa: E731
    return count(v["params"]), count(v["batch_stats"]), v


@pytest.mark.parametrize(
    ("name", "keras_count", "blur_channels"),
    [
        ("quicknet_small", 12_664_344, 32 + 64 + 256),
        ("quicknet", 13_243_720, 64 + 128 + 256),
        ("quicknet_large", 23_359_304, 64 + 128 + 256),
    ],
)
def test_sizes_equal_larq_zoos_less_the_frozen_blur(name, keras_count, blur_channels):
    """Keras's count_params of larq zoo's models (its docs print larq's summary, which merges
    BatchNorm's scale with the moving variance: 12,655,688 / 13,234,088 / 23,342,248) holds
    every BN array and the frozen 3×3 blur kernels, which bnnlab keeps as constants."""
    params, stats, _ = _count(name)
    assert params + stats + 9 * blur_channels == keras_count
    if name == "quicknet":
        assert params == 13_230_024 and stats == 9_664


def test_forward_shapes_and_the_binary_layers():
    m = models.get("quicknet", num_classes=1000, quant=BINARY)
    x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
    assert jax.eval_shape(lambda x: m.init_with_output(jax.random.key(0), x)[0], x).shape == (
        2,
        1000,
    )
    layers = inventory.find(m, jnp.zeros((1, 224, 224, 3)))
    assert len(layers) == 16 and all(p.startswith("section") for p in layers)


def test_blur_pool_is_the_121_filter_at_stride_two():
    x = np.random.default_rng(0).normal(size=(1, 7, 7, 2)).astype(np.float32)
    k = np.outer([1, 2, 1], [1, 2, 1]) / 16
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])  # SAME for 7 at stride 2: (1, 1)
    want = np.zeros((1, 4, 4, 2), np.float32)
    for i in range(4):
        for j in range(4):
            window = padded[0, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
            want[0, i, j] = np.einsum("hwc,hw->c", window, k)
    np.testing.assert_allclose(np.asarray(quicknet.blur_pool(jnp.asarray(x))), want, atol=1e-6)


def test_stem_width_must_divide_by_four():
    m = models.get("quicknet", num_classes=10, quant=BINARY, width=0.1)  # stem 6
    with pytest.raises(ValueError, match="divisible by 4, got 6"):
        m.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)))


def test_latent_clip_projects_the_kernels():
    q = quant.get("ste_sign(clip_value=1.25, latent_clip=1.25)")
    w = jnp.asarray([-3.0, -1.25, 0.3, 2.0])
    np.testing.assert_array_equal(q.project(w), np.float32([-1.25, -1.25, 0.3, 1.25]))
    np.testing.assert_array_equal(quant.get("ste_sign").project(w), w)
    with pytest.raises(ValueError, match="latent_clip must be > 0, got -1"):
        quant.get("ste_sign(latent_clip=-1)")


def test_case_optimizer_adam_on_binary_kernels_sgd_elsewhere():
    c = recipes.config("quicknet", "runlocal")
    assert c.optimizer == "case" and c.binary_lr_scale == 0.1 and c.weight_decay == 0.0
    m = models.from_ref(
        dict(name=c.model_name, num_classes=10, quant=dict(c.quant), kwargs=c.model.to_dict())
    )
    x = jnp.zeros((1, 32, 32, 1))
    params = m.init(jax.random.key(0), x)["params"]
    layers = inventory.find(m, x)
    tx, _ = optim.create(c, params, layers, lambda step: 0.1)
    grads = jax.tree.map(lambda p: jnp.full_like(p, 2.0), params)
    updates, _ = tx.update(grads, tx.init(params), params)
    binary = updates["section0_block0_conv"]["kernel"]
    stem = updates["stem_conv"]["kernel"]
    # Adam's first step is −lr·sign(g) (bias-corrected m/√v = 1): −0.1 × 0.1; SGD: −0.1 × 2.
    np.testing.assert_allclose(binary, -0.01, rtol=1e-5)
    np.testing.assert_allclose(stem, -0.2, rtol=1e-6)
    with pytest.raises(ValueError, match="needs binary layers"):
        optim.binary_kernel_mask({"a": {"kernel": jnp.ones(2)}}, {})
