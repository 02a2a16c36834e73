"""Training throughput of the CIFAR ResNet-18 step, float vs binary, on the present backend.

    python benchmarks/train_throughput.py [--batch=128] [--steps=5] [--width=1.0]

Builds the real training step (``bnnlab.train.experiment.build``: jit, shardings, donation) on fake
32×32 data, runs warm-up steps (compilation excluded), then times ``--steps`` steps and prints
images/s per method with the ratio to float measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import jax

from bnnlab import config_lib
from bnnlab.train import experiment

METHODS = {
    "float": {},
    "xnor (xnor_sign/ste_sign)": dict(kernel="xnor_sign", inputs="ste_sign"),
    "recu": dict(kernel="recu", inputs="recu_act", scale="uniform"),
    "siman": dict(kernel="siman", inputs="siman_act", scale="mean_abs"),
}


def config_for(quant: dict, batch: int, width: float):
    c = config_lib.base()
    c.dataset = "fake"
    c.model_name = "resnet18_cifar"
    c.model.width = width
    c.batch_size = batch
    c.eval_batch_size = batch
    c.progress_bar = False
    for key, value in quant.items():
        c.quant[key] = value
    return c


def images_per_second(config, steps: int, warmup: int = 2) -> float:
    exp = experiment.build(config)
    state = exp.init_state()
    batches = [exp.device_batch(exp.tasks[0].loader.batch(i)) for i in range(warmup + steps)]
    for batch in batches[:warmup]:
        state, metrics = exp.train_step(state, batch, None, None)
    jax.block_until_ready(metrics)
    start = time.perf_counter()
    for batch in batches[warmup:]:
        state, metrics = exp.train_step(state, batch, None, None)
    jax.block_until_ready(metrics)
    return steps * config.batch_size / (time.perf_counter() - start)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--width", type=float, default=1.0)
    args = parser.parse_args()
    print(
        f"backend: {jax.default_backend()}, devices: {jax.device_count()} "
        f"({jax.devices()[0].device_kind}), jax {jax.__version__}"
    )
    print(f"CIFAR ResNet-18 (width {args.width}), batch {args.batch}, {args.steps} timed steps")
    print(f"{'method':<28}{'images/s':>12}{'vs float':>10}")
    base = None
    for name, quant in METHODS.items():
        rate = images_per_second(config_for(quant, args.batch, args.width), args.steps)
        base = base or rate
        print(f"{name:<28}{rate:>12.1f}{rate / base:>9.2f}x", flush=True)


if __name__ == "__main__":
    main()
