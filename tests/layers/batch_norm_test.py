"""bnnlab's BatchNorm against NumPy: PyTorch's running-statistics update (unbiased variance),
Flax's (biased), the training-mode normalisation, and the two-pass variance's accuracy."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnlab import models
from bnnlab.layers import BatchNorm
from bnnlab.models import QuantSpec

import reference


def run_steps(module, batches):
    variables = module.init(jax.random.key(0), batches[0])
    outputs = []
    for x in batches:
        y, updates = module.apply(variables, x, mutable=["batch_stats"])
        variables = {**variables, **updates}
        outputs.append(np.asarray(y))
    return variables, outputs


def test_unbiased_running_variance_is_pytorchs_update():
    rng = np.random.default_rng(0)
    batches = [rng.normal(2.0, 3.0, (4, 3, 3, 5)).astype(np.float32) for _ in range(3)]
    module = BatchNorm(use_running_average=False, momentum=0.9, running_var="unbiased")
    variables, _ = run_steps(module, batches)
    mean, var = np.zeros(5), np.ones(5)
    for x in batches:  # torch.nn.BatchNorm2d(momentum=0.1) on the same batches
        mean, var = reference.torch_batch_norm_update(mean, var, x, momentum=0.1)
    np.testing.assert_allclose(variables["batch_stats"]["mean"], mean, rtol=1e-5)
    np.testing.assert_allclose(variables["batch_stats"]["var"], var, rtol=1e-5)


def test_biased_running_variance_is_flaxs_update():
    rng = np.random.default_rng(1)
    batches = [rng.normal(-1.0, 0.5, (6, 7)).astype(np.float32) for _ in range(2)]
    ours, _ = run_steps(BatchNorm(use_running_average=False, momentum=0.9), batches)
    flax_bn = nn.BatchNorm(use_running_average=False, momentum=0.9, use_fast_variance=False)
    theirs, _ = run_steps(flax_bn, batches)
    for name in ("mean", "var"):
        np.testing.assert_allclose(
            ours["batch_stats"][name], theirs["batch_stats"][name], rtol=1e-6
        )
    var = 1.0
    for x in batches:
        var = 0.9 * var + 0.1 * x.astype(np.float64).var(0)  # ddof = 0
    np.testing.assert_allclose(ours["batch_stats"]["var"], var, rtol=1e-5)


def test_training_normalises_with_the_biased_batch_variance():
    """Both PyTorch and Flax normalise with the biased batch variance; only the stored
    running variance differs between the rules."""
    rng = np.random.default_rng(2)
    x = rng.normal(1.0, 2.0, (3, 4, 4, 2)).astype(np.float32)
    module = BatchNorm(use_running_average=False, momentum=0.9, running_var="unbiased")
    variables = module.init(jax.random.key(0), x)
    scale, bias = np.array([0.5, 2.0]), np.array([1.0, -1.0])
    variables = {**variables, "params": {"scale": jnp.asarray(scale), "bias": jnp.asarray(bias)}}
    y, _ = module.apply(variables, x, mutable=["batch_stats"])
    flat = x.astype(np.float64).reshape(-1, 2)
    expected = (x - flat.mean(0)) / np.sqrt(flat.var(0) + 1e-5) * scale + bias
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    # Evaluation uses the stored statistics.
    stats = {"mean": jnp.asarray([0.5, -0.5]), "var": jnp.asarray([4.0, 0.25])}
    evaluated = BatchNorm(use_running_average=True).apply({**variables, "batch_stats": stats}, x)
    expected = (x - [0.5, -0.5]) / np.sqrt(np.array([4.0, 0.25]) + 1e-5) * scale + bias
    np.testing.assert_allclose(evaluated, expected, rtol=1e-5, atol=1e-5)


def test_variance_is_accurate_when_the_mean_dominates():
    """AdderNet outputs have |mean|/std of 20–60: E[x²] − E[x]² loses (mean/std)² × ε of
    relative accuracy there, the two-pass variance none."""
    rng = np.random.default_rng(3)
    x = rng.normal(-60 * 7.0, 7.0, (64, 16, 16, 4))
    module = BatchNorm(use_running_average=False, momentum=0.0)
    variables = module.init(jax.random.key(0), x.astype(np.float32))
    _, updates = module.apply(variables, x.astype(np.float32), mutable=["batch_stats"])
    expected = x.astype(np.float32).astype(np.float64).reshape(-1, 4).var(0)
    error = np.abs(updates["batch_stats"]["var"] - expected) / expected
    assert error.max() < 1e-5, error


def test_is_a_flax_batch_norm_with_its_names():
    module = BatchNorm(use_running_average=False)
    variables = module.init(jax.random.key(0), jnp.ones((2, 3)))
    assert isinstance(module, nn.BatchNorm)
    assert set(variables["params"]) == {"scale", "bias"}
    assert set(variables["batch_stats"]) == {"mean", "var"}


def test_errors():
    with pytest.raises(ValueError, match="running_var must be one of"):
        BatchNorm(running_var="sample").init(jax.random.key(0), jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="axis_name"):
        BatchNorm(use_running_average=False, axis_name="batch").init(
            jax.random.key(0), jnp.ones((2, 3))
        )
    with pytest.raises(ValueError, match="running_var must be one of"):
        models.get("resnet_tiny", bn_running_var="Bessel").init(
            jax.random.key(0), jnp.zeros((1, 8, 8, 1))
        )


@pytest.mark.parametrize("name", ["resnet18_cifar", "resnet20", "vgg_small"])
def test_models_pass_the_rule_to_every_batch_norm(name):
    spec = QuantSpec(adder=True) if name == "resnet20" else QuantSpec()
    model = models.get(name, quant=spec, width=0.25, bn_running_var="unbiased")
    seen = []

    def record(next_fun, args, kwargs, context):
        if isinstance(context.module, nn.BatchNorm):
            seen.append(context.module)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((2, 32, 32, 3))))
    assert len(seen) > 5
    assert all(isinstance(m, BatchNorm) and m.running_var == "unbiased" for m in seen)
