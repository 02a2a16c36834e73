"""The metrics file: records in order, and a resumed run drops what followed its checkpoint."""

import math

import pytest

from bnnlab.runs import metrics


def test_resume_drops_later_records_and_non_finite_values_are_strings(tmp_path):
    writer = metrics.Writer(tmp_path, 0, tensorboard=False)
    for step in (10, 20, 30):
        writer.write(step, "train", {"loss": 1.0 / step})
    writer.write(30, "eval", {"accuracy": math.nan})
    writer.close()
    assert [r["step"] for r in metrics.read(tmp_path)] == [10, 20, 30, 30]
    assert metrics.read(tmp_path)[-1]["accuracy"] == "nan"  # JSON has no NaN
    writer = metrics.Writer(tmp_path, 20, tensorboard=False)  # resumed from step 20
    writer.write(30, "train", {"loss": 0.5})
    writer.close()
    records = metrics.read(tmp_path)
    assert [(r["step"], r["split"]) for r in records] == [
        (10, "train"),
        (20, "train"),
        (30, "train"),
    ]
    assert records[-1]["loss"] == 0.5


def test_only_the_primary_process_writes(tmp_path):
    writer = metrics.Writer(tmp_path, 0, enabled=False)
    writer.write(1, "train", {"loss": 1.0})
    writer.close()
    assert metrics.read(tmp_path) == []


def test_a_line_cut_off_mid_write_is_skipped_and_the_run_resumes(tmp_path, caplog):
    writer = metrics.Writer(tmp_path, 0, tensorboard=False)
    for step in (10, 20):
        writer.write(step, "train", {"loss": 1.0})
    writer.close()
    with (tmp_path / metrics.METRICS_FILE).open("a") as f:
        f.write('{"step": 30, "split": "tra')  # killed mid-write
    assert [r["step"] for r in metrics.read(tmp_path)] == [10, 20]
    assert "cut off mid-write" in caplog.text
    writer = metrics.Writer(tmp_path, 20, tensorboard=False)  # resume drops the damaged line
    writer.write(30, "train", {"loss": 0.5})
    writer.close()
    assert [r["step"] for r in metrics.read(tmp_path)] == [10, 20, 30]


def test_damage_before_the_last_line_is_an_error(tmp_path):
    (tmp_path / metrics.METRICS_FILE).write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(ValueError, match="line 2, is not a JSON record"):
        metrics.read(tmp_path)
