"""The report on a trained workdir (``bnnlab.diagnostics.report``): per-layer table, plots and
the error for a missing checkpoint."""

import pytest

from bnnlab import train
from bnnlab.diagnostics import report

import recipes


@pytest.mark.slow
def test_inspect_a_trained_workdir(tmp_path, capsys):
    train.train_and_evaluate(recipes.config("smoke"), tmp_path / "run")
    table = report.inspect_run(tmp_path / "run", out=tmp_path / "out")
    assert sorted(table) == ["stage1_unit1/conv", "stage2_unit1/conv"]
    row = table["stage1_unit1/conv"]
    assert row["bit_entropy"] == 1.0 and 0 <= row["flips_since_previous"] <= 1
    for name in ("weights.png", "diagnostics.png", "curves.png"):
        data = (tmp_path / "out" / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, name
    printed = capsys.readouterr().out
    assert "stage2_unit1/conv" in printed and "bit entropy" in printed
    with pytest.raises(ValueError, match="No checkpoint at step 3"):
        report.inspect_run(tmp_path / "run", step=3)
