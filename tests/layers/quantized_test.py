"""QuantConv / QuantDense: exact nn.Conv/nn.Dense parity, binary forward against a float
convolution of ±1 tensors, padding values, scales, stored state and learnable quantizer arrays."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from bnnlab import layers, quant

import reference

X = jnp.asarray(np.random.default_rng(0).normal(size=(2, 7, 7, 4)), jnp.float32)
RNG = jax.random.key(0)


def float_conv(x, w, strides=(1, 1), padding="SAME"):
    return lax.conv_general_dilated(
        x, w, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(strides=2),
        dict(padding="VALID"),
        dict(padding=((0, 1), (2, 1)), kernel_dilation=2),
        dict(padding=1, input_dilation=2),
        dict(feature_group_count=2, use_bias=False),
        dict(dtype=jnp.bfloat16),
    ],
)
@pytest.mark.parametrize("quantizer", [None, "identity"])
def test_conv_equals_nn_conv(kwargs, quantizer):
    ref = nn.Conv(6, (3, 3), **kwargs)
    mine = layers.QuantConv(
        6, (3, 3), kernel_quantizer=quantizer, input_quantizer=quantizer, **kwargs
    )
    variables = ref.init(RNG, X)
    assert jax.tree.structure(mine.init(RNG, X)) == jax.tree.structure(variables)
    np.testing.assert_array_equal(mine.apply(variables, X), ref.apply(variables, X))


def test_conv_1d_and_extra_batch_dims_match_nn_conv():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 3, 9, 5)), jnp.float32)
    ref, mine = nn.Conv(4, (3,)), layers.QuantConv(4, (3,))
    v = ref.init(RNG, x)
    np.testing.assert_array_equal(mine.apply(v, x), ref.apply(v, x))


@pytest.mark.parametrize("quantizer", [None, "identity"])
def test_dense_equals_nn_dense(quantizer):
    x = X.reshape(2, -1)
    ref = nn.Dense(5)
    mine = layers.QuantDense(5, kernel_quantizer=quantizer, input_quantizer=quantizer)
    v = ref.init(RNG, x)
    assert jax.tree.structure(mine.init(RNG, x)) == jax.tree.structure(v)
    np.testing.assert_array_equal(mine.apply(v, x), ref.apply(v, x))


@pytest.mark.parametrize("strides,padding", [(1, "SAME"), (2, "SAME"), (1, "VALID")])
def test_binary_conv_equals_float_conv_of_signs(strides, padding):
    layer = layers.QuantConv(
        5,
        (3, 3),
        strides=strides,
        padding=padding,
        kernel_quantizer="ste_sign",
        input_quantizer="ste_sign",
        scale="uniform",
    )
    v = layer.init(RNG, X)
    p = v["params"]
    xb, wb = reference.sign(np.asarray(X)), reference.sign(np.asarray(p["kernel"]))
    expected = float_conv(xb, wb, (strides,) * 2, padding) * p["scale"] + p["bias"]
    np.testing.assert_allclose(layer.apply(v, X), expected, rtol=1e-6)


def test_plus_one_padding():
    layer = layers.QuantConv(
        3,
        (3, 3),
        use_bias=False,
        kernel_quantizer="ste_sign",
        input_quantizer="ste_sign",
        pad_value=1.0,
    )
    v = layer.init(RNG, X)
    xb = reference.sign(np.asarray(X))
    wb = reference.sign(np.asarray(v["params"]["kernel"]))
    padded = np.pad(xb, [(0, 0), (1, 1), (1, 1), (0, 0)], constant_values=1.0)
    expected = float_conv(padded, wb, padding="VALID")
    got = layer.apply(v, X)
    np.testing.assert_array_equal(got, expected)
    zero_padded = layers.QuantConv(
        3, (3, 3), use_bias=False, kernel_quantizer="ste_sign", input_quantizer="ste_sign"
    ).apply(v, X)
    # Interior outputs agree, border outputs differ.
    np.testing.assert_array_equal(got[:, 1:-1, 1:-1], zero_padded[:, 1:-1, 1:-1])
    assert not np.array_equal(got[:, 0], zero_padded[:, 0])


def test_scale_initialisers():
    v = layers.QuantConv(8, (3, 3), kernel_quantizer="recu", scale="uniform").init(RNG, X)
    s = np.asarray(v["params"]["scale"])
    assert s.shape == (8,) and (s >= 0).all() and (s < 1).all() and len(np.unique(s)) == 8
    v = layers.QuantConv(8, (3, 3), kernel_quantizer="siman", scale="mean_abs").init(
        RNG, X, train=True
    )
    expected = np.abs(reference.per_filter(np.asarray(v["params"]["kernel"]))).mean(0)
    np.testing.assert_allclose(v["params"]["scale"], expected, rtol=1e-6)


def test_recu_layer_output_independent_of_tau():
    layer = layers.QuantConv(
        4, (3, 3), kernel_quantizer="recu", input_quantizer="recu_act", scale="uniform"
    )
    v = layer.init(RNG, X, train=True)
    outs = [layer.apply(v, X, train=True, progress=p) for p in (0.0, 0.5, 1.0)]
    outs.append(layer.apply(v, X, train=False))
    for o in outs[1:]:
        np.testing.assert_array_equal(o, outs[0])


def test_simaN_eval_freezing():
    layer = layers.QuantConv(
        4, (3, 3), kernel_quantizer="siman", input_quantizer="siman_act", scale="mean_abs"
    )
    v = layer.init(RNG, X, train=True)
    _, updates = layer.apply(v, X, train=True, mutable=["quant_state"])
    v = {**v, **updates}
    np.testing.assert_array_equal(
        v["quant_state"]["kernel_state"],
        quant.get("siman").next_state(v["params"]["kernel"]),
    )
    before = layer.apply(v, X, train=False)
    noise = np.random.default_rng(2).normal(size=v["params"]["kernel"].shape)
    perturbed = {**v, "params": {**v["params"], "kernel": v["params"]["kernel"] + noise}}
    np.testing.assert_array_equal(layer.apply(perturbed, X, train=False), before)
    assert not np.array_equal(layer.apply(perturbed, X, train=True), before)
    rescaled = {**v, "params": {**v["params"], "scale": v["params"]["scale"] * 2}}
    np.testing.assert_allclose(
        layer.apply(rescaled, X, train=False),
        2 * before - v["params"]["bias"],
        rtol=1e-5,
        atol=1e-5,
    )


def test_learnable_quantizer_arrays_are_params():
    layer = layers.QuantDense(
        3, kernel_quantizer="lsq(k_bit=3)", input_quantizer="lsq(k_bit=4, mode='activations')"
    )
    x = jnp.abs(X.reshape(2, -1))
    v = layer.init(RNG, x)
    p = v["params"]
    np.testing.assert_allclose(
        p["kernel_step"], 2 * np.abs(p["kernel"]).mean() / np.sqrt(3), rtol=1e-6
    )
    np.testing.assert_allclose(p["input_step"], 2 * np.abs(x).mean() / np.sqrt(15), rtol=1e-6)
    grads = jax.grad(lambda p: jnp.sum(layer.apply({"params": p}, x) ** 2))(p)
    assert float(jnp.abs(grads["kernel_step"])) > 0 and float(jnp.abs(grads["input_step"])) > 0


def test_gradient_reaches_latent_weights_with_ste():
    layer = layers.QuantDense(3, use_bias=False, kernel_quantizer="ste_sign")
    x = X.reshape(2, -1)
    v = layer.init(RNG, x)
    w = np.asarray(v["params"]["kernel"])
    g = jax.grad(lambda p: jnp.sum(layer.apply({"params": p}, x)))(v["params"])["kernel"]
    # ∂/∂W_b of Σ x·W_b is Σ_batch x (per input), times the STE window 1{|W| ≤ 1}.
    expected = np.asarray(x).sum(0)[:, None] * (np.abs(w) <= 1)
    np.testing.assert_allclose(g, expected, rtol=1e-5)


def test_errors():
    with pytest.raises(ValueError, match=r"pad_value must be 0 .* or 1 .*got -1"):
        layers.QuantConv(2, (3, 3), pad_value=-1.0).init(RNG, X)
    with pytest.raises(ValueError, match=r"\['siman'\] behave differently .* pass train="):
        layers.QuantConv(2, (3, 3), kernel_quantizer="siman").init(RNG, X)
    with pytest.raises(ValueError, match="Unknown scale 'mean'"):
        layers.QuantConv(2, (3, 3), scale="mean").init(RNG, X)
    with pytest.raises(ValueError, match="Unknown quantizer 'sign'"):
        layers.QuantConv(2, (3, 3), kernel_quantizer="sign").init(RNG, X)
    with pytest.raises(ValueError, match="padding 'CIRCULAR' is not supported"):
        layers.QuantConv(2, (3, 3), padding="CIRCULAR", pad_value=1.0).init(RNG, X)
