"""Backend selection: the per-platform table of every backend against the README's table
(written out by hand here), ``resolve`` and ``plan`` agreeing on it, the backend resolved once
per call and never again while lowering, and ``run`` tracing exactly the branch of the
platform being lowered for, with errors raised only there. Stub implementations record which
branch ran, so the tests need no Pallas compiler."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export as jax_export

from bnnlab.kernels import backend as backend_lib
from bnnlab.kernels import cpu, platforms, xnor

from kernel_cases import CONV_CASES, case_arrays

NATIVE_ON_CPU = "native" if cpu.available() else "xla"
PALLAS_ON_CPU = r"compile only for GPU/TPU.*interpret"
NATIVE_OFF_CPU = "native kernel runs on the CPU"
# (backend, platform) → the implementation an op with a native kernel runs, or the error.
TABLE = {
    ("auto", "cpu"): NATIVE_ON_CPU,
    ("auto", "cuda"): "pallas",
    ("auto", "rocm"): "pallas",
    ("auto", "tpu"): "pallas",
    ("auto", "metal"): "xla",
    ("pallas", "cpu"): (ValueError, PALLAS_ON_CPU),
    ("pallas", "cuda"): "pallas",
    ("pallas", "rocm"): "pallas",
    ("pallas", "tpu"): "pallas",
    ("pallas", "metal"): (ValueError, "No compiled Pallas kernel for platform"),
    ("native", "cpu"): "native" if cpu.available() else (RuntimeError, "unavailable"),
    ("native", "cuda"): (ValueError, NATIVE_OFF_CPU),
    ("native", "tpu"): (ValueError, NATIVE_OFF_CPU),
    **{("xla", p): "xla" for p in ("cpu", "cuda", "tpu", "metal")},
    **{("interpret", p): "interpret" for p in ("cpu", "cuda", "tpu", "metal")},
}


@pytest.mark.parametrize("backend,platform", list(TABLE), ids=str)
def test_resolve_and_plan_follow_the_table(backend, platform):
    expected = TABLE[backend, platform]
    choice = backend_lib.plan(backend, has_native=True).on(platform)
    for decide in (
        lambda: backend_lib.resolve(backend, has_native=True, platform=platform),
        choice.take,
    ):
        if isinstance(expected, str):
            assert decide() == expected
        else:
            with pytest.raises(expected[0], match=expected[1]):
                decide()


def test_ops_without_a_native_kernel():
    assert backend_lib.resolve("auto", platform="cpu") == "xla"  # AdderNet's ops
    with pytest.raises(ValueError, match="no native kernel"):
        backend_lib.resolve("native")
    with pytest.raises(ValueError, match="no native kernel"):
        backend_lib.plan("native")
    with pytest.raises(ValueError, match=r"'cuda'.*'auto'"):
        backend_lib.plan("cuda")


def test_resolve_defaults_to_the_host_platform():
    assert backend_lib.resolve("auto") in ("xla", "pallas")
    if jax.default_backend() == "cpu":
        with pytest.raises(ValueError, match="interpret"):
            backend_lib.resolve("pallas")
        if cpu.available():
            assert backend_lib.resolve("auto", has_native=True) == "native"


def test_plan_covers_every_platform_and_knows_when_there_is_no_choice():
    plan = backend_lib.plan("auto", has_native=True)
    assert set(plan.choices) == {*platforms.PLATFORMS, backend_lib.OTHER}
    assert plan.on("metal") is plan.choices[backend_lib.OTHER]
    assert backend_lib.plan("xla", True).uniform == "xla"
    assert backend_lib.plan("interpret", True).uniform == "interpret"
    for backend in ("auto", "pallas", "native"):
        assert backend_lib.plan(backend, True).uniform is None


def stub_op(backend: str, traced: list, has_native: bool = True):
    """An op by ``run`` whose implementations record that they were traced and add a marker:
    xla +1, native +2, pallas +10 (+100 interpreted)."""

    def xla(x):
        traced.append("xla")
        return x + 1

    def native(x):
        traced.append("native")
        return x + 2

    def pallas(platform, x):
        traced.append(f"pallas:{platform}")
        return x + (100 if platform == "interpret" else 10)

    def op(x):
        impl = native if has_native else None
        return backend_lib.run(backend, (x,), xla=xla, pallas=pallas, native=impl)

    return op


X = np.zeros(3, np.float32)


def lowered_branches(backend: str, lowering_platforms) -> list[str]:
    """The implementations that lowering ``stub_op(backend)`` for the platforms traces."""
    traced = []
    staged = jax.jit(stub_op(backend, traced)).trace(X)
    traced.clear()  # tracing ran ``xla`` once, abstractly, for the output structure
    staged.lower(lowering_platforms=tuple(lowering_platforms))
    return traced


@pytest.mark.parametrize(
    "backend,lowering_platforms,expected",
    [
        ("auto", ["cuda"], ["pallas:cuda"]),
        ("auto", ["tpu"], ["pallas:tpu"]),
        ("auto", ["cpu"], [NATIVE_ON_CPU]),
        ("auto", ["cpu", "cuda", "tpu"], [NATIVE_ON_CPU, "pallas:cuda", "pallas:tpu"]),
        ("pallas", ["cuda", "tpu"], ["pallas:cuda", "pallas:tpu"]),
        ("xla", ["cpu", "cuda"], []),  # no per-platform branches: traced once, with the call
        ("interpret", ["cuda"], []),
    ],
)
def test_run_traces_the_branch_of_each_lowered_platform(backend, lowering_platforms, expected):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # without the native library
        assert sorted(lowered_branches(backend, lowering_platforms)) == sorted(expected)


def test_run_eagerly_and_under_jit_on_the_host():
    traced = []
    if jax.default_backend() != "cpu":
        pytest.skip("checks the CPU host's branch")
    expected = X + (2 if cpu.available() else 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        np.testing.assert_array_equal(stub_op("auto", traced)(X), expected)
        np.testing.assert_array_equal(jax.jit(stub_op("auto", traced))(X), expected)
    np.testing.assert_array_equal(stub_op("xla", traced)(X), X + 1)
    np.testing.assert_array_equal(stub_op("interpret", traced)(X), X + 100)
    # Only the backends with a choice bind the per-platform primitive.
    assert "bnnlab_per_platform" in str(jax.make_jaxpr(stub_op("auto", []))(X))
    assert "bnnlab_per_platform" not in str(jax.make_jaxpr(stub_op("xla", []))(X))


def test_errors_are_raised_only_where_lowered():
    traced = []
    staged = jax.jit(stub_op("pallas", traced)).trace(X)  # tracing on any host is fine
    with pytest.raises(ValueError, match=PALLAS_ON_CPU):
        staged.lower(lowering_platforms=("cpu",))
    staged.lower(lowering_platforms=("cuda",))
    staged = jax.jit(stub_op("native", traced)).trace(X)
    with pytest.raises(ValueError, match=NATIVE_OFF_CPU):
        staged.lower(lowering_platforms=("tpu",))
    with pytest.raises(ValueError, match="no native kernel"):  # at the call: nothing to lower
        stub_op("native", traced, has_native=False)(X)


def test_a_multi_platform_export_carries_each_branch():
    traced = []
    exported = jax_export.export(jax.jit(stub_op("auto", traced)), platforms=("cpu", "cuda"))(X)
    assert {NATIVE_ON_CPU, "pallas:cuda"} <= set(traced)
    np.testing.assert_array_equal(exported.call(X), X + (2 if cpu.available() else 1))


def test_missing_native_library_warns_only_when_lowered_for_the_cpu(monkeypatch):
    reason = "backend_test: library not built"  # a reason of its own: warned once per process
    monkeypatch.setattr(cpu, "_load", lambda: (None, reason))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert lowered_branches("auto", ["cuda"]) == ["pallas:cuda"]
    with pytest.warns(RuntimeWarning, match=reason):
        assert lowered_branches("auto", ["cpu"]) == ["xla"]


def counting_choices(monkeypatch) -> list:
    calls = []
    choose = backend_lib._choose
    monkeypatch.setattr(
        backend_lib, "_choose", lambda *a: calls.append(a[2]) or choose(*a), raising=True
    )
    return calls


def test_each_call_resolves_its_backend_once(monkeypatch):
    calls = counting_choices(monkeypatch)
    staged = jax.jit(stub_op("auto", [])).trace(X)
    assert sorted(calls) == sorted([*platforms.PLATFORMS, backend_lib.OTHER])  # one plan
    calls.clear()
    staged.lower(lowering_platforms=("cpu", "cuda", "tpu"))
    assert calls == []  # lowering only takes the plan's choices


def test_a_conv_resolves_its_backend_once(monkeypatch):
    # The real op, both its branches lowered (native CPU call and Pallas Triton).
    x, w = case_arrays(CONV_CASES[1])
    calls = counting_choices(monkeypatch)
    conv = jax.jit(lambda x, w: xnor.xnor_conv2d(x, w, strides=(2, 2), pad_value=0.0))
    staged = conv.trace(jnp.asarray(x), jnp.asarray(w))
    assert len(calls) == len(platforms.PLATFORMS) + 1
    calls.clear()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # jax 0.11: Pallas Triton
        with platforms.cross_lowering_target(("cpu", "cuda")):
            staged.lower(lowering_platforms=("cpu", "cuda"))
    assert calls == []
