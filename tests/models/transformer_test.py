"""The zoo's transformers quantized by rules: the parameter tree is the plain model's, and the
forward equals the plain model run with hand-quantized weights (and hand-quantized inputs)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

import bnnlab
from bnnlab import models, quant
from bnnlab.models import transformer

TOKENS = jnp.asarray(np.random.default_rng(0).integers(0, 256, size=(2, 16)), jnp.int32)


def lm(**kw):
    return transformer.ByteLM(width=32, depth=2, heads=4, max_len=16, **kw)


def shapes(tree):
    return jax.tree.map(lambda a: (a.shape, a.dtype), tree)


@pytest.mark.parametrize("kernel", ["ternary_absmean", "binary_absmean"])
def test_rules_keep_the_parameter_tree(kernel):
    model = lm()
    qmodel = bnnlab.quantize_model(model, transformer.bitnet_rules(kernel))
    plain = model.init(jax.random.key(0), TOKENS)
    quantized = qmodel.init(jax.random.key(0), TOKENS)
    assert shapes(plain) == shapes(quantized)
    chex_equal = jax.tree.map(np.array_equal, plain, quantized)
    assert all(jax.tree.leaves(chex_equal))
    layers = qmodel.quantized_layers(TOKENS)
    assert "head" not in layers and "block0/attn/query" in layers and "block1/down" in layers
    assert len(layers) == 2 * 6  # q, k, v, out, up, down per block


def canonical_quantized(params, q):
    """Every projection kernel of ``params`` replaced by ``q`` of its (K, N) matrix: query/key/
    value kernels are (D, H, Dh) (contract D), the output kernel (H, Dh, D) (contract H, Dh)."""
    flat = traverse_util.flatten_dict(params)
    for key, w in flat.items():
        if key[-1] != "kernel" or key[0] == "head":
            continue
        k = w.shape[0] if key[-2] != "out" else w.shape[0] * w.shape[1]
        flat[key] = q(w.reshape(k, -1)).reshape(w.shape)
    return traverse_util.unflatten_dict(flat)


@pytest.mark.parametrize(
    "q",
    [
        quant.TernaryAbsmean(),
        quant.TernaryAbsmean(granularity="channel"),
        quant.BinaryAbsmean(granularity="group", group_size=8),
    ],
)
def test_weight_only_rules_equal_the_model_with_quantized_weights(q):
    model = lm()
    qmodel = bnnlab.quantize_model(model, transformer.bitnet_rules(q, inputs=None, input_norm=None))
    variables = model.init(jax.random.key(1), TOKENS)
    want = model.apply({"params": canonical_quantized(variables["params"], q)}, TOKENS)
    np.testing.assert_allclose(qmodel.apply(variables, TOKENS), want, rtol=2e-5, atol=2e-5)


def rms(x):
    return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + 1e-6)


def test_bitlinear_on_a_dense_and_an_attention_projection():
    """y = q_a(rms(x)) · q_w(W) + b, by hand, for nn.Dense and for the out projection, whose
    tokens are (heads, head_dim) pairs: the per-token scale covers both axes."""

    class Two(nn.Module):
        @nn.compact
        def __call__(self, x):
            y = nn.Dense(12, name="dense")(x)
            z = nn.DenseGeneral(5, axis=(-2, -1), name="out")(y.reshape(*y.shape[:-1], 3, 4))
            return y, z

    x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 7, 6)) * 3, jnp.float32)
    wq, aq = quant.TernaryAbsmean(granularity="channel"), quant.TokenAbsmax()
    rules = [bnnlab.Rule(".*", kernel=wq, inputs=aq, input_norm="rms")]
    qmodel = bnnlab.quantize_model(Two(), rules)
    variables = qmodel.init(jax.random.key(0), x)
    p = variables["params"]
    y, z = qmodel.apply(variables, x)
    y_want = aq(rms(np.asarray(x))) @ wq(p["dense"]["kernel"]) + p["dense"]["bias"]
    np.testing.assert_allclose(y, y_want, rtol=1e-5, atol=1e-5)
    tokens = aq(rms(np.asarray(y_want)))  # (2, 7, 12): the 12 = 3 heads × 4 contracted together
    w_out = wq(p["out"]["kernel"].reshape(12, 5))
    np.testing.assert_allclose(z, tokens @ w_out + p["out"]["bias"], rtol=1e-4, atol=1e-4)


def test_einsum_projection_contracts_named_axes():
    class E(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Einsum((6, 2, 3), "btd,dhk->bthk", name="proj")(x)

    x = jnp.asarray(np.random.default_rng(3).normal(size=(2, 4, 6)), jnp.float32)
    wq, aq = quant.BinaryAbsmean(granularity="channel"), quant.TokenAbsmax(k_bit=4)
    qmodel = bnnlab.quantize_model(E(), [bnnlab.Rule("proj", kernel=wq, inputs=aq)])
    variables = qmodel.init(jax.random.key(0), x)
    p = variables["params"]["proj"]
    w = wq(p["kernel"].reshape(6, 6)).reshape(6, 2, 3)
    want = jnp.einsum("btd,dhk->bthk", aq(x), w) + p["bias"]
    np.testing.assert_allclose(qmodel.apply(variables, x), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="batch axes"):
        transformer_batched = nn.Einsum((2, 6, 3), "btd,bdk->btk", name="proj")
        bnnlab.quantize_model(transformer_batched, [bnnlab.Rule("", kernel=wq)]).init(
            jax.random.key(0), x
        )


def test_zoo_transformers_by_quant_spec():
    spec = models.QuantSpec(kernel="ternary_absmean", inputs="token_absmax", input_norm="rms")
    vit = models.get("vit_digits", num_classes=10, quant=spec)
    assert isinstance(vit, bnnlab.QuantizedModel)
    images = jnp.zeros((2, 8, 8, 1))
    layers = vit.quantized_layers(images)
    assert "embed" not in layers and "head" not in layers and len(layers) == 4 * 6
    assert models.get("vit_digits", num_classes=10).__class__ is transformer.ViT
    with pytest.raises(ValueError, match="quantized by rules"):
        models.get(
            "byte_lm", num_classes=256, quant=models.QuantSpec(kernel="recu", scale="uniform")
        )


def test_input_norm_is_refused_on_convolutions_and_checked():
    with pytest.raises(ValueError, match="input_norm must be one of"):
        bnnlab.Rule(".*", input_norm="batch")
    conv = nn.Conv(4, (3, 3))
    qmodel = bnnlab.quantize_model(conv, [bnnlab.Rule(".*", input_norm="rms")])
    with pytest.raises(ValueError, match="projections"):
        qmodel.init(jax.random.key(0), jnp.ones((1, 5, 5, 2)))
