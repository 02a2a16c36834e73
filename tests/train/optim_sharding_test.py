"""Learning-rate schedules against the papers' formulas, weight-decay groups, mesh building."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnlab import config_lib, models
from bnnlab.layers import inventory
from bnnlab.models import QuantSpec
from bnnlab.train import optim, sharding


def lr_at(config, epochs, steps_per_epoch=10, total_epochs=600):
    fn = optim.learning_rate_fn(config, steps_per_epoch, total_epochs * steps_per_epoch)
    return np.asarray([fn(int(e * steps_per_epoch)) for e in epochs])


def test_recu_warmup_cosine_matches_reference():
    c = config_lib.base()
    c.lr, c.warmup_epochs = 0.1, 5
    epochs = [0, 1, 4, 5, 100, 300, 599]
    # PyTorch reference: lr·(t+1)/5 for t < 5, then CosineAnnealingLR(T_max = T − 4) from t = 4.
    expected = [
        0.1 * (t + 1) / 5 if t < 5 else 0.05 * (1 + math.cos(math.pi * (t - 4) / 596))
        for t in epochs
    ]
    np.testing.assert_allclose(lr_at(c, epochs), expected, rtol=1e-5, atol=1e-9)
    # Epoch granularity: the lr is constant within an epoch.
    assert lr_at(c, [100.0, 100.9])[0] == lr_at(c, [100.0, 100.9])[1]


def test_adder_cosine_and_linear_and_piecewise():
    c = config_lib.base()
    c.lr, c.warmup_epochs = 0.1, 0
    np.testing.assert_allclose(
        lr_at(c, [0, 100, 399], total_epochs=400),
        [0.05 * (1 + math.cos(math.pi * t / 400)) for t in (0, 100, 399)],
        rtol=1e-5,
        atol=1e-8,
    )
    c.schedule, c.schedule_unit, c.lr = "linear", "step", 1e-3
    np.testing.assert_allclose(
        lr_at(c, [0, 64, 128], total_epochs=256), [1e-3, 7.5e-4, 5e-4], rtol=1e-5
    )
    c.schedule, c.schedule_unit = "piecewise", "epoch"
    c.lr_boundaries, c.lr_values = (40, 80), (5e-3, 1e-3, 5e-4)
    np.testing.assert_allclose(
        lr_at(c, [0, 39, 40, 79, 80, 199], total_epochs=200),
        [5e-3, 5e-3, 1e-3, 1e-3, 5e-4, 5e-4],
        rtol=1e-6,
    )


def test_released_epoch_offsets():
    """AdderNet's loop trains epochs e = 1 … 399 at 0.05·(1 + cos(πe/400)); ReActNet's and
    Bi-Real's LambdaLR(1 − e/T) is stepped before each epoch, so epoch t trains at lr(t + 1)."""
    c = config_lib.base()
    c.lr, c.warmup_epochs, c.lr_epoch_offset, c.lr_schedule_epochs = 0.1, 0, 1, 400
    released = [0.05 * (1 + math.cos(math.pi * e / 400)) for e in range(1, 400)]
    np.testing.assert_allclose(
        lr_at(c, range(399), total_epochs=399), released, rtol=1e-5, atol=1e-8
    )
    c = config_lib.base()
    config_lib.adam_linear(c, lr=2.5e-3)
    epochs = [0, 0.5, 1, 127]
    # LambdaLR: constructing it sets lr·(1 − 0/T); step() at each epoch's start moves it on.
    expected = [2.5e-3 * (1 - (int(t) + 1) / 128) for t in epochs]
    np.testing.assert_allclose(lr_at(c, epochs, total_epochs=128), expected, rtol=1e-5, atol=1e-9)
    assert lr_at(c, [127], total_epochs=128)[0] == 0.0


def test_weight_decay_groups():
    model = models.get(
        "resnet18_imagenet", quant=QuantSpec("siman", "siman_act", "mean_abs"), width=0.25
    )
    x = jnp.zeros((1, 32, 32, 3))
    params = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=True))["params"]
    layers = inventory.find(model, x, train=True)
    c = config_lib.base()
    c.weight_decay = 1e-4
    decay = optim.weight_decay_tree(params, c, layers)
    # SiMaN opts its binary layers out of decay; everything else gets the default.
    assert decay["stage1_unit1"]["conv"] == {"kernel": 0.0, "scale": 0.0}
    assert decay["stem"]["conv"]["kernel"] == 1e-4 and decay["head"]["fc"]["bias"] == 1e-4
    assert decay["stage2_unit1"]["shortcut"]["conv"]["kernel"] == 1e-4
    # ReCU's ImageNet rule: decay only parameters named conv/fc, never BN or the downsample.
    c.weight_decay_rules = ((".*shortcut.*", 0.0), (".*(conv|fc).*", 1e-4), (".*", 0.0))
    decay = optim.weight_decay_tree(params, c, layers)
    assert decay["stage1_unit1"]["conv"]["kernel"] == 1e-4
    assert decay["stage1_unit1"]["bn"]["scale"] == 0.0
    assert decay["stage2_unit1"]["shortcut"]["conv"]["kernel"] == 0.0
    assert decay["head"]["bn"]["scale"] == 0.0 and decay["head"]["fc"]["kernel"] == 1e-4


def test_optimizer_applies_coupled_decay_then_momentum():
    c = config_lib.base()
    c.lr, c.warmup_epochs, c.weight_decay, c.momentum = 0.1, 0, 0.5, 0.9
    params = {"a": {"kernel": jnp.ones(3)}}
    tx, _, _ = optim.create(c, params, {}, steps_per_epoch=1, total_steps=100)
    grads = {"a": {"kernel": jnp.full(3, 2.0)}}
    updates, _ = tx.update(grads, tx.init(params), params)
    # torch.optim.SGD: d = g + wd·w = 2.5, first momentum buffer = d, update = −lr·d.
    np.testing.assert_allclose(updates["a"]["kernel"], -0.1 * 2.5, rtol=1e-6)


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
