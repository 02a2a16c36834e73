"""AdderNet vs CNN: training-step time and peak memory of the CIFAR ResNet-20 at batch 128.

    python benchmarks/adder.py [--batch=128] [--steps=5]

Each model runs in its own subprocess (so the process's peak RSS is its own), with the real
jitted training step on fake 32×32 data: compilation excluded from the step time; peak memory
reported two ways: XLA's buffer assignment for the compiled step (arguments + outputs + temps,
what an accelerator would need) and the subprocess's peak resident set size.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import jax

from bnnlab import config_lib
from bnnlab.train import experiment


def measure(adder: bool, batch: int, steps: int) -> dict:
    c = config_lib.base()
    c.dataset = "fake"
    c.model_name = "resnet20"
    c.quant.adder = adder
    c.batch_size = c.eval_batch_size = batch
    c.diagnostics_every_steps = 0
    exp = experiment.build(c)
    state = exp.init_state()
    batches = [exp.device_batch(exp.tasks[0].loader.batch(i)) for i in range(2)]
    compiled = exp.train_step.lower(state, batches[0], None, None).compile()
    memory = compiled.memory_analysis()
    xla_bytes = (
        memory.argument_size_in_bytes
        + memory.output_size_in_bytes
        + memory.temp_size_in_bytes
        - memory.alias_size_in_bytes
    )
    state, metrics = exp.train_step(state, batches[0], None, None)  # warm-up
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for i in range(steps):
        state, metrics = exp.train_step(state, batches[i % 2], None, None)
    jax.block_until_ready(metrics)
    return {
        "step_s": (time.perf_counter() - start) / steps,
        "xla_peak_gib": xla_bytes / 2**30,
        "xla_temp_gib": memory.temp_size_in_bytes / 2**30,
        "rss_peak_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--child", choices=("adder", "cnn"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child == "adder", args.batch, args.steps)))
        return
    print(
        f"backend {jax.default_backend()}, CIFAR ResNet-20, batch {args.batch}, "
        f"{args.steps} timed steps"
    )
    results = {}
    for kind in ("cnn", "adder"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                f"--child={kind}",
                f"--batch={args.batch}",
                f"--steps={args.steps}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        results[kind] = json.loads(out.strip().splitlines()[-1])
    print(
        f"{'model':<8}{'step (s)':>10}{'vs CNN':>8}{'XLA peak GiB':>14}{'XLA temp GiB':>14}"
        f"{'RSS peak GiB':>14}"
    )
    for kind, r in results.items():
        print(
            f"{kind:<8}{r['step_s']:>10.3f}{r['step_s'] / results['cnn']['step_s']:>7.1f}x"
            f"{r['xla_peak_gib']:>14.3f}{r['xla_temp_gib']:>14.3f}{r['rss_peak_gib']:>14.3f}"
        )


if __name__ == "__main__":
    main()
