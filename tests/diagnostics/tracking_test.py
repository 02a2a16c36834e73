"""Per-layer tracking: the layer statistics (ReCU's dead fraction on Laplace weights), flip
counts and never-flipped weights over a window, and the captured inputs' sign balance."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from bnnlab import layers, models, quant
from bnnlab.diagnostics import tracking
from bnnlab.models import QuantSpec

import reference


def test_recu_dead_fraction_on_laplace_weights():
    model = models.get("resnet_tiny", quant=QuantSpec("recu(tau=0.85)", "recu_act"))
    x = jnp.zeros((2, 8, 8, 3))
    found = layers.inventory.find(model, x, train=True)
    params = model.init(jax.random.key(0), x, train=True)["params"]
    rng = np.random.default_rng(4)
    params = jax.tree.map(lambda p: jnp.asarray(reference.laplace(rng, p.shape, 0.05)), params)
    params["stage1_unit1"]["conv"]["kernel"] = jnp.asarray(
        reference.laplace(rng, (3, 3, 64, 64), 0.05)
    )
    out = tracking.layer_statistics(params, found, progress=None)
    assert abs(float(out["stage1_unit1/conv/dead_recu"]) - 2 * (1 - 0.85)) < 0.01


def test_tracking_counts_flips_and_never_flipped_weights():
    layer = layers.inventory.QuantizedLayer(("conv",), quant.get("ste_sign"), None)
    params = {"conv": {"kernel": jnp.asarray([[1.0, -1.0], [2.0, -2.0]])}}
    state = tracking.init_tracking(params, {"conv": layer})
    codes1 = jnp.asarray([[False, False], [True, False]])  # first weight flips
    codes2 = jnp.asarray([[True, False], [True, False]])  # and flips back
    state = tracking.update_tracking(state, {"conv": codes1})
    state = tracking.update_tracking(state, {"conv": codes2})
    out = tracking.layer_statistics(params, {"conv": layer}, tracking=state)
    np.testing.assert_allclose(out["conv/flip_ratio"], (1 / 4 + 1 / 4) / 2)
    np.testing.assert_allclose(out["conv/dead_empirical"], 3 / 4)
    reset = tracking.reset_window(state)
    out = tracking.layer_statistics(params, {"conv": layer}, tracking=reset)
    assert math.isnan(float(out["conv/dead_empirical"]))
    np.testing.assert_array_equal(reset["conv"]["positive"], codes2)


def test_activation_capture():
    layer = layers.QuantConv(4, (3, 3), kernel_quantizer="ste_sign", input_quantizer="ste_sign")
    x = jnp.asarray(np.random.default_rng(5).normal(0.5, 1.0, size=(2, 6, 6, 3)), jnp.float32)
    v = layer.init(jax.random.key(0), x)
    _, captured = layer.apply(v, x, mutable=["intermediates"])
    balance = tracking.activation_balance(captured["intermediates"])
    np.testing.assert_allclose(balance["mean/act_positive"], np.mean(np.asarray(x) >= 0), rtol=1e-6)
