"""``benchmarks/device_check.py --dry-run``: the GPU check's code runs on this CPU (kernels
interpreted, tiny shapes), so the one command a GPU session runs cannot rot."""

import contextlib
import importlib.util
import io
import pathlib

import pytest

ROOT = pathlib.Path(__file__).parents[1]


@pytest.mark.slow
def test_dry_run_prints_one_table_and_passes():
    spec = importlib.util.spec_from_file_location(
        "device_check", ROOT / "benchmarks/device_check.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = module.main(["--dry-run"])
    text = out.getvalue()
    assert status == 0, text
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert "all bit-exact" in rows[2]
    assert any(r.startswith("| conv ") for r in rows) and any("GEMV" in r for r in rows)
    assert any("ResNet-18 packed" in r for r in rows)
    assert "nan" not in text  # every timing ran, XLA int8 included


def test_refuses_to_time_a_cpu_without_dry_run(capsys):
    spec = importlib.util.spec_from_file_location(
        "device_check", ROOT / "benchmarks/device_check.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([]) == 2
    assert "--dry-run" in capsys.readouterr().err
