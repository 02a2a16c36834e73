"""Checking an export against its run: every test prediction equal on a trained workdir."""

import jax
import numpy as np
import pytest

from bnnlab import data, export, runs, train
from bnnlab.export import archive, check

from export_cases import recipe


@pytest.mark.slow
def test_runlocal_run_exports_with_equal_predictions(tmp_path):
    # experiments/smoke.py: the runlocal setting (digits) with a tiny SiMaN Bi-Real ResNet, 16
    # steps; the full runlocal recipes are checked with `python -m bnnlab.export` (README).
    config = recipe("smoke", None)
    train.train_and_evaluate(config, tmp_path / "run")
    run = runs.load(tmp_path / "run")  # read once, for the export and the check
    report = export.export_run(run, tmp_path / "packed.npz")
    agreement = check.against_run(export.load(tmp_path / "packed.npz"), run)
    print(report, agreement, sep="\n")
    assert agreement.examples == len(data.load_sources("digits")[1])
    assert agreement.same_prediction == agreement.examples
    assert agreement.max_abs_logit_diff <= 1e-5 * max(agreement.max_abs_logit, 1.0)
    assert agreement.packed_accuracy == agreement.trained_accuracy
    # The run's normalisation travels with the export; its test images (checked on every call
    # above) lie in the recorded range; scikit-learn's own 0–16 gray levels do not.
    manifest = archive.load(tmp_path / "packed.npz")[0]
    assert manifest["input"]["normalization"] == "digits"
    test = data.load_sources("digits")[1]
    packed = export.load(tmp_path / "packed.npz")
    with pytest.raises(export.InvalidImages, match="outside"):
        packed(16 * test.images[:4])
    # The test digits exactly as the dataset gives them (unit floats, not normalised) give
    # the run's accuracy: the export normalises them itself.
    raw = test.get(np.arange(len(test)))
    predictions = np.asarray(packed(raw["image"])).argmax(-1)
    assert np.mean(predictions == raw["label"]) == pytest.approx(agreement.trained_accuracy)


@pytest.mark.slow
def test_export_workdir_equals_export_run(tmp_path):
    train.train_and_evaluate(recipe("smoke", None), tmp_path / "run")
    export.export_workdir(tmp_path / "run", tmp_path / "a.npz")
    run = runs.load(tmp_path / "run")
    export.export_run(run, tmp_path / "b.npz")
    by_workdir = check.against_workdir(export.load(tmp_path / "a.npz"), tmp_path / "run")
    by_run = check.against_run(export.load(tmp_path / "b.npz"), run)
    assert (by_workdir.same_prediction, by_workdir.examples) == (by_run.examples,) * 2
    a, b = archive.load(tmp_path / "a.npz"), archive.load(tmp_path / "b.npz")
    assert a[0] == b[0]
    for x, y in zip(jax.tree.leaves(a[1:]), jax.tree.leaves(b[1:]), strict=True):
        np.testing.assert_array_equal(x, y)
