"""Cost of the training-time weight diagnostics: steps/s with diagnostics at a given interval vs
off, measured in the same run.

    python benchmarks/diagnostics_overhead.py [--every=100] [--rounds=3] [--width=0.25]
        [--batch=128] [--method=siman]

Diagnostics add per-step flip tracking (each binary layer's codes are recomputed after the
update) and, every ``--every`` steps, the per-layer statistics and an activation-balance
forward pass. Compilation is excluded; both settings run the same batches.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from bnnlab import config_lib
from bnnlab.train import experiment

QUANT = {
    "siman": dict(kernel="siman", inputs="siman_act", scale="mean_abs"),
    "recu": dict(kernel="recu", inputs="recu_act", scale="uniform"),
    "xnor": dict(kernel="xnor_sign", inputs="ste_sign"),
}


def build(args, every: int):
    c = config_lib.base()
    c.dataset = "fake"
    c.model_name = "resnet18_cifar"
    c.model.width = args.width
    c.batch_size = c.eval_batch_size = args.batch
    c.diagnostics_every_steps = every
    c.update({"quant": {**c.quant.to_dict(), **QUANT[args.method]}})
    exp = experiment.build(c)
    return exp, exp.init_state()


def run(exp, state, batches, steps: int, every: int):
    """``steps`` training steps as the training loop runs them; returns (state, seconds)."""
    begin = time.perf_counter()
    for step in range(steps):
        batch = batches[step % len(batches)]
        state, _ = exp.train_step(state, batch, None, None)
        if exp.diagnostics_step is not None and (step + 1) % every == 0:
            diagnostics, state = exp.diagnostics_step(state, batch, None)
            jax.block_until_ready(diagnostics)
    jax.block_until_ready(state.params)
    return state, time.perf_counter() - begin


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--method", choices=sorted(QUANT), default="siman")
    args = parser.parse_args()
    print(
        f"backend {jax.default_backend()}, CIFAR ResNet-18 width {args.width}, batch "
        f"{args.batch}, {args.method}"
    )
    # Both settings are built first and then timed in alternating blocks, so drift in the
    # machine's speed hits them equally; the median block time is reported.
    settings = {"off": (0, *build(args, 0)), "on": (args.every, *build(args, args.every))}
    times = {name: [] for name in settings}
    for rounds in range(args.rounds + 1):
        for name, (every, exp, state) in settings.items():
            batches = [exp.device_batch(exp.tasks[0].loader.batch(i)) for i in range(4)]
            state, seconds = run(exp, state, batches, args.every, every)
            settings[name] = (every, exp, state)
            if rounds:  # round 0 compiles
                times[name].append(seconds / args.every)
    off, on = (float(np.median(times[k])) for k in ("off", "on"))
    print(f"diagnostics off:               {1 / off:8.3f} steps/s")
    print(f"diagnostics every {args.every:<5} steps:  {1 / on:8.3f} steps/s")
    print(
        f"overhead: {100 * (on / off - 1):+.1f} % time per step "
        f"(median of {args.rounds} alternating blocks of {args.every} steps)"
    )


if __name__ == "__main__":
    main()
