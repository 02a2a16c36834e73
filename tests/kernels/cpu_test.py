"""Native CPU XNOR kernel: every instruction-set path this CPU runs, forced one at a time,
bit-exact against NumPy on the conv shape suite and on matmuls that hit every micro-tile and
panel remainder and the multithreaded path; the XLA fallback when the library is missing."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnlab import export, models
from bnnlab.kernels import backend as backend_lib
from bnnlab.kernels import bitpack, cpu, xnor

from kernel_cases import CONV_CASES, case_arrays, numpy_conv, pads_of

ISAS = ["scalar", "avx2", "avx512"]


def require(isa):
    if not cpu.available():
        pytest.skip(f"native kernel not built: {cpu.unavailable_reason()}")
    if isa not in cpu.supported_isas():
        pytest.skip(f"this CPU has no {isa} path (supports {cpu.supported_isas()})")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize(
    "m,n,k",
    [
        (1, 1, 1),
        (3, 5, 31),  # one 32-bit word: the odd-word tail
        (6, 9, 64),
        (7, 17, 100),  # row and column remainders of the micro-tiles
        (33, 129, 576),  # ResNet 3×3×64 contraction
        (257, 131, 1000),  # large enough for the multithreaded path, with tails
        (16, 512, 4608),
    ],
)
def test_matmul_bit_exact(isa, m, n, k):
    require(isa)
    rng = np.random.default_rng(m * n + k)
    a, b = rng.choice([-1, 1], size=(m, k)), rng.choice([-1, 1], size=(n, k))
    pa, pb = bitpack.pack(jnp.asarray(a, jnp.float32)), bitpack.pack(jnp.asarray(b, jnp.float32))
    got = xnor.xnor_matmul(pa, pb, backend="native", native=xnor.NativeOptions(isa=isa))
    np.testing.assert_array_equal(got, a @ b.T)
    if isa != "scalar":  # the vector paths with weights laid out ahead of time
        native = xnor.NativeOptions(isa=isa, b_panels=cpu.panels(pb.words))
        got = xnor.xnor_matmul(pa, pb, backend="native", native=native)
        np.testing.assert_array_equal(got, a @ b.T)


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
def test_panel_layout_and_prepacked_weights(isa):
    require(isa)
    rng = np.random.default_rng(0)
    words = rng.integers(0, 2**32, size=(11, 5), dtype=np.uint32)
    panels = np.asarray(cpu.panels(jnp.asarray(words))).view(np.uint64).reshape(2, 3, 8)
    # Lane l of panel g, 64-bit word t: words[8g + l, 2t] | words[8g + l, 2t + 1] << 32.
    for g, t, lane in np.ndindex(2, 3, 8):
        row, lo = 8 * g + lane, 2 * t
        want = 0
        if row < 11:
            want = int(words[row, lo]) | (int(words[row, lo + 1]) << 32 if lo + 1 < 5 else 0)
        assert int(panels[g, t, lane]) == want
    for case in CONV_CASES:
        x, w = case_arrays(case)
        *_, k, stride, padding, pad_value = case
        kernel = xnor.native_layout(xnor.pack_kernel(jnp.asarray(w)))
        assert kernel.panels is not None
        got = xnor.xnor_conv2d(
            x,
            kernel,
            strides=(stride, stride),
            padding=padding,
            pad_value=pad_value,
            backend="native",
            native=xnor.NativeOptions(isa=isa),
        )
        expected = numpy_conv(x, w, stride, pads_of(padding, x.shape, k, stride), pad_value)
        np.testing.assert_array_equal(got, expected, err_msg=str(case))


@pytest.mark.parametrize("isa", ISAS)
def test_conv_suite_bit_exact(isa):
    require(isa)
    for case in CONV_CASES:
        x, w = case_arrays(case)
        *_, k, stride, padding, pad_value = case
        expected = numpy_conv(x, w, stride, pads_of(padding, x.shape, k, stride), pad_value)
        got = xnor.xnor_conv2d(
            x,
            w,
            strides=(stride, stride),
            padding=padding,
            pad_value=pad_value,
            backend="native",
            native=xnor.NativeOptions(isa=isa),
        )
        np.testing.assert_array_equal(got, expected, err_msg=str(case))


def test_every_cpu_runs_the_scalar_path():
    # (Which backend "auto" picks on the CPU: backend_test.)
    require("scalar")
    assert cpu.supported_isas()[0] == "scalar"


def test_errors():
    require("scalar")
    p = bitpack.pack(jnp.ones((2, 40)))
    with pytest.raises(ValueError, match="'sse'"):
        xnor.xnor_matmul(p, p, backend="native", native=xnor.NativeOptions(isa="sse"))
    missing = [isa for isa in ISAS if isa not in cpu.supported_isas()]
    if missing:  # a known instruction set this CPU lacks: refused when the kernel runs
        native = xnor.NativeOptions(isa=missing[0])
        with pytest.raises(ValueError, match="cannot run"):
            xnor.xnor_matmul(p, p, backend="native", native=native)


def test_fallback_without_the_library(monkeypatch, tmp_path):
    # A machine where the build failed (or without AVX-512 and a compiler): auto → XLA, with
    # one warning naming the reason, and identical results.
    reason = "test: library not built"
    monkeypatch.setattr(cpu, "_load", lambda: (None, reason))
    x, w = case_arrays(CONV_CASES[1])
    with pytest.warns(RuntimeWarning, match=reason):
        assert backend_lib.resolve("auto", has_native=True) == "xla"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # only one warning per process
        got = xnor.xnor_conv2d(x, w, strides=(2, 2), pad_value=0.0)
    np.testing.assert_array_equal(
        got, xnor.xnor_conv2d(x, w, strides=(2, 2), pad_value=0.0, backend="xla")
    )
    assert cpu.supported_isas() == ()
    with pytest.raises(RuntimeError, match=reason):
        backend_lib.resolve("native", has_native=True)


def test_native_under_jit_grad_and_shard_map():
    require("scalar")
    x, w = case_arrays(CONV_CASES[0])
    f = jax.jit(lambda x, w: jnp.sum(xnor.binary_conv2d(x, w, (1, 1), "SAME", 0.0, "native") ** 2))
    g = jax.grad(f, (0, 1))(x, w)
    h = jax.grad(
        lambda x, w: jnp.sum(xnor.binary_conv2d(x, w, (1, 1), "SAME", 0.0, "xla") ** 2), (0, 1)
    )(x, w)
    for a, b in zip(g, h, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)
    mesh = jax.make_mesh((8,), ("data",))
    xs = jax.device_put(np.concatenate([x, -x] * 4), jax.NamedSharding(mesh, jax.P("data")))
    sharded = jax.jit(
        jax.shard_map(
            lambda x: xnor.xnor_conv2d(x, w, backend="native"),
            mesh=mesh,
            in_specs=jax.P("data"),
            out_specs=jax.P("data"),
            check_vma=False,
        )
    )
    np.testing.assert_array_equal(
        sharded(xs), numpy_conv(np.asarray(xs), w, 1, [(1, 1), (1, 1)], 1.0)
    )


def test_export_runs_native_by_default(tmp_path, monkeypatch):
    require("scalar")
    calls = []
    for name in ("matmul", "matmul_panels", "conv2d_panels"):
        original = getattr(cpu, name)
        monkeypatch.setattr(cpu, name, lambda *a, _f=original, **k: calls.append(1) or _f(*a, **k))
    ref = dict(
        name="resnet_tiny",
        num_classes=10,
        quant=dict(kernel="ste_sign", inputs="ste_sign"),
        kwargs=dict(width=0.5),
    )
    model = models.from_ref(ref)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    variables = model.init(jax.random.key(1), x, train=False)
    variables = {k: v for k, v in variables.items() if k in ("params", "batch_stats")}
    export.export(ref, variables, (8, 8, 1), tmp_path / "m.npz")
    packed = export.load(tmp_path / "m.npz")
    got = packed(x)
    assert calls  # the native kernel ran
    np.testing.assert_allclose(got, packed(x, backend="xla"), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("isa", ["avx2", "avx512"])
@pytest.mark.parametrize("pad_value", [0.0, 1.0])
def test_in_kernel_patches_with_transform_and_packed_output(pad_value, isa):
    require(isa)
    x, w = case_arrays(CONV_CASES[1])
    rng = np.random.default_rng(3)
    t = xnor.OutputTransform(
        jnp.asarray(rng.normal(size=w.shape[-1]), jnp.float32),
        jnp.asarray(rng.normal(size=w.shape[-1]), jnp.float32),
        (-30.0, 30.0),
    )
    kernel = xnor.native_layout(xnor.pack_kernel(jnp.asarray(w)))
    kw = dict(strides=(2, 2), pad_value=pad_value, packed_output=True)
    native = xnor.NativeOptions(isa=isa)
    got = xnor.xnor_conv2d(
        bitpack.pack(jnp.asarray(x)), kernel, t, backend="native", native=native, **kw
    )
    want = xnor.xnor_conv2d(x, w, t, backend="xla", **kw)
    np.testing.assert_array_equal(got.words, want.words)


def test_without_avx512_the_avx2_path_serves_auto(monkeypatch, tmp_path):
    # What a CPU without AVX-512 VPOPCNTDQ runs: auto → the AVX2 path.
    require("avx2")
    monkeypatch.setenv("BNNLAB_CPU_ISA", "avx2")
    assert cpu.supported_isas() == ("scalar", "avx2")
    assert cpu.panel_isa() == "avx2"
    monkeypatch.setenv("BNNLAB_CPU_ISA", "scalar")
    assert cpu.panel_isa() is None
    assert xnor.native_layout(xnor.pack_kernel(jnp.ones((3, 3, 45, 6)))).panels is None
    monkeypatch.setenv("BNNLAB_CPU_ISA", "avx2")
    x, w = case_arrays(CONV_CASES[2])
    *_, k, stride, padding, pad_value = CONV_CASES[2]
    got = xnor.xnor_conv2d(x, w, strides=(stride, stride), padding=padding, pad_value=pad_value)
    expected = numpy_conv(x, w, stride, pads_of(padding, x.shape, k, stride), pad_value)
    np.testing.assert_array_equal(got, expected)
    with pytest.raises(ValueError, match="cannot run the 'avx512'"):
        cpu.matmul(jnp.zeros((1, 1), jnp.uint32), jnp.zeros((1, 1), jnp.uint32), 1, "avx512")
    monkeypatch.setenv("BNNLAB_CPU_ISA", "sse")
    with pytest.raises(ValueError, match="BNNLAB_CPU_ISA='sse'"):
        cpu.supported_isas()
