"""Multi-process training for real: two processes on this machine, 4 CPU devices each, joined by
``jax.distributed`` (gloo collectives over localhost), train as one process with 8 devices.

Each process loads only its half of every global batch (``data.build`` with its process index)
and they write one checkpoint directory together. The single-process run reduces over the same
8 shards in another order, so the comparison has a float tolerance, not bit equality.
"""

import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import portpicker
import pytest

from bnnlab import train
from bnnlab.runs import checkpoint, metrics

import recipes

ROOT = pathlib.Path(__file__).parents[2]
STEPS = 8
OVERRIDES = {
    "total_steps": STEPS,
    "mesh": (("data", -1),),
    "diagnostics_every_steps": 0,
    "log_every_steps": 2,
    "checkpoint_every_steps": STEPS,
}
TIMEOUT_S = 420


def launch_two_processes(workdir: pathlib.Path) -> list[str]:
    port = portpicker.pick_unused_port()
    flags = [
        f"--config.{k}={v!r}" if isinstance(v, tuple) else f"--config.{k}={v}"
        for k, v in OVERRIDES.items()
    ]
    command = [
        sys.executable,
        "-m",
        "bnnlab.main",
        f"--config={ROOT / 'experiments' / 'smoke.py'}",
        f"--workdir={workdir}",
        "--config.distributed=True",
        *flags,
    ]
    procs, logs = [], []
    for i in range(2):
        env = {
            **os.environ,
            "JAX_COORDINATOR_ADDRESS": f"localhost:{port}",
            "JAX_NUM_PROCESSES": "2",
            "JAX_PROCESS_ID": str(i),
            "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
            # As this test process compiles (tests/conftest.py): quicker, and the same programs.
            "JAX_DISABLE_MOST_OPTIMIZATIONS": "true",
        }
        log = open(workdir.parent / f"process{i}.log", "w+")
        logs.append(log)
        procs.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        codes = [p.wait(timeout=TIMEOUT_S) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        codes = [p.wait() for p in procs]
    texts = []
    for log in logs:
        log.seek(0)
        texts.append(log.read())
        log.close()
    assert codes == [0, 0], f"exit codes {codes}:\n" + "\n----\n".join(t[-3000:] for t in texts)
    return texts


@pytest.mark.slow
def test_two_processes_train_as_one_with_eight_devices(tmp_path):
    texts = launch_two_processes(tmp_path / "two")
    for i, text in enumerate(texts):
        assert f"process {i}/2" in text, text[-2000:]
    assert len(jax.devices()) == 8  # this process: one process, 8 devices
    config = recipes.config("smoke", **OVERRIDES)
    one = train.train_and_evaluate(config, tmp_path / "one")

    def records(workdir):
        return [r for r in metrics.read(workdir) if r["split"] in ("train", "eval")]

    two_records, one_records = records(tmp_path / "two"), records(tmp_path / "one")
    assert [(r["step"], r["split"]) for r in two_records] == [
        (r["step"], r["split"]) for r in one_records
    ]
    for a, b in zip(two_records, one_records, strict=True):
        np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-5, atol=1e-6)
        assert abs(a["accuracy"] - b["accuracy"]) <= 1 / 120  # at most one example flips
    assert json.loads((tmp_path / "two" / "config.json").read_text())["distributed"] is True
    trees = []
    for name in ("two", "one"):
        ckpts = checkpoint.Checkpoints(tmp_path / name, 3)
        tree, step = ckpts.restore_raw()
        ckpts.close()
        assert step == STEPS
        trees.append(tree)
    for key in ("params", "batch_stats", "quant_state"):
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
            trees[0][key],
            trees[1][key],
        )
    assert one["examples"] == 359


def test_partial_distributed_environment_is_a_usage_error(monkeypatch):
    from absl import app

    from bnnlab import main

    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "localhost:1234")
    monkeypatch.delenv("JAX_NUM_PROCESSES", raising=False)
    monkeypatch.setenv("JAX_PROCESS_ID", "0")
    with pytest.raises(app.UsageError, match="localhost:1234 is set but JAX_NUM_PROCESSES"):
        main.initialize_distributed(jax)
