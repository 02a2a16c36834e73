"""The command line: default workdirs, config errors before any compute, and a SIGKILLed run
that the same command resumes."""

import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import pytest

from bnnlab import main as main_lib
from bnnlab.runs import checkpoint, metrics

ROOT = pathlib.Path(__file__).parents[1]


def test_default_workdir():
    assert main_lib.default_workdir("experiments/simaN_r18.py:runlocal") == (
        "workdirs/simaN_r18_runlocal"
    )
    assert main_lib.default_workdir("/a/b/recu_r18.py") == "workdirs/recu_r18"
    assert main_lib.default_workdir("x.py:imagenet,r34") == "workdirs/x_imagenet_r34"


SMOKE = str(ROOT / "experiments" / "smoke.py")


@pytest.mark.parametrize(
    "args, names",
    [
        ([f"--config={SMOKE}", "--config.lrr=0.1"], ["--config.lrr", "Did you mean 'lr'"]),
        ([f"--config={SMOKE}", "--config.quant.kernel_quantiser=sign"], ["quant", "kernel_q"]),
        ([f"--config={SMOKE}", "--config.lr=fast"], ["--config.lr=fast", "is a float"]),
        ([f"--config={SMOKE}:bogus"], ["'bogus'", "Known: runlocal"]),
        (["--config=experiments/nonexistent.py"], ["nonexistent.py", "Recipes in"]),
        (["--config=BROKEN"], ["broken.py", "SyntaxError at line 2"]),
    ],
    ids=["top-level key", "nested key", "value type", "bad :arg", "missing file", "broken"],
)
def test_config_mistakes_are_one_line_with_exit_status_2(tmp_path, args, names):
    broken = tmp_path / "broken.py"
    broken.write_text("def get_config():\n    return {\n")
    args = [a.replace("BROKEN", str(broken)) for a in args]
    result = subprocess.run(
        [sys.executable, "-m", "bnnlab.main", *args, f"--workdir={tmp_path / 'w'}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) <= 3 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("error: --config")
    for name in names:
        assert name in lines[0], (name, lines[0])
    assert not (tmp_path / "w").exists()  # refused before the workdir is touched


@pytest.mark.slow
def test_sigkill_then_same_command_resumes(tmp_path):
    workdir = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "bnnlab.main",
        f"--config={ROOT / 'experiments' / 'smoke.py'}",
        f"--workdir={workdir}",
        "--config.total_steps=400",
        "--config.checkpoint_every_steps=8",
    ]
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "",
        "JAX_DISABLE_MOST_OPTIMIZATIONS": "1",
        "JAX_COMPILATION_CACHE_DIR": jax.config.jax_compilation_cache_dir or "",
    }
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    while time.time() < deadline and not (workdir / "checkpoints" / "16").exists():
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = checkpoint.Checkpoints(workdir, 3).steps()
    assert killed_at and killed_at[-1] < 400
    finished = subprocess.run(
        command[:-2]
        + [
            "--config.total_steps=48",
            "--config.checkpoint_every_steps=8",
            "--config.resume_override=True",  # a shorter run than the killed one
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert "final eval: accuracy" in finished.stdout
    train_steps = [r["step"] for r in metrics.read(workdir) if r["split"] == "train"]
    assert train_steps == sorted(set(train_steps))  # nothing logged twice
    assert checkpoint.Checkpoints(workdir, 3).steps()[-1] == 48
