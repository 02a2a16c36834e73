"""Mixed precision (``config.compute_dtype="bfloat16"``): bf16 convolutions, float32 everything
that is state or a decision."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnlab import config_lib, layers, models
from bnnlab.layers import quantized, sown
from bnnlab.models import blocks
from bnnlab.train import experiment

import recipes

# Operand and result element types of every stablehlo.convolution in a lowered module.
CONV = re.compile(r"stablehlo\.convolution\(.*?\)\s.*?:\s*\((.*?)\)\s*->\s*(tensor<[^>]*>)")


def conv_types(text: str) -> list[tuple[set[str], str]]:
    """(operand element types, result element type) of every convolution."""
    element = r"tensor<(?:\d+x)*(\w+)>"
    return [
        (set(re.findall(element, operands)), re.findall(element, result)[0])
        for operands, result in CONV.findall(text)
    ]


@pytest.fixture(scope="module")
def bf16_step():
    config = recipes.config("smoke", compute_dtype="bfloat16", diagnostics_every_steps=0)
    exp = experiment.build(config)
    state = exp.init_state()
    batch = exp.device_batch(exp.tasks[0].loader.batch(0))
    return exp, state, batch


def test_jitted_step_convolves_in_bfloat16(bf16_step):
    exp, state, batch = bf16_step
    types = conv_types(exp.train_step.lower(state, batch, None, None).as_text())
    # resnet_tiny: the stem and two binary convs forward; kernel gradients of all three and
    # input gradients of the binary two backward.
    assert len(types) == 8
    # Every conv, forward and backward, takes bf16 operands; the two binary forward convs
    # hand float32 accumulators to the BatchNorm (the float stem returns bf16, as nn.Conv),
    # and their backward convs run on the cotangent rounded to bf16.
    assert all(ops == {"bf16"} for ops, _ in types), types
    assert sorted(out for _, out in types) == ["bf16"] * 6 + ["f32"] * 2, types
    f32 = experiment.build(recipes.config("smoke", diagnostics_every_steps=0))
    f32_state = f32.init_state()
    f32_types = conv_types(f32.train_step.lower(f32_state, batch, None, None).as_text())
    assert len(f32_types) == len(types)
    assert all(ops == {"f32"} and out == "f32" for ops, out in f32_types)


def test_state_stays_float32(bf16_step):
    exp, state, batch = bf16_step
    new_state, metrics = exp.train_step(
        jax.tree.map(jnp.copy, state), batch, None, exp.teacher_variables
    )
    for name in ("params", "batch_stats", "opt_state"):
        leaves = jax.tree.leaves(getattr(new_state, name))
        assert leaves and {str(a.dtype) for a in leaves} <= {"float32", "int32"}, name
    assert {str(a.dtype) for a in jax.tree.leaves(new_state.quant_state)} == {"float32"}
    assert metrics["loss"].dtype == jnp.float32 and np.isfinite(float(metrics["loss"]))
    logits = exp.model.apply(state.variables(), batch["image"], train=False)
    assert logits.dtype == jnp.float32


def binary_net(dtype, quantizer):
    return models.get(
        "resnet_tiny",
        num_classes=10,
        quant=blocks.QuantSpec(kernel=quantizer, inputs="ste_sign", scale="mean_abs"),
        dtype=dtype,
    )


@pytest.mark.parametrize("quantizer", ["siman", "recu"])
def test_quantizer_decisions_are_the_float32_ones(quantizer):
    """Weights drawn so that bf16 rounding ties many magnitudes: a quantizer fed bf16 values
    would rank, standardise and round them differently."""
    x = jax.random.normal(jax.random.key(1), (8, 8, 8, 1))
    f32, bf16 = binary_net(None, quantizer), binary_net(jnp.bfloat16, quantizer)
    variables = f32.init(jax.random.key(0), x, train=True)
    outs = {}
    for name, model in (("f32", f32), ("bf16", bf16)):
        _, updates = model.apply(
            variables,
            x,
            train=True,
            progress=0.5,
            mutable=["batch_stats", "quant_state", sown.TRACKING],
        )
        outs[name] = {k: updates[k] for k in ("quant_state", sown.TRACKING) if k in updates}
    assert jax.tree.leaves(outs["f32"][sown.TRACKING])  # the binary codes were captured
    jax.tree.map(np.testing.assert_array_equal, outs["f32"], outs["bf16"])


def test_accumulator_gradients_run_in_the_operand_dtype():
    """``accumulate``: float32 result, and the gradients of the bf16 op applied to the
    cotangent rounded to bf16 (what autocast computes)."""
    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.normal(size=(4, 8)), jnp.bfloat16)
    b = jnp.asarray(rng.normal(size=(8, 3)), jnp.bfloat16)
    g = jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)
    y, vjp = jax.vjp(lambda x, w: quantized.accumulate(jnp.matmul, x, w, jnp.float32), a, b)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(y, np.asarray(a, np.float32) @ np.asarray(b, np.float32), rtol=1e-6)
    _, ref_vjp = jax.vjp(jnp.matmul, a, b)
    for got, want in zip(vjp(g), ref_vjp(g.astype(jnp.bfloat16)), strict=True):
        assert got.dtype == jnp.bfloat16
        np.testing.assert_array_equal(got, want)


def test_quantized_conv_computes_on_the_bfloat16_rounded_codes():
    """QuantConv(dtype=bf16) = conv of the float32 quantizer outputs rounded to bf16, returned
    as the float32 accumulator: ±1 inputs times bf16(α·±1) summed without rounding."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 6, 8)).astype(np.float32)
    layer = layers.QuantConv(
        16,
        (3, 3),
        use_bias=False,
        kernel_quantizer="xnor_sign",
        input_quantizer="ste_sign",
        dtype=jnp.bfloat16,
    )
    variables = layer.init(jax.random.key(0), x)
    y = layer.apply(variables, x)
    assert y.dtype == jnp.float32  # the accumulator; the BatchNorm after it casts
    w = np.asarray(variables["params"]["kernel"])
    alpha = np.abs(w).mean(axis=(0, 1, 2))
    w_q = (np.where(w >= 0, 1.0, -1.0) * alpha).astype(jnp.bfloat16).astype(np.float32)
    x_q = np.where(x >= 0, 1.0, -1.0).astype(np.float32)
    want = jax.lax.conv_general_dilated(
        x_q,
        w_q,
        (1, 1),
        "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision="highest",
    )
    np.testing.assert_allclose(y, want, rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("value", ["float16", "bf16", "fp32"])
def test_bad_compute_dtype_is_a_config_error(value):
    config = config_lib.base()
    config.compute_dtype = value
    with pytest.raises(ValueError, match=f"compute_dtype = '{value}'.*float32.*bfloat16"):
        config_lib.validate(config)
