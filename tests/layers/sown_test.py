"""The names layers sow under: what the training step and the diagnostics read."""

import jax
import jax.numpy as jnp
import numpy as np

from bnnlab import layers
from bnnlab.diagnostics import tracking
from bnnlab.layers import sown


def test_binary_layers_sow_their_codes_and_input_balance():
    conv = layers.QuantConv(4, (1, 1), kernel_quantizer="ste_sign", input_quantizer="ste_sign")
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 3, 5)), jnp.float32)
    variables = conv.init(jax.random.key(0), x)
    _, sown_values = conv.apply(
        {"params": variables["params"]}, x, mutable=[sown.TRACKING, sown.INTERMEDIATES]
    )
    (codes,) = sown_values[sown.TRACKING][sown.KERNEL_CODES]
    np.testing.assert_array_equal(codes, variables["params"]["kernel"] > 0)
    (balance,) = sown_values[sown.INTERMEDIATES][sown.INPUT_BALANCE]
    np.testing.assert_allclose(balance, np.mean(np.asarray(x) >= 0), rtol=1e-6)
    # What the diagnostics read back from those names (a layer applied at the root: path "").
    np.testing.assert_array_equal(tracking.forward_codes(sown_values[sown.TRACKING])[""], codes)
    assert set(tracking.activation_balance(sown_values[sown.INTERMEDIATES])) == {
        "/act_positive",
        "mean/act_positive",
    }


def test_rsign_sows_its_output_balance():
    x = jnp.asarray([[-1.0, 0.5, 2.0, -3.0]])
    variables = layers.RSign().init(jax.random.key(0), x)
    _, sown_values = layers.RSign().apply(variables, x, mutable=[sown.INTERMEDIATES])
    (balance,) = sown_values[sown.INTERMEDIATES][sown.INPUT_BALANCE]
    assert float(balance) == 0.5  # signs of x + 0: two of four positive
