"""Exporting: float and adder models stay unpacked, the CIFAR ResNet-18 file is at most 1/20 of
its float32 parameters."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnlab import export, models, runs

from export_cases import model_and_variables, recipe


@pytest.mark.slow
def test_float_and_adder_models_export_unpacked(tmp_path):
    for name in ("float_r18", "adder_r20"):
        ref, model, variables, shape, x = model_and_variables(recipe(name), batch=2)
        report = export.export(ref, variables, shape, tmp_path / f"{name}.npz")
        assert report.packed_layers == ()
        # Same float computation; jit vs eager may round differently (fusion).
        want = jax.jit(functools.partial(model.apply, train=False))(variables, x)
        np.testing.assert_allclose(
            export.load(tmp_path / f"{name}.npz")(x), want, atol=1e-5 * float(jnp.abs(want).max())
        )


def test_cifar_resnet18_file_is_at_most_a_twentieth(tmp_path):
    config = recipe("simaN_r18", "")
    ref = runs.model_ref(config, 10)
    model = models.from_ref(ref)
    abstract = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)), train=False)
    )
    abstract = {k: abstract[k] for k in ("params", "batch_stats", "quant_state")}
    rng = np.random.default_rng(0)

    def leaf(path, a):
        if str(path[-1].key) == "var":
            return np.ones(a.shape, a.dtype)
        if str(path[0].key) == "quant_state":  # SiMaN's stored binary code B ∈ {0, 1}
            return rng.integers(0, 2, size=a.shape).astype(a.dtype)
        return rng.normal(size=a.shape).astype(a.dtype)

    variables = jax.tree_util.tree_map_with_path(leaf, abstract)
    report = export.export(ref, variables, (32, 32, 3), tmp_path / "r18.npz")
    print(report)
    n_params = sum(np.size(v) for v in jax.tree.leaves(variables["params"]))
    assert n_params == 11_179_722  # the model zoo's count for SiMaN's CIFAR ResNet-18
    assert report.float32_param_bytes == 4 * n_params
    assert report.file_bytes == (tmp_path / "r18.npz").stat().st_size
    assert report.file_bytes * 20 <= report.float32_param_bytes
    packed = export.load(tmp_path / "r18.npz")
    x = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    want = jax.jit(functools.partial(model.apply, train=False))(variables, x)
    np.testing.assert_allclose(packed(x), want, rtol=1e-4, atol=1e-4 * float(jnp.abs(want).max()))
