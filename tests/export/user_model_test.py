"""Exporting a model that is not in the zoo: a Linen module defined only here, with
QuantConv/QuantDense layers, exports, loads (rebuilt from its class and fields, or given) and
matches its own forward pass."""

import inspect
import sys
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnlab import export, layers
from bnnlab.export import archive, described


class TinyBinaryNet(nn.Module):
    """Float stem, two binary convs (XNOR-Net scaling, STE sign inputs) with BatchNorm, head."""

    width: int = 16
    num_classes: int = 10

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(self.width, (3, 3), name="stem")(x)
        x = nn.BatchNorm(use_running_average=not train, name="stem_bn")(x)
        for i in range(2):
            x = layers.QuantConv(
                self.width,
                (3, 3),
                kernel_quantizer="xnor_sign",
                input_quantizer="ste_sign",
                use_bias=False,
                name=f"binary{i}",
            )(x, train=train)
            x = nn.BatchNorm(use_running_average=not train, name=f"bn{i}")(x)
        return nn.Dense(self.num_classes, name="head")(x.mean((1, 2)))


class WithCallable(TinyBinaryNet):
    act: Callable = nn.relu  # not JSON: the export cannot record how to rebuild it


def _trained(model, x):
    variables = model.init(jax.random.key(0), x, train=False)
    # Non-trivial BatchNorm statistics, so the folded output transform matters.
    _, stats = model.apply(variables, 3 * x + 1, train=True, mutable=["batch_stats"])
    return {**variables, **stats}


@pytest.fixture
def importable(monkeypatch):
    """This test module importable under its own name (as a user's package would be)."""
    module = inspect.getmodule(TinyBinaryNet)
    monkeypatch.setitem(sys.modules, TinyBinaryNet.__module__, module)


def test_a_user_model_exports_packs_and_matches_its_forward(tmp_path, importable):
    model = TinyBinaryNet(width=16)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 8, 8, 3)), jnp.float32)
    variables = _trained(model, x)
    report = export.export_model(model, variables, (8, 8, 3), tmp_path / "mine.npz")
    assert report.packed_layers == ("binary0", "binary1")
    assert report.folded_batch_norms == ("bn0", "bn1")
    manifest = archive.load(tmp_path / "mine.npz")[0]
    assert manifest["model"]["fields"] == {"width": 16, "num_classes": 10}
    assert manifest["call"] == {"train": False}
    want = model.apply(variables, x, train=False)
    for packed in (export.load(tmp_path / "mine.npz"), export.load(tmp_path / "mine.npz", model)):
        got = packed(x, normalized=True)  # no normalisation recorded: images as they are
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        assert (np.argmax(got, -1) == np.argmax(want, -1)).all()


def test_a_model_without_json_fields_is_passed_at_load(tmp_path, importable):
    model = WithCallable()
    x = jnp.ones((2, 8, 8, 3))
    export.export_model(model, _trained(model, x), (8, 8, 3), tmp_path / "c.npz")
    with pytest.raises(described.ModelNotBuilt, match=r"pass it, export.load\(path, model="):
        export.load(tmp_path / "c.npz")
    with pytest.raises(described.ModelNotBuilt, match=r"the one given is a .*TinyBinaryNet"):
        export.load(tmp_path / "c.npz", TinyBinaryNet())
    packed = export.load(tmp_path / "c.npz", model)
    np.testing.assert_allclose(
        packed(x), model.apply(_trained(model, x), x, train=False), rtol=1e-4, atol=1e-4
    )


class PlainNet(nn.Module):
    """An ordinary float Flax CNN (nn.Conv, nn.BatchNorm, nn.Dense), quantized by rules."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        x = nn.Conv(16, (3, 3), name="stem")(x)
        for i in range(2):
            x = nn.Conv(16, (3, 3), use_bias=False, name=f"body{i}")(x)
            x = nn.BatchNorm(use_running_average=not train, name=f"bn{i}")(x)
        return nn.Dense(10, name="head")(x.mean((1, 2)))


def test_a_rule_quantized_model_exports_packed_and_matches(tmp_path, importable):
    from bnnlab import Rule, quantize_model

    rules = [Rule("body.*", kernel="ste_sign", inputs="ste_sign(clip_value=1.5)")]
    qmodel = quantize_model(PlainNet(), rules)
    x = jnp.asarray(np.random.default_rng(2).normal(size=(4, 8, 8, 3)), jnp.float32)
    variables = qmodel.init(jax.random.key(0), x, train=False)
    _, stats = qmodel.apply(variables, 3 * x + 1, train=True, mutable=["batch_stats"])
    variables = {**variables, **stats}
    report = export.export_model(qmodel, variables, (8, 8, 3), tmp_path / "rules.npz")
    assert report.packed_layers == ("body0", "body1")
    assert report.folded_batch_norms == ("bn0", "bn1")
    manifest = archive.load(tmp_path / "rules.npz")[0]
    assert manifest["model"]["rules"][0]["inputs"] == "ste_sign(clip_value=1.5)"
    assert manifest["call"] == {"train": False, "quant_train": False}
    want = qmodel.apply(variables, x, train=False, quant_train=False)
    packed = export.load(tmp_path / "rules.npz")  # rebuilt: the module and its rules
    got = packed(x, normalized=True)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert (np.argmax(got, -1) == np.argmax(want, -1)).all()
