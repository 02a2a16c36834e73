"""Running an export: the interpreted Pallas kernels equal the XLA path; the manifest alone
rebuilds the model."""

import numpy as np

from bnnlab import export, models
from bnnlab.export import archive

from export_cases import model_and_variables, recipe


def test_interpreted_pallas_kernels_run_the_export(tmp_path):
    ref, _, variables, shape, x = model_and_variables(recipe("simaN_r18"), batch=2)
    export.export(ref, variables, shape, tmp_path / "m.npz")
    packed = export.load(tmp_path / "m.npz")
    np.testing.assert_allclose(
        packed(x, backend="interpret"), packed(x, backend="xla"), rtol=1e-6, atol=1e-6
    )


def test_manifest_rebuilds_the_model_without_a_config(tmp_path):
    ref, model, variables, shape, _ = model_and_variables(recipe("recu_r18"), batch=2)
    export.export(ref, variables, shape, tmp_path / "m.npz")
    manifest, _, _ = archive.load(tmp_path / "m.npz")
    assert manifest["model"]["name"] == "resnet18_cifar"
    rebuilt = models.from_ref(manifest["model"])
    assert isinstance(rebuilt, models.resnet.ResNet) and rebuilt.width == model.width
