"""Weight-decay groups and the optimizer's update against torch.optim.SGD's formula."""

import jax
import jax.numpy as jnp
import numpy as np

from bnnlab import config_lib, models
from bnnlab.layers import inventory
from bnnlab.models import QuantSpec
from bnnlab.train import optim, schedule


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
    tx, _ = optim.create(c, params, {}, schedule.learning_rate_fn(c, 1, 100))
    grads = {"a": {"kernel": jnp.full(3, 2.0)}}
    updates, _ = tx.update(grads, tx.init(params), params)
    # torch.optim.SGD: d = g + wd·w = 2.5, first momentum buffer = d, update = −lr·d.
    np.testing.assert_allclose(updates["a"]["kernel"], -0.1 * 2.5, rtol=1e-6)


def test_adamw_decays_decoupled_from_the_adam_step():
    c = config_lib.base()
    c.optimizer, c.lr, c.warmup_epochs, c.weight_decay = "adamw", 0.1, 0, 0.5
    c.b1, c.b2, c.schedule = 0.9, 0.95, "constant"
    params = {"a": {"kernel": jnp.full(3, 2.0)}}
    tx, _ = optim.create(c, params, {}, schedule.learning_rate_fn(c, 1, 100))
    grads = {"a": {"kernel": jnp.asarray([1.0, -3.0, 0.0])}}
    updates, _ = tx.update(grads, tx.init(params), params)
    # torch.optim.AdamW, first step: m̂ = g, v̂ = g², so adam = g / (|g| + ε); the decay
    # lr·λ·w is added outside Adam's normalisation (coupled L2 would be normalised away).
    adam = np.asarray([1.0, -3.0, 0.0]) / (np.abs([1.0, -3.0, 0.0]) + 1e-8)
    np.testing.assert_allclose(updates["a"]["kernel"], -0.1 * (adam + 0.5 * 2.0), atol=1e-6)
