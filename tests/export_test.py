"""Packed-inference export: logits equal to the trained model's on every test example of a
runlocal run, folding checked across the recipes (random BatchNorm statistics so the fold is
not the identity), the CIFAR ResNet-18 file at most 1/20 of its float32 parameters, file
robustness and errors."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnlab import data, export, models, train
from bnnlab.export import archive, check, fold
from bnnlab.kernels import xnor
from bnnlab.train import workdir as workdir_lib

import recipes


def recipe(name, arg="runlocal"):
    return recipes.config(name, arg)


def perturbed(variables, seed=0):
    """BatchNorm statistics, scales and biases away from their init (γ=1, μ=0, σ²=1...)."""
    rng = np.random.default_rng(seed)

    def leaf(path, a):
        name = str(path[-1].key)
        a = np.asarray(a)
        if name == "mean":
            return (rng.normal(size=a.shape) * 0.5).astype(a.dtype)
        if name == "var":
            return rng.uniform(0.3, 2.0, size=a.shape).astype(a.dtype)
        if name in ("scale", "bias"):
            return (a + 0.3 * rng.normal(size=a.shape)).astype(a.dtype)
        return a

    return jax.tree_util.tree_map_with_path(leaf, variables)


def model_and_variables(config, batch=8, seed=0):
    ref = workdir_lib.model_ref(config, data.info(config.dataset).num_classes)
    model = models.from_ref(ref)
    shape = workdir_lib.input_shape(config)
    x = jax.random.normal(jax.random.key(seed + 1), (batch, *shape))
    variables = jax.jit(functools.partial(model.init, train=False))(jax.random.key(seed), x)
    variables = {
        k: v for k, v in variables.items() if k in ("params", "batch_stats", "quant_state")
    }
    variables = perturbed(variables, seed)
    return ref, model, variables, shape, x


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


def test_interpreted_pallas_kernels_run_the_export(tmp_path):
    ref, _, variables, shape, x = model_and_variables(recipe("simaN_r18"), batch=2)
    export.export(ref, variables, shape, tmp_path / "m.npz")
    packed = export.load(tmp_path / "m.npz")
    np.testing.assert_allclose(
        packed(x, backend="interpret"), packed(x, backend="xla"), rtol=1e-6, atol=1e-6
    )


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


@pytest.mark.slow
def test_runlocal_run_exports_with_equal_predictions(tmp_path):
    # experiments/smoke.py: the runlocal setting (digits) with a tiny SiMaN Bi-Real ResNet, 16
    # steps; the full runlocal recipes are checked with `python -m bnnlab.export` (README).
    config = recipe("smoke", None)
    train.train_and_evaluate(config, tmp_path / "run")
    report = export.export_workdir(tmp_path / "run", tmp_path / "packed.npz")
    agreement = check.against_workdir(export.load(tmp_path / "packed.npz"), tmp_path / "run")
    print(report, agreement, sep="\n")
    assert agreement.examples == len(data.load_sources("digits")[1])
    assert agreement.same_prediction == agreement.examples
    assert agreement.max_abs_logit_diff <= 1e-5 * max(agreement.max_abs_logit, 1.0)
    assert agreement.packed_accuracy == agreement.trained_accuracy


def test_cifar_resnet18_file_is_at_most_a_twentieth(tmp_path):
    config = recipe("simaN_r18", "")
    ref = workdir_lib.model_ref(config, 10)
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


def test_errors_and_atomic_overwrite(tmp_path):
    ref, _, variables, shape, _ = model_and_variables(recipe("xnor_r18"), batch=2)
    path = tmp_path / "m.npz"
    export.export(ref, variables, shape, path)
    before = path.read_bytes()
    with pytest.raises(ValueError, match=r"\.npz"):
        export.export(ref, variables, shape, tmp_path / "m.bin")
    # A failure while writing leaves the previous export untouched and no temporary behind.
    bad = dict(variables, params={"not": np.zeros(1, np.float32)})
    with pytest.raises(Exception):  # noqa: B017 - any failure mode of a broken state
        export.export(ref, bad, shape, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]
    packed = export.load(path)
    with pytest.raises(ValueError, match=r"\(2, 9, 9, 1\)"):
        packed(np.zeros((2, 9, 9, 1)))
    with pytest.raises(FileNotFoundError):
        export.load(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="not a bnnlab export"):
        export.load(tmp_path / "other.npz")


def test_manifest_rebuilds_the_model_without_a_config(tmp_path):
    ref, model, variables, shape, _ = model_and_variables(recipe("recu_r18"), batch=2)
    export.export(ref, variables, shape, tmp_path / "m.npz")
    manifest, _, _ = archive.load(tmp_path / "m.npz")
    assert manifest["model"]["name"] == "resnet18_cifar"
    rebuilt = models.from_ref(manifest["model"])
    assert isinstance(rebuilt, models.resnet.ResNet) and rebuilt.width == model.width


def test_host_packing_matches_the_kernel_layout():
    w = np.random.default_rng(0).normal(size=(3, 3, 70, 5)).astype(np.float32)
    np.testing.assert_array_equal(fold._pack_kernel(w), xnor.pack_kernel(jnp.asarray(w)).words)
