"""Packed XNOR-popcount ops vs the XLA float32 and bfloat16 ops of the same shape, and packed
vs float end-to-end inference of the CIFAR ResNet-18.

    python benchmarks/kernels.py [--batches=1,8,64] [--repeats=10] [--isa=auto] [--quick]

Shapes: the 3×3 binary convs of the CIFAR ResNet-18 (each stage's stride-1 conv and the
stride-2 conv that opens stages 2–4, SAME padding) at each batch size, and the matmul
1024×4096 · 4096×1024. Every op is jitted and timed after a warm-up call: the median of
``--repeats`` runs, more for sub-millisecond ops (at least ~0.3 s of them). Ratios are measured
in the same run (float time / packed time: > 1 means the packed op is faster). Packed ops take
packed activations and a packed kernel (a binary network whose layers emit packed bits) and
return int32 dot products. Columns: the XLA path ("xla"), and on GPU/TPU the Pallas kernel or
on CPU the native kernel ("kernel", weights laid out once as the export's loader does;
``--isa`` forces its instruction set). Binary-op throughput counts a binary multiply-accumulate
as 2 ops, as GFLOP/s counts a float one.

End to end: the CIFAR-10 ResNet-18 of the SiMaN recipe (random weights: speed does not depend
on them), exported with ``bnnlab.export`` and run at batch 1 — float input, packing, im2col,
kernels, folded BatchNorm, float stem and classifier, all in one jitted call — against the
float ResNet-18 of the same architecture under XLA.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from bnnlab import export, models
from bnnlab.kernels import bitpack, cpu, xnor

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
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    once = time.perf_counter() - start
    # Sub-millisecond ops: at least ~0.3 s of runs, so the median is not one scheduler hiccup.
    repeats = max(repeats, min(1000, int(0.3 / max(once, 1e-6))))
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


def conv_row(batch, size, cin, cout, stride, kernel, isa, repeats):
    kx, kw = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (batch, size, size, cin), jnp.float32)
    w = jax.random.normal(kw, (3, 3, cin, cout), jnp.float32)
    xp, wp = bitpack.pack(x), xnor.pack_kernel(w)

    def packed(backend):
        native = xnor.NativeOptions(isa=isa)
        kwargs = dict(strides=(stride, stride), padding="SAME", backend=backend, native=native)
        return jax.jit(lambda a, k: xnor.xnor_conv2d(a, k, **kwargs))

    # The native kernel gets its weights laid out once, as the export's loader does.
    wk = xnor.native_layout(wp) if kernel == "native" else wp
    t = dict(
        f32=timed(float_conv(jnp.float32, stride), x, w, repeats=repeats),
        bf16=timed(float_conv(jnp.bfloat16, stride), x, w, repeats=repeats),
        xla=timed(packed("xla"), xp, wp, repeats=repeats),
        kernel=timed(packed(kernel), xp, wk, repeats=repeats) if kernel else None,
    )
    out = -(-size // stride)
    macs = batch * out * out * cout * 9 * cin
    return f"conv {size}×{size}×{cin}→{cout} /{stride}, batch {batch}", macs, t


def matmul_row(kernel, isa, repeats):
    m, k, n = MATMUL
    ka, kb = jax.random.split(jax.random.key(1))
    a = jax.random.normal(ka, (m, k), jnp.float32)
    b = jax.random.normal(kb, (k, n), jnp.float32)
    pa, pb = bitpack.pack(a), bitpack.pack(b.T)

    def packed(backend):
        panels = cpu.panels(pb.words) if backend == "native" and cpu.available() else None
        native = xnor.NativeOptions(isa=isa, b_panels=panels)
        return jax.jit(lambda a, b: xnor.xnor_matmul(a, b, backend=backend, native=native))

    bf16 = jax.jit(lambda a, b: a.astype(jnp.bfloat16) @ b.astype(jnp.bfloat16))
    t = dict(
        f32=timed(jax.jit(jnp.matmul), a, b, repeats=repeats),
        bf16=timed(bf16, a, b, repeats=repeats),
        xla=timed(packed("xla"), pa, pb, repeats=repeats),
        kernel=timed(packed(kernel), pa, pb, repeats=repeats) if kernel else None,
    )
    return f"matmul {m}×{k}·{k}×{n}", m * k * n, t


def random_variables(model, x, seed=0):
    """Random variables of ``model`` (speed does not depend on them): N(0, 1) weights, unit
    running variances, random {0, 1} quantizer state."""
    rng = np.random.default_rng(seed)
    init = functools.partial(model.init, train=False)
    abstract = jax.eval_shape(init, jax.random.key(0), x)

    def leaf(path, a):
        if str(path[-1].key) == "var":
            return np.ones(a.shape, a.dtype)
        if str(path[0].key) == "quant_state":
            return rng.integers(0, 2, size=a.shape).astype(a.dtype)
        return rng.normal(size=a.shape).astype(a.dtype)

    keep = {k: abstract[k] for k in ("params", "batch_stats", "quant_state") if k in abstract}
    return jax.tree_util.tree_map_with_path(leaf, keep)


def cifar_resnet18(x, width: float = 1.0):
    """(float model, its variables, the packed export of the binary model) of the SiMaN
    recipe's CIFAR-10 ResNet-18 for images like ``x``."""
    quant = dict(kernel="siman", inputs="siman_act", scale="mean_abs", pad_value=0.0)
    kwargs = dict(shortcut="block_conv", width=width)
    ref = dict(name="resnet18_cifar", num_classes=10, quant=quant, kwargs=kwargs)
    binary = models.from_ref(ref)
    floating = models.from_ref(dict(ref, quant={}))
    with tempfile.TemporaryDirectory() as tmp:
        export.export(ref, random_variables(binary, x), x.shape[1:], f"{tmp}/r18.npz")
        packed = export.load(f"{tmp}/r18.npz")
    return floating, random_variables(floating, x), packed


def end_to_end(kernel, repeats):
    """(float ms, packed-XLA ms, packed-kernel ms) for the CIFAR ResNet-18 at batch 1."""
    x = jax.random.normal(jax.random.key(0), (1, 32, 32, 3))
    floating, float_vars, packed = cifar_resnet18(x)
    float_fn = jax.jit(functools.partial(floating.apply, train=False))
    return (
        timed(float_fn, float_vars, x, repeats=repeats),
        timed(functools.partial(packed, backend="xla"), x, repeats=repeats),
        timed(functools.partial(packed, backend=kernel), x, repeats=repeats) if kernel else None,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", default="1,8,64")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--isa", default="auto", choices=cpu.ISAS)
    parser.add_argument("--quick", action="store_true", help="two conv shapes, batch 1")
    args = parser.parse_args()
    platform = jax.default_backend()
    if platform == "cpu":
        kernel = "native" if cpu.available() else None
        what = f"native ({args.isa}; runs {cpu.supported_isas()})" if kernel else "none"
    else:
        kernel, what = "pallas", "pallas"
    batches = [1] if args.quick else [int(b) for b in args.batches.split(",")]
    shapes = CONV_SHAPES[:2] if args.quick else CONV_SHAPES
    print(
        f"device: {jax.devices()[0].device_kind} ({platform}), jax {jax.__version__}, "
        f"kernel: {what}" + ("" if kernel else f" — {cpu.unavailable_reason()}") + "\n"
    )
    print(
        "| op | f32 ms | bf16 ms | packed xla ms | packed kernel ms | f32/xla | f32/kernel "
        "| bf16/kernel | f32 GFLOP/s | kernel binary GOP/s |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = [conv_row(b, *s, kernel, args.isa, args.repeats) for b in batches for s in shapes]
    rows.append(matmul_row(kernel, args.isa, args.repeats))
    for name, macs, t in rows:
        k = t["kernel"] or float("nan")
        print(
            f"| {name} | {1e3 * t['f32']:.3f} | {1e3 * t['bf16']:.3f} | {1e3 * t['xla']:.3f} "
            f"| {1e3 * k:.3f} | {t['f32'] / t['xla']:.2f}× | {t['f32'] / k:.2f}× "
            f"| {t['bf16'] / k:.2f}× | {2 * macs / t['f32'] / 1e9:.1f} "
            f"| {2 * macs / k / 1e9:.1f} |",
            flush=True,
        )
    if not args.quick:
        f, x, k = end_to_end(kernel, args.repeats)
        k = k or float("nan")
        print(
            f"\nCIFAR ResNet-18, batch 1, end to end: float {1e3 * f:.2f} ms; packed "
            f"(XLA) {1e3 * x:.2f} ms = {f / x:.2f}× float; packed (kernel) {1e3 * k:.2f} ms = "
            f"{f / k:.2f}× float"
        )


if __name__ == "__main__":
    main()
