"""Packed XNOR-popcount ops vs the XLA float32 and bfloat16 ops of the same shape.

    python benchmarks/kernels.py [--batches=1,64] [--repeats=10] [--backend=auto] [--quick]

Shapes: the 3×3 binary convs of the CIFAR ResNet-18 (each stage's stride-1 conv and the
stride-2 conv that opens stages 2–4, SAME padding) at each batch size, and a square-ish matmul
1024×4096 · 4096×1024. Every op is jitted and timed after a warm-up call, the median of
``--repeats`` runs; ratios are measured in the same run (float time / packed time: > 1 means the
packed op is faster). The packed op takes packed activations and a packed kernel (how a binary
network runs when each layer's output is packed by its thresholds) and returns int32 dot
products; "packed+pack" also packs float activations first. Binary-op throughput counts a
binary multiply-accumulate as 2 ops (as LCE and the float GFLOP/s do).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
from jax import lax

from bnnlab.kernels import backend as backend_lib
from bnnlab.kernels import bitpack, xnor

# (H=W, C_in, C_out, stride) of the CIFAR ResNet-18's binary 3×3 convs.
CONV_SHAPES = [
    (32, 64, 64, 1),
    (32, 64, 128, 2),
    (16, 128, 128, 1),
    (16, 128, 256, 2),
    (8, 256, 256, 1),
    (8, 256, 512, 2),
    (4, 512, 512, 1),
]
MATMUL = (1024, 4096, 1024)


def timed(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile and warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def float_conv(dtype, stride):
    @jax.jit
    def conv(x, w):
        return lax.conv_general_dilated(
            x.astype(dtype),
            w.astype(dtype),
            (stride, stride),
            "SAME",
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )

    return conv


def conv_row(batch, size, cin, cout, stride, backend, repeats):
    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (batch, size, size, cin), jnp.float32)
    w = jax.random.normal(kw, (3, 3, cin, cout), jnp.float32)
    xp, wp = bitpack.pack(x), xnor.pack_kernel(w)
    kwargs = dict(strides=(stride, stride), padding="SAME", backend=backend)
    packed = jax.jit(lambda a, k: xnor.xnor_conv2d(a, k, **kwargs))  # packs float ``a`` first
    t = dict(
        f32=timed(float_conv(jnp.float32, stride), x, w, repeats=repeats),
        bf16=timed(float_conv(jnp.bfloat16, stride), x, w, repeats=repeats),
        packed=timed(packed, xp, wp, repeats=repeats),
        packed_pack=timed(packed, x, wp, repeats=repeats),
    )
    out = -(-size // stride)
    macs = batch * out * out * cout * 9 * cin
    name = f"conv {size}×{size}×{cin}→{cout} /{stride}, batch {batch}"
    return name, macs, t


def matmul_row(backend, repeats):
    m, k, n = MATMUL
    ka, kb = jax.random.split(jax.random.key(1))
    a = jax.random.normal(ka, (m, k), jnp.float32)
    b = jax.random.normal(kb, (k, n), jnp.float32)
    pa, pb = bitpack.pack(a), bitpack.pack(b.T)
    t = dict(
        f32=timed(jax.jit(jnp.matmul), a, b, repeats=repeats),
        bf16=timed(
            jax.jit(lambda a, b: a.astype(jnp.bfloat16) @ b.astype(jnp.bfloat16)),
            a,
            b,
            repeats=repeats,
        ),
        packed=timed(
            jax.jit(lambda a, b: xnor.xnor_matmul(a, b, backend=backend)), pa, pb, repeats=repeats
        ),
        packed_pack=timed(
            jax.jit(lambda a, b: xnor.xnor_matmul(bitpack.pack(a), b, backend=backend)),
            a,
            pb,
            repeats=repeats,
        ),
    )
    return f"matmul {m}×{k}·{k}×{n}", m * k * n, t


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", default="1,64")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--backend", default="auto", choices=backend_lib.BACKENDS)
    parser.add_argument("--quick", action="store_true", help="first two conv shapes, batch 1")
    args = parser.parse_args()
    backend = backend_lib.resolve(args.backend)
    batches = [1] if args.quick else [int(b) for b in args.batches.split(",")]
    shapes = CONV_SHAPES[:2] if args.quick else CONV_SHAPES
    device = jax.devices()[0]
    print(
        f"device: {device.device_kind} ({jax.default_backend()}, {jax.device_count()} devices), "
        f"jax {jax.__version__}, packed backend: {backend}\n"
    )
    print(
        "| op | f32 ms | bf16 ms | packed ms | packed+pack ms | f32/packed | bf16/packed "
        "| f32 GFLOP/s | packed binary GOP/s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = [conv_row(b, *s, backend, args.repeats) for b in batches for s in shapes]
    rows.append(matmul_row(backend, args.repeats))
    for name, macs, t in rows:
        print(
            f"| {name} | {1e3 * t['f32']:.2f} | {1e3 * t['bf16']:.2f} | {1e3 * t['packed']:.2f} "
            f"| {1e3 * t['packed_pack']:.2f} | {t['f32'] / t['packed']:.2f}× "
            f"| {t['bf16'] / t['packed']:.2f}× | {2 * macs / t['f32'] / 1e9:.1f} "
            f"| {2 * macs / t['packed'] / 1e9:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
