"""Every recipe, with each of its arguments, loads, validates and builds its model abstractly;
the recipes state the papers' settings."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import pytest

from bnnlab import config_lib, data, runs
from bnnlab.layers import inventory

EXPERIMENTS = sorted((pathlib.Path(__file__).parents[1] / "experiments").glob("*.py"))


def load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CASES = [(p, arg) for p in EXPERIMENTS for arg in load(p).VARIANTS]


def test_every_recipe_has_runlocal_and_a_runbook_docstring():
    assert {p.stem for p in EXPERIMENTS} >= {
        "simaN_r18",
        "recu_r18",
        "float_r18",
        "xnor_r18",
        "bireal_r18",
        "reactnet_r18",
        "smoke",
    }
    for path in EXPERIMENTS:
        module = load(path)
        assert any("runlocal" in v for v in module.VARIANTS), path
        doc = module.__doc__
        assert "python -m bnnlab.main --config=experiments/" in doc, path
        assert "Expected" in doc or path.stem == "smoke", path


@pytest.mark.parametrize("path,arg", CASES, ids=[f"{p.stem}:{a}" for p, a in CASES])
def test_recipe_loads_and_builds(path, arg):
    config = load(path).get_config(arg or None)
    config_lib.validate(config)
    meta = data.info(config.dataset)
    if "runlocal" in arg:
        assert config.dataset in ("digits", "pydoc")  # the embedded data: no download
    if config.trainer == "reconfig":
        model = runs.build_model(config)
        x = jnp.zeros((2, *runs.input_shape(config)))
        variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=True))
        assert set(variables) == {"params", "batch_stats", "task"}
        return
    model = runs.build_model(config, meta.num_classes)
    x = jnp.zeros((2, *runs.input_shape(config)), jnp.float32)
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=True))
    assert variables["params"]
    binary = [
        p
        for p, layer in inventory.find(model, x, train=True).items()
        if layer.kernel_quantizer is not None
    ]
    assert bool(binary) == (config.quant.kernel is not None)


def test_paper_settings():
    simaN = load(EXPERIMENTS[[p.stem for p in EXPERIMENTS].index("simaN_r18")])
    c = simaN.get_config()
    assert (c.num_epochs, c.batch_size, c.lr, c.warmup_epochs, c.weight_decay, c.seed) == (
        400,
        256,
        0.1,
        5,
        5e-4,
        123,
    )
    assert c.model.shortcut == "block_conv" and c.quant.kernel == "siman"
    c = simaN.get_config("imagenet")
    assert (c.num_epochs, c.batch_size, c.warmup_epochs, c.weight_decay) == (150, 512, 0, 1e-4)
    recu = load(EXPERIMENTS[[p.stem for p in EXPERIMENTS].index("recu_r18")])
    c = recu.get_config()
    assert (c.num_epochs, c.batch_size, c.weight_decay) == (600, 256, 5e-4)
    assert c.quant.kernel.startswith("recu(tau_min=0.85, tau_max=0.99")
    assert recu.get_config("imagenet").model.bn_gamma_init == 1e-8


def recipe(stem):
    return load(EXPERIMENTS[[p.stem for p in EXPERIMENTS].index(stem)])


@pytest.mark.parametrize(
    "stem", ["simaN_r18", "recu_r18", "adder_r20", "reactnet_r18", "bireal_r18", "xnor_r18"]
)
def test_recipes_use_pytorchs_batch_norm(stem):
    """The released code of every recipe is PyTorch: BatchNorm stores the unbiased variance."""
    for arg in (None, "runlocal"):
        assert recipe(stem).get_config(arg).model.bn_running_var == "unbiased", (stem, arg)


def test_released_training_loops():
    """Settings of the released training steps (see docs/recipes.md)."""
    adder = recipe("adder_r20").get_config()
    # Epochs t = 1 … 399 at 0.05·(1 + cos(πt/400)); the released script's CIFAR std.
    assert (adder.num_epochs, adder.lr_epoch_offset, adder.lr_schedule_epochs) == (399, 1, 400)
    assert adder.warmup_epochs == 0 and adder.normalization == "cifar_legacy"
    local = recipe("adder_r20").get_config("runlocal")
    assert local.lr_schedule_epochs == local.num_epochs + 1
    for stem in ("reactnet_r18", "bireal_r18"):
        c = recipe(stem).get_config()  # LambdaLR stepped at the start of each epoch
        assert (c.schedule, c.schedule_unit, c.lr_epoch_offset) == ("linear", "epoch", 1)
    simaN = recipe("simaN_r18")
    assert simaN.get_config().weight_decay_rules == ((r".*/shortcut/conv/(kernel|scale)", 5e-4),)
    assert simaN.get_config("paper_decay").weight_decay_rules == ()
    assert simaN.get_config().quant.kernel == "siman"  # the median tie rule by default
    assert simaN.get_config("exact_half").quant.kernel == "siman(ties='exact_half')"
