"""The GPU check in one command: every compiled Pallas kernel bit-exact against the jnp
reference, both XNOR paths timed against XLA bf16 and int8, and the packed CIFAR ResNet-18
end to end against the float model in bf16. One markdown table on stdout.

    python benchmarks/device_check.py              # on a GPU (or TPU) machine (sized for ≤ 8 min)
    python benchmarks/device_check.py --dry-run    # the same code on CPU, interpreted, tiny

(a) Bit-exactness, ``backend="pallas"``: the kernel suite of ``tests/kernel_cases.py`` (every
    conv case, the matmuls, the fused output transform with packed output) for the popcount
    and the tensor-core ("dot") paths against ``xnor_*_reference``, and the adder distance on
    integer-valued inputs (exact in any summation order) against ``distance_reference``.
(b) Speed: the CIFAR ResNet-18's binary 3×3 convs (``benchmarks/kernels.py``) and a
    M×4096 · 4096×4096 matmul (M = 1 is the GEMV) at batch 1, 8, 16, 64. Binary ops take packed
    activations and a packed kernel and return int32 dots; XLA bf16 / int8 take the same shape
    as bf16 / int8 tensors (int8 accumulating in int32). Median wall time of jitted calls.
(c) The SiMaN recipe's CIFAR ResNet-18 exported (random weights) at batch 1 and 16 — float
    input to logits in one jitted call, ``backend="auto"`` — against the float model with bf16
    parameters and input.

Only jax, flax, numpy and bnnlab's kernels/models/export are imported (a GPU image with jax,
flax, optax, orbax, chex and absl runs it without bnnlab's other dependencies). Exit status 1
if any kernel is not bit-exact.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import pathlib
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bnnlab from this checkout, installed or not

from bnnlab.kernels import adder, bitpack, xnor  # noqa: E402

BATCHES = (1, 8, 16, 64)
MATMUL_K = 4096
ALGORITHMS = ("popcount", "dot")


def _load(name: str, path: str):
    """A module of this checkout by path (``benchmarks/`` and ``tests/`` are not packages)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load("bnnlab_benchmarks_kernels", "benchmarks/kernels.py")  # shapes, timing, the R18
cases = _load("bnnlab_kernel_cases", "tests/kernel_cases.py")  # the kernel tests' shape suite


def pallas_options(algorithm: str) -> xnor.PallasOptions:
    """The Pallas kernel's defaults with its inner product forced to ``algorithm``."""
    return xnor.PallasOptions(algorithm=algorithm)


def check_kernels(backend: str, dry_run: bool) -> list[tuple[str, bool]]:
    """(case, bit-exact) for every kernel and path on the suite."""
    conv_cases = cases.CONV_CASES[:2] if dry_run else cases.CONV_CASES
    matmuls = [(5, 7, 31)] if dry_run else [(1, 1, 1), (5, 7, 31), (33, 129, 100), (64, 64, 576)]
    results = []
    for algorithm in ALGORITHMS:
        for case in conv_cases:
            x, w = cases.case_arrays(case)
            *_, stride, padding, pad_value = case
            kw = dict(strides=(stride, stride), padding=padding, pad_value=pad_value)
            got = xnor.xnor_conv2d(x, w, backend=backend, pallas=pallas_options(algorithm), **kw)
            same = np.array_equal(got, xnor.xnor_conv2d_reference(x, w, **kw))
            results.append((f"conv {case} [{algorithm}]", same))
        for m, n, k in matmuls:
            rng = np.random.default_rng(k)
            a = bitpack.pack(jnp.asarray(rng.normal(size=(m, k)), jnp.float32))
            b = bitpack.pack(jnp.asarray(rng.normal(size=(n, k)), jnp.float32))
            got = xnor.xnor_matmul(a, b, backend=backend, pallas=pallas_options(algorithm))
            same = np.array_equal(got, xnor.xnor_matmul_reference(a, b))
            results.append((f"matmul {m}×{n}×{k} [{algorithm}]", same))
        results.append(
            (f"transform + packed output [{algorithm}]", transform_case(backend, algorithm))
        )
    for r, k, o in (
        [(7, 27, 5)] if dry_run else [(1, 1, 1), (7, 27, 5), (70, 100, 130), (33, 576, 16)]
    ):
        rng = np.random.default_rng(r + k)
        p = rng.integers(-8, 9, size=(r, k)).astype(np.float32)
        f = rng.integers(-8, 9, size=(k, o)).astype(np.float32)
        same = np.array_equal(adder.distance(p, f, backend), adder.distance_reference(p, f))
        results.append((f"adder distance {r}×{k}×{o}", same))
    return results


def transform_case(backend: str, algorithm: str) -> bool:
    """The fused transform (clamp, multiplier, bias) and the packed output of a conv."""
    x, w = cases.case_arrays(cases.CONV_CASES[1])
    rng = np.random.default_rng(5)
    mult = jnp.asarray(rng.normal(size=w.shape[-1]), jnp.float32)
    bias = jnp.asarray(10 * rng.normal(size=w.shape[-1]), jnp.float32)
    transform = xnor.OutputTransform(mult, bias, (-20.0, 15.0))
    kw = dict(strides=(2, 2), pad_value=0.0)
    dots = xnor.xnor_conv2d_reference(x, w, **kw).astype(jnp.float32)
    expected = jnp.clip(dots, -20.0, 15.0) * mult + bias
    packed = xnor.xnor_conv2d(
        x, w, transform, packed_output=True, backend=backend, pallas=pallas_options(algorithm), **kw
    )
    # Dots are integers; the transform is one multiply-add: the signs are exact.
    return np.array_equal(bitpack.unpack(packed), np.where(expected < 0, -1.0, 1.0))


def timed(fn, *args, quick: bool) -> float:
    if quick:  # the dry run checks the code path, not the speed
        jax.block_until_ready(fn(*args))
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        return time.perf_counter() - start
    return bench.timed(fn, *args, repeats=10)


def _xla_conv(dtype, stride):
    acc = jnp.int32 if dtype == jnp.int8 else None
    return jax.jit(
        lambda x, w: lax.conv_general_dilated(
            x, w, (stride, stride), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"),
            preferred_element_type=acc,
        )
    )  # fmt: skip


def _xla_matmul(dtype):
    acc = jnp.int32 if dtype == jnp.int8 else None
    return jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=acc))


def _or_nan(thunk) -> float:
    try:
        return thunk()
    except Exception as error:  # e.g. an int8 conv this XLA build does not support
        print(f"<!-- skipped: {type(error).__name__}: {str(error)[:120]} -->", flush=True)
        return float("nan")


def speed_rows(backend: str, dry_run: bool):
    shapes = [(8, 32, 32, 1)] if dry_run else bench.CONV_SHAPES
    batches = (1,) if dry_run else BATCHES
    k = 64 if dry_run else MATMUL_K
    rows = []
    key = jax.random.key(0)
    for batch in batches:
        for size, cin, cout, stride in shapes:
            x = jax.random.normal(key, (batch, size, size, cin), jnp.float32)
            w = jax.random.normal(key, (3, 3, cin, cout), jnp.float32)
            xp, wp = bitpack.pack(x), xnor.pack_kernel(w)
            t = {}
            for algorithm in ALGORITHMS:
                kw = dict(
                    strides=(stride, stride), backend=backend, pallas=pallas_options(algorithm)
                )
                fn = jax.jit(lambda a, k, kw=kw: xnor.xnor_conv2d(a, k, **kw))
                t[algorithm] = timed(fn, xp, wp, quick=dry_run)
            for dtype, name in ((jnp.bfloat16, "bf16"), (jnp.int8, "int8")):
                args = (
                    _xla_conv(dtype, stride),
                    jnp.sign(x).astype(dtype),
                    jnp.sign(w).astype(dtype),
                )
                t[name] = _or_nan(functools.partial(timed, *args, quick=dry_run))
            rows.append((f"conv {size}×{size}×{cin}→{cout} /{stride}", batch, t))
        a = jax.random.normal(key, (batch, k), jnp.float32)
        b = jax.random.normal(key, (k, k), jnp.float32)
        pa, pb = bitpack.pack(a), bitpack.pack(b.T)
        t = {}
        for algorithm in ALGORITHMS:
            opts = pallas_options(algorithm)
            fn = jax.jit(lambda a, b, o=opts: xnor.xnor_matmul(a, b, backend=backend, pallas=o))
            t[algorithm] = timed(fn, pa, pb, quick=dry_run)
        for dtype, name in ((jnp.bfloat16, "bf16"), (jnp.int8, "int8")):
            args = _xla_matmul(dtype), jnp.sign(a).astype(dtype), jnp.sign(b).astype(dtype)
            t[name] = _or_nan(functools.partial(timed, *args, quick=dry_run))
        rows.append((f"{'GEMV' if batch == 1 else 'matmul'} {batch}×{k}·{k}×{k}", batch, t))
    return rows


def end_to_end_rows(dry_run: bool):
    width, size = (0.125, 8) if dry_run else (1.0, 32)
    rows = []
    for batch in (1,) if dry_run else (1, 16):
        x = jax.random.normal(jax.random.key(0), (batch, size, size, 3))
        floating, float_vars, packed = bench.cifar_resnet18(x, width)
        bf16_vars = jax.tree.map(lambda v: v.astype(jnp.bfloat16), float_vars)
        float_fn = jax.jit(
            lambda v, x, model=floating: model.apply(v, x.astype(jnp.bfloat16), train=False)
        )
        run_packed = functools.partial(packed, backend="interpret" if dry_run else "auto")
        t = dict(
            auto=timed(run_packed, x, quick=dry_run),
            bf16=timed(float_fn, bf16_vars, x, quick=dry_run),
        )
        rows.append((f"CIFAR ResNet-18 packed (width {width}, {size}×{size})", batch, t))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, interpret mode, tiny")
    args = parser.parse_args(argv)
    platform = jax.default_backend()
    if not args.dry_run and platform == "cpu":
        print("device_check needs a GPU or TPU; on CPU run it with --dry-run.", file=sys.stderr)
        return 2
    backend = "interpret" if args.dry_run else "pallas"
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # jax 0.11: Pallas Triton
    start = time.perf_counter()
    checks = check_kernels(backend, args.dry_run)
    failed = [name for name, same in checks if not same]
    rows = speed_rows(backend, args.dry_run) + end_to_end_rows(args.dry_run)
    device = jax.devices()[0]
    print(
        f"device: {device.device_kind} ({platform}), jax {jax.__version__}, backend {backend}"
        f"{' (dry run: timings mean nothing)' if args.dry_run else ''}\n"
    )
    print(
        "| item | batch | popcount ms | dot ms | auto ms | XLA bf16 ms | XLA int8 ms "
        "| bf16 / best binary |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    verdict = "all bit-exact" if not failed else f"{len(failed)} NOT bit-exact: {failed}"
    print(f"| kernels vs jnp reference ({len(checks)} cases) | | | | | | | {verdict} |")
    for name, batch, t in rows:
        binary = [t[a] for a in ("popcount", "dot", "auto") if a in t]
        cells = [f"{1e3 * t[c]:.3f}" if c in t else "" for c in ("popcount", "dot", "auto")]
        cells += [f"{1e3 * t[c]:.3f}" if c in t else "" for c in ("bf16", "int8")]
        ratio = t["bf16"] / min(binary)
        print(f"| {name} | {batch} | {' | '.join(cells)} | {ratio:.2f}× |", flush=True)
    print(f"\n({time.perf_counter() - start:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
