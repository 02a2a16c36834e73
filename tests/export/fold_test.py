"""Folding scales and BatchNorm into packed convs: logits equal the float model's across the
recipes (random BatchNorm statistics, so the fold is not the identity); host packing equals the
kernel's."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnlab import export
from bnnlab.export import fold
from bnnlab.kernels import xnor

from export_cases import model_and_variables, recipe


@pytest.mark.parametrize(
    "name,packed_convs",
    [
        ("simaN_r18", 19),
        ("recu_r18", 16),
        ("xnor_r18", 16),
        ("bireal_r18", 16),
        ("reactnet_r18", 16),
    ],
)
def test_folded_logits_equal_float_model(tmp_path, name, packed_convs):
    ref, model, variables, shape, x = model_and_variables(recipe(name))
    report = export.export(ref, variables, shape, tmp_path / "m.npz")
    assert len(report.packed_layers) == packed_convs
    assert report.folded_batch_norms == tuple(
        p.rsplit("/", 1)[0]
        + "/"
        + {"conv": "bn", "conv1": "bn1", "conv2": "bn2"}[p.rsplit("/", 1)[1]]
        for p in report.packed_layers
    )
    want = jax.jit(functools.partial(model.apply, train=False))(variables, x)
    got = export.load(tmp_path / "m.npz")(x, backend="xla")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(jnp.abs(want).max()))
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))


def test_host_packing_matches_the_kernel_layout():
    w = np.random.default_rng(0).normal(size=(3, 3, 70, 5)).astype(np.float32)
    np.testing.assert_array_equal(fold._pack_kernel(w), xnor.pack_kernel(jnp.asarray(w)).words)
