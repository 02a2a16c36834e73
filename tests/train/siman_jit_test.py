"""SiMaN's code inside the jitted training step, at every ResNet-18 SiMaN layer shape.

The code is a rank decision per filter; under jit XLA fuses the standardisation into every pass
that reads |Ŵ|, and a value recomputed with a different rounding used to put the median element
on both sides of itself (n/2 + 1 ones in a few filters of a (3, 3, 64, 128) layer). Here the
real train step (projection, forward, backward, update) runs with XLA's full optimisations and
the stored code, the code the forward used, and a NumPy code of the same weights must agree.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import traverse_util
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from bnnlab import layers, quant
from bnnlab.layers import inventory
from bnnlab.quant import siman
from bnnlab.train import schedule, steps

import reference

# The binary 3×3 convs of the CIFAR ResNet-18 and of the Bi-Real ImageNet ResNet-18 have these
# (C_in → C_out); the CIFAR model's binary 1×1 shortcuts sit at the three width changes.
WIDTHS = (64, 64, 128, 128, 256, 256, 512, 512)


class ResNet18Shapes(nn.Module):
    """One SiMaN conv of every ResNet-18 shape, chained at 4×4 resolution."""

    kernel_quantizer: quant.Quantizer

    @nn.compact
    def __call__(self, x, train: bool = True, progress=None):
        kw = dict(
            kernel_quantizer=self.kernel_quantizer,
            input_quantizer="siman_act",
            scale="mean_abs",
            use_bias=False,
        )
        x = nn.Conv(WIDTHS[0], (3, 3), use_bias=False)(x)
        for c_out in WIDTHS[1:]:
            skip = x
            if c_out != x.shape[-1]:
                skip = layers.QuantConv(c_out, (1, 1), **kw)(x, train=train, progress=progress)
            x = layers.QuantConv(c_out, (3, 3), **kw)(x, train=train, progress=progress) + skip
        return nn.Dense(10)(x.mean(axis=(1, 2)))


def draw_variables(model, images, rng, scale):
    """Variables of ``model`` drawn with NumPy (no init to compile): every kernel N(0, σ²) with
    σ = ``scale``, or 1/√fan-in (the default init's scale) when None; SiMaN's α = mean|W|."""
    shapes = jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), images)
    flat = traverse_util.flatten_dict(shapes["params"])
    params = {}
    for key, leaf in flat.items():
        if key[-1] == "kernel":
            fan_in = int(np.prod(leaf.shape[:-1]))
            std = scale if scale is not None else fan_in**-0.5
            params[key] = rng.normal(0.0, std, leaf.shape).astype(np.float32)
        elif key[-1] == "bias":
            params[key] = np.zeros(leaf.shape, np.float32)
    for key in flat:
        if key[-1] == "scale":
            kernel = params[(*key[:-1], "kernel")]
            params[key] = np.abs(reference.per_filter(kernel)).mean(0)
    params = traverse_util.unflatten_dict(params)
    quant_state = jax.tree.map(
        lambda s: jnp.zeros(s.shape, s.dtype), shapes["quant_state"]
    )  # B before the first step is never read in training
    return jax.tree.map(jnp.asarray, params), quant_state


@pytest.mark.parametrize("ties", ["median", "exact_half"])
@pytest.mark.slow
def test_code_inside_jitted_train_step(ties, xla_optimizations):
    model = ResNet18Shapes(quant.get(f"siman(ties={ties!r})"))
    images = jnp.asarray(np.random.default_rng(0).normal(size=(8, 4, 4, 3)), jnp.float32)
    batch = {"image": images, "label": jnp.arange(8) % 10}
    found = inventory.find(model, images, train=True)
    assert len(found) == 10  # 7 shapes of 3×3 convs and 3 of 1×1 shortcuts
    # lr = 0: the stored weights are exactly the projected ones the step's forward used.
    tx = optax.sgd(0.0)
    step = jax.jit(
        functools.partial(
            steps.train_step,
            model=model,
            tx=tx,
            schedule=schedule.Schedule(1, 4, "epoch", lambda s: 0.0),
            layers=found,
        )
    )
    mesh = Mesh(np.array(jax.devices()[:8]), ("data",))
    sharded = jax.device_put(batch, NamedSharding(mesh, PartitionSpec("data")))
    rng = np.random.default_rng(1)
    for trial, (scale, at_step) in enumerate([(0.05, 0), (None, 2)]):
        params, quant_state = draw_variables(model, images, rng, scale)
        state = steps.TrainState(
            step=jnp.int32(at_step),  # p = 15 % at step 0, 7.5 % at step 2 of 4
            params=params,
            batch_stats={},
            quant_state=quant_state,
            opt_state=tx.init(params),
            tracking=empty_tracking(params, found),
        )
        new, _ = step(state, batch)
        # Sharded over 8 devices once (one more compile): the same code on every shard.
        new_sharded = step(state, sharded)[0] if trial == 0 and ties == "median" else new
        params = traverse_util.flatten_dict(new.params, sep="/")
        codes = traverse_util.flatten_dict(new.quant_state, sep="/")
        for path in found:
            stored = np.asarray(codes[f"{path}/kernel_state"])
            n = stored.size // stored.shape[-1]
            columns = reference.per_filter(stored)
            # The convolution used this very code, and the sharded step computed the same.
            np.testing.assert_array_equal(new.tracking[path]["positive"], stored > 0)
            np.testing.assert_array_equal(codes_of(new_sharded, path), stored)
            w_hat = reference.standardize(
                reference.per_filter(np.asarray(params[f"{path}/kernel"], np.float64)), 1e-5
            )
            # The float64 reference may order two magnitudes within float32 rounding of the
            # median differently; everywhere else the codes must be identical.
            magnitude = np.abs(w_hat)
            median = np.sort(magnitude, axis=0)[(n - 1) // 2]
            clear = np.abs(magnitude - median) > 1e-5 * median
            expected = reference.siman_code(w_hat, ties)
            np.testing.assert_array_equal(columns[clear], expected[clear], err_msg=path)
            assert (~clear).sum() <= 2 * columns.shape[1], path  # about the median itself
            ones = columns.sum(0)
            if ties == "exact_half":
                np.testing.assert_array_equal(ones, n // 2, err_msg=path)
            else:
                assert (ones <= n // 2).all(), path
                # Continuous weights tie at the median only by chance (float32 spacing).
                assert np.mean(ones == n // 2) > 0.95, path


def empty_tracking(params, found):
    """Flip-tracking state, so the step records the code its forward pass used."""
    flat = traverse_util.flatten_dict(params, sep="/")
    return {
        path: {
            "positive": jnp.zeros(flat[f"{path}/kernel"].shape, bool),
            "changed": jnp.zeros(flat[f"{path}/kernel"].shape, bool),
            "flips": jnp.zeros((), jnp.float32),
            "steps": jnp.zeros((), jnp.int32),
        }
        for path in found
    }


def codes_of(state, path):
    return np.asarray(
        traverse_util.flatten_dict(state.quant_state, sep="/")[f"{path}/kernel_state"]
    )


@pytest.mark.parametrize("ties", ["median", "exact_half"])
def test_repro_jit_equals_eager_count(ties, xla_optimizations):
    """The issue's repro: the code of N(0, 0.05) weights under jit has the rule's count (it
    used to give n/2 + 1 ones in some filters), and equals the eager code."""
    w = 0.05 * jax.random.normal(jax.random.key(0), (3, 3, 64, 128))

    def code(w):
        return siman.magnitude_code(siman.standardize_weights(w), ties)

    jitted, eager = np.asarray(jax.jit(code)(w)), np.asarray(code(w))
    w_hat = reference.standardize(reference.per_filter(np.asarray(w, np.float64)), 1e-5)
    np.testing.assert_array_equal(reference.per_filter(jitted), reference.siman_code(w_hat, ties))
    np.testing.assert_array_equal(jitted, eager)
