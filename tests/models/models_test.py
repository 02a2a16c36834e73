"""The model registry (``bnnlab.models.get``): every registered model builds and gives logits,
and the errors for unknown names, choices and arguments."""

import jax
import jax.numpy as jnp
import pytest

from bnnlab import models
from bnnlab.models import QuantSpec

from param_count import count

SIMAN = QuantSpec("siman", "siman_act", "mean_abs")


@pytest.mark.parametrize("name", sorted(set(models.available()) - set(models.TRANSFORMERS)))
def test_every_model_builds_with_logits_shape(name):
    model = models.get(name, quant=SIMAN, width=0.125)
    x = jnp.zeros((2, 32, 32, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=True))
    y, _ = jax.eval_shape(
        lambda v: model.apply(
            v, x, train=True, progress=0.5, mutable=["batch_stats", "quant_state"]
        ),
        variables,
    )
    assert y.shape == (2, 10)


def test_errors():
    with pytest.raises(ValueError, match=r"Unknown model 'resnet19'\. Available: "):
        models.get("resnet19")
    with pytest.raises(ValueError, match="Unknown activation 'gelu'"):
        count(models.get("resnet20_cifar", act="gelu", width=0.25), 8)
    with pytest.raises(ValueError, match="Unknown shortcut 'conv'"):
        count(models.get("resnet18_cifar", shortcut="conv", width=0.25), 8)
    with pytest.raises(ValueError, match="Bad arguments for model 'vgg_small'"):
        models.get("vgg_small", depth=3)
    with pytest.raises(ValueError, match="Unknown quantizer"):
        QuantSpec("sign")
