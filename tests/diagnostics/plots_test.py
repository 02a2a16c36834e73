"""Diagnostic plots: one weight-histogram panel per layer, titled with its quantizer."""

import bnnlab
from bnnlab.diagnostics import plots


def test_weight_histograms_one_panel_per_layer(tmp_path):
    import numpy as np

    kernels = {f"layer{i}": np.random.default_rng(i).normal(size=(3, 3, 4, 8)) for i in range(3)}
    quantizers = {
        "layer0": bnnlab.quant.get("recu"),
        "layer1": bnnlab.quant.get("siman"),
        "layer2": bnnlab.quant.get("ste_sign"),
    }
    titles = plots.weight_histograms(kernels, quantizers, tmp_path / "w.png")
    assert titles == ["layer0 (recu)", "layer1 (siman)", "layer2 (ste_sign)"]
    assert (tmp_path / "w.png").stat().st_size > 10_000
