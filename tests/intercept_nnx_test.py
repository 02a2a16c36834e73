"""quantize_model on a Flax NNX module: the same rules as for Linen give the same forward and
the same straight-through gradients, the parameter state keeps its structure, the original
module is untouched, eval() switches the quantizers' mode, and unmatched rules are errors."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import bnnlab


class NNXNet(nnx.Module):
    def __init__(self, rngs):
        self.stem = nnx.Conv(3, 8, (3, 3), rngs=rngs)
        self.body = nnx.Conv(8, 8, (3, 3), rngs=rngs)
        self.head = nnx.Linear(8, 10, rngs=rngs)

    def __call__(self, x):
        x = self.body(self.stem(x))
        return self.head(x.mean((1, 2)))


class LinenNet(nn.Module):
    @nn.compact
    def __call__(self, x):
        x = nn.Conv(8, (3, 3), name="stem")(x)
        x = nn.Conv(8, (3, 3), name="body")(x)
        return nn.Dense(10, name="head")(x.mean((1, 2)))


RULES = [
    bnnlab.Rule("body", kernel="ste_sign", inputs="ste_sign", pad_value=0.0),
    bnnlab.Rule("head", kernel="ste_sign"),
]
X = jnp.asarray(np.random.default_rng(0).normal(size=(2, 6, 6, 3)), jnp.float32)


def _linen_variables(model):
    """The NNX model's parameters as the Linen model's variables (the same arrays)."""
    state = nnx.state(model, nnx.Param)
    return {
        "params": {
            name: {"kernel": state[name]["kernel"][...], "bias": state[name]["bias"][...]}
            for name in ("stem", "body", "head")
        }
    }


def test_nnx_quantization_equals_the_linen_path_forward_and_backward():
    model = NNXNet(nnx.Rngs(0))
    quantized = bnnlab.quantize_model(model, RULES)
    linen = bnnlab.quantize_model(LinenNet(), RULES)
    variables = _linen_variables(model)
    np.testing.assert_allclose(quantized(X), linen.apply(variables, X), rtol=1e-6, atol=1e-6)
    assert not np.allclose(quantized(X), model(X))  # the original stays float

    def nnx_loss(m):
        return jnp.sum(m(X) ** 2)

    grads = nnx.grad(nnx_loss)(quantized)
    linen_grads = jax.grad(lambda v: jnp.sum(linen.apply(v, X) ** 2))(variables)
    for name in ("stem", "body", "head"):
        np.testing.assert_allclose(
            grads[name]["kernel"][...], linen_grads["params"][name]["kernel"], rtol=1e-5
        )
    # Same parameter state, structure and values: checkpoints of the float model carry over.
    before = jax.tree.map(np.asarray, nnx.state(model, nnx.Param))
    after = jax.tree.map(np.asarray, nnx.state(quantized, nnx.Param))
    assert jax.tree.structure(before) == jax.tree.structure(after)
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
        np.testing.assert_array_equal(a, b)


def test_eval_mode_reaches_the_quantizers_and_jit_works():
    quantized = bnnlab.quantize_model(NNXNet(nnx.Rngs(1)), RULES)
    assert quantized.body.deterministic is False
    quantized.eval()
    assert quantized.body.deterministic is True and quantized.stem.__class__ is nnx.Conv
    out = nnx.jit(lambda m, x: m(x))(quantized, X)
    np.testing.assert_allclose(out, quantized(X), rtol=1e-6)
    quantized.train()
    assert quantized.body.deterministic is False


def test_unmatched_rules_name_the_nnx_paths():
    with pytest.raises(ValueError, match=r"matched no module .* body \(Conv\), head \(Linear\)"):
        bnnlab.quantize_model(NNXNet(nnx.Rngs(0)), [bnnlab.Rule("Conv_1", kernel="ste_sign")])
    with pytest.raises(TypeError, match=r"linen\.Module or a flax\.nnx\.Module"):
        bnnlab.quantize_model(lambda x: x, RULES)
