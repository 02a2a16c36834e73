"""quantize_model on a ResNet-style Linen model defined only here (bnnlab has never seen it)."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import bnnlab
from bnnlab import layers, quant

import reference


class Block(nn.Module):
    features: int

    @nn.compact
    def __call__(self, x, train):
        y = nn.Conv(self.features, (3, 3), use_bias=False)(x)
        y = nn.relu(nn.BatchNorm(use_running_average=not train)(y))
        y = nn.Conv(self.features, (3, 3), use_bias=False)(y)
        y = nn.BatchNorm(use_running_average=not train)(y)
        return nn.relu(x + y)


class TinyResNet(nn.Module):
    @nn.compact
    def __call__(self, x, train: bool = True):
        x = nn.relu(nn.Conv(8, (3, 3), name="stem")(x))
        x = Block(8)(x, train)
        x = Block(8)(x, train)
        return nn.Dense(10, name="head")(x.mean((1, 2)))


RULES = [
    bnnlab.Rule("stem"),
    bnnlab.Rule("head"),
    bnnlab.Rule("Block_.*/Conv_.*", kernel="ste_sign", inputs="ste_sign"),
]
X = jnp.asarray(np.random.default_rng(0).normal(size=(8, 6, 6, 3)), jnp.float32)


def setup_module():
    global VARIABLES
    VARIABLES = TinyResNet().init(jax.random.key(0), X)


def conv(x, w):
    return lax.conv_general_dilated(
        x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


def batch_norm(x, p):
    mean, var = x.mean((0, 1, 2)), x.var((0, 1, 2))
    return (x - mean) / jnp.sqrt(var + 1e-5) * p["scale"] + p["bias"]


@jax.custom_vjp
def sign_ste(x):
    """sign with the clipped straight-through gradient 1{|x| ≤ 1}, written out independently."""
    return jnp.where(x >= 0, 1.0, -1.0)


sign_ste.defvjp(lambda x: (sign_ste(x), x), lambda x, g: (g * (jnp.abs(x) <= 1),))


def hand_built(params, binary_kernels):
    """The same network written as plain float JAX, with sign(·) inputs to the binary convs and
    the given (±1-valued) kernels in their place."""
    x = jax.nn.relu(conv(X, params["stem"]["kernel"]) + params["stem"]["bias"])
    for b in ("Block_0", "Block_1"):
        p = params[b]
        y = conv(sign_ste(x), binary_kernels[b]["Conv_0"])
        y = jax.nn.relu(batch_norm(y, p["BatchNorm_0"]))
        y = conv(sign_ste(y), binary_kernels[b]["Conv_1"])
        x = jax.nn.relu(x + batch_norm(y, p["BatchNorm_1"]))
    return x.mean((1, 2)) @ params["head"]["kernel"] + params["head"]["bias"]


def signed_kernels(params):
    return {
        b: {
            c: jnp.asarray(reference.sign(np.asarray(params[b][c]["kernel"])))
            for c in ("Conv_0", "Conv_1")
        }
        for b in ("Block_0", "Block_1")
    }


def qapply(variables, x=X, **kwargs):
    out, _ = bnnlab.quantize_model(TinyResNet(), RULES).apply(
        variables, x, mutable=["batch_stats"], **kwargs
    )
    return out


def test_same_variable_tree_and_values():
    qvars = bnnlab.quantize_model(TinyResNet(), RULES).init(jax.random.key(0), X)
    assert jax.tree.structure(qvars) == jax.tree.structure(VARIABLES)
    jax.tree.map(np.testing.assert_array_equal, qvars, VARIABLES)


def test_forward_equals_hand_built_float_model():
    params = VARIABLES["params"]
    expected = hand_built(params, signed_kernels(params))
    np.testing.assert_allclose(qapply(VARIABLES), expected, rtol=1e-5, atol=1e-5)
    float_out, _ = TinyResNet().apply(VARIABLES, X, mutable=["batch_stats"])
    assert not np.allclose(float_out, expected)


def test_gradients_match_ste_formula():
    params = VARIABLES["params"]
    batch_stats = VARIABLES["batch_stats"]
    got = jax.grad(lambda p: jnp.sum(qapply({"params": p, "batch_stats": batch_stats})))(params)
    # Gradient of the float model w.r.t. its ±1 kernels, masked by the STE window 1{|W| ≤ 1}.
    wrt_signed = jax.grad(lambda k: jnp.sum(hand_built(params, k)))(signed_kernels(params))
    for b in ("Block_0", "Block_1"):
        for c in ("Conv_0", "Conv_1"):
            w = np.asarray(params[b][c]["kernel"])
            # Tolerance: flax's BatchNorm computes the variance as E[x²] − E[x]², the reference
            # as E[(x − μ)²]; gradients are O(0.1).
            np.testing.assert_allclose(
                got[b][c]["kernel"], wrt_signed[b][c] * (np.abs(w) <= 1), rtol=1e-4, atol=3e-5
            )
    assert float(jnp.abs(got["stem"]["kernel"]).sum()) > 0  # flows back through the STE


def test_jit_and_progress_do_not_retrace():
    qmodel = bnnlab.quantize_model(
        TinyResNet(), [bnnlab.Rule("Block_.*/Conv_.*", kernel="recu")], on_unused="error"
    )
    traces = []

    @jax.jit
    def f(variables, progress):
        traces.append(1)
        return qmodel.apply(variables, X, progress=progress, mutable=["batch_stats"])[0]

    outs = [f(VARIABLES, jnp.float32(p)) for p in (0.0, 0.5, 1.0)]
    assert len(traces) == 1
    np.testing.assert_array_equal(outs[0], outs[2])  # ReCU's τ changes gradients only


def test_sharded_over_eight_devices():
    assert jax.device_count() == 8
    mesh = Mesh(np.array(jax.devices()), ("data",))
    batch = NamedSharding(mesh, PartitionSpec("data"))
    replicated = NamedSharding(mesh, PartitionSpec())
    x = jax.device_put(X, batch)
    variables = jax.device_put(VARIABLES, replicated)

    @jax.jit
    def loss_and_grad(variables, x):
        def loss(params):
            return jnp.mean(qapply({**variables, "params": params}, x) ** 2)

        return jax.value_and_grad(loss)(variables["params"])

    (loss, grads) = loss_and_grad(variables, x)
    assert x.sharding.spec == PartitionSpec("data")
    (loss1, grads1) = jax.jit(loss_and_grad.__wrapped__)(VARIABLES, X)
    np.testing.assert_allclose(loss, loss1, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), grads, grads1)


def test_unused_rule_is_an_error_listing_paths():
    qmodel = bnnlab.quantize_model(TinyResNet(), [bnnlab.Rule("conv.*", kernel="ste_sign")])
    with pytest.raises(
        ValueError,
        match=r"\['conv\.\*'\] matched no module.*Block_0/Conv_0 \(Conv\)",
    ):
        qmodel.init(jax.random.key(0), X)
    shadowed = [bnnlab.Rule(".*"), bnnlab.Rule("stem", kernel="ste_sign")]
    with pytest.warns(UserWarning, match=r"\['stem'\] matched no module"):
        bnnlab.quantize_model(TinyResNet(), shadowed, on_unused="warn").init(jax.random.key(0), X)


def test_rule_errors():
    with pytest.raises(ValueError, match="is not a regex"):
        bnnlab.Rule("Conv_(", kernel="ste_sign")
    with pytest.raises(ValueError, match="Unknown quantizer 'sgn'"):
        bnnlab.Rule(".*", kernel="sgn")
    with pytest.raises(ValueError, match=r"learnable arrays .*use bnnlab\.layers\.QuantConv"):
        bnnlab.Rule(".*", kernel="lsq")
    with pytest.raises(ValueError, match="on_unused must be one of"):
        bnnlab.quantize_model(TinyResNet(), RULES, on_unused="raise")


def test_plus_one_padding_rule():
    class OneConv(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Conv(8, (3, 3), name="stem")(x)

    rules = [bnnlab.Rule("stem", inputs="ste_sign", kernel="ste_sign", pad_value=1.0)]
    variables = OneConv().init(jax.random.key(1), X)
    out = bnnlab.quantize_model(OneConv(), rules).apply(variables, X)
    p = variables["params"]["stem"]
    padded = np.pad(
        reference.sign(np.asarray(X)), [(0, 0), (1, 1), (1, 1), (0, 0)], constant_values=1.0
    )
    expected = lax.conv_general_dilated(
        padded,
        reference.sign(np.asarray(p["kernel"])),
        (1, 1),
        "VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )
    np.testing.assert_allclose(out, expected + p["bias"], rtol=1e-6)


def test_inventory_of_a_quantized_model():
    found = layers.inventory.find(bnnlab.quantize_model(TinyResNet(), RULES), X)
    assert sorted(found) == ["Block_0/Conv_0", "Block_0/Conv_1", "Block_1/Conv_0", "Block_1/Conv_1"]
    assert found["Block_0/Conv_0"].path == ("Block_0", "Conv_0")


def test_nnx_module_can_call_quantizers():
    class BinaryLinear(nnx.Module):
        def __init__(self, rngs):
            self.w = nnx.Param(jax.random.normal(rngs.params(), (4, 3)))

        def __call__(self, x):
            return quant.get("ste_sign")(x) @ quant.get("ste_sign")(self.w[...])

    model = BinaryLinear(nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4)), jnp.float32)
    w = np.asarray(model.w[...])
    np.testing.assert_array_equal(model(x), reference.sign(np.asarray(x)) @ reference.sign(w))
    grads = nnx.grad(lambda m: jnp.sum(m(x)))(model)
    expected = reference.sign(np.asarray(x)).sum(0)[:, None] * (np.abs(w) <= 1)
    np.testing.assert_allclose(grads.w[...], expected, rtol=1e-6)
