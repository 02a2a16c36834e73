"""LSQ: forward against the paper formula, and both gradients against the paper's closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnlab import quant


def test_levels():
    assert quant.get("lsq", k_bit=3).levels == (4, 3)
    assert quant.get("lsq", k_bit=3, mode="activations").levels == (0, 7)
    assert quant.get("lsq", k_bit=2, mode="activations", signed=True).levels == (2, 1)


def test_forward_and_step_init():
    x = np.array([-3.0, -1.2, -0.2, 0.0, 0.26, 0.74, 1.9, 5.0], np.float32)
    q = quant.get("lsq", k_bit=3)  # levels −4 … 3
    step = np.float32(0.5)
    expected = np.clip(np.round(x / step), -4, 3) * step
    np.testing.assert_array_equal(q(jnp.asarray(x), step=step), expected)
    init = q.init_learnable(jnp.asarray(x))["step"]
    np.testing.assert_allclose(init, 2 * np.abs(x).mean() / np.sqrt(3), rtol=1e-6)


@pytest.mark.parametrize("mode", ["weights", "activations"])
def test_gradients_closed_form(mode):
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1.5, size=(4, 10)).astype(np.float32)
    g = rng.normal(size=x.shape).astype(np.float32)
    q = quant.get("lsq", k_bit=2, mode=mode)
    q_n, q_p = q.levels
    s = np.float32(0.4)
    gx, gs = jax.grad(lambda v, st: jnp.sum(q(v, step=st) * g), argnums=(0, 1))(
        jnp.asarray(x), jnp.asarray(s)
    )
    r = x / s
    inside = (r > -q_n) & (r < q_p)
    np.testing.assert_allclose(gx, g * inside, rtol=1e-6)
    d_step = np.where(inside, np.round(r) - r, np.where(r <= -q_n, -q_n, q_p))
    n = x.size if mode == "weights" else x.size // x.shape[0]
    expected_gs = (g * d_step).sum() / np.sqrt(n * q_p)
    np.testing.assert_allclose(gs, expected_gs, rtol=1e-5)


def test_errors():
    with pytest.raises(ValueError, match=r"k_bit must be an integer in \[2, 8\]"):
        quant.get("lsq", k_bit=1)
    with pytest.raises(ValueError, match="needs its learnable step"):
        quant.get("lsq")(jnp.ones((2, 2)))
