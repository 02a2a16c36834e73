"""``kernels.platforms``: every public kernel op lowers for GPU (Pallas Triton) and TPU (Mosaic)
from this CPU host, on the kernel suite's shapes, with ``backend="pallas"`` and ``"auto"``;
"auto" lowers for the CPU to the native custom call; a multi-platform export carries each
platform's kernel; the per-platform primitive under vmap and eagerly; the helpers. Lowering
runs Pallas's GPU/TPU compilers up to the custom call, so a change that breaks either fails
here, without the hardware."""

import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export as jax_export

from bnnlab.kernels import adder, bitpack, cpu, platforms, xnor

from kernel_cases import CONV_CASES, case_arrays

KERNEL_CALL = {"cuda": "__gpu$xla.gpu.triton", "tpu": "tpu_custom_call"}
NATIVE_CALLS = (cpu.TARGET, cpu.PANELS_TARGET, cpu.CONV_TARGET)
MATMULS = [(1, 1, 1), (5, 7, 31), (33, 129, 100), (64, 64, 576)]


def custom_calls(text: str) -> set[str]:
    return set(re.findall(r"custom_call @([\w$.]+)", text))


def lower(fn, *args, platforms_=("cuda",)) -> set[str]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # jax 0.11: Pallas Triton
        return custom_calls(platforms.lower_text(fn, *args, platforms=platforms_))


@pytest.fixture(scope="module", params=["cuda", "tpu"])
def platform(request):
    return request.param


@pytest.mark.parametrize("backend", ["pallas", "auto"])
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv_lowers(case, backend, platform):
    x, w = case_arrays(case)
    *_, stride, padding, pad_value = case

    def conv(x, w):
        return xnor.xnor_conv2d(
            x, w, strides=(stride, stride), padding=padding, pad_value=pad_value, backend=backend
        )

    calls = lower(conv, x, w, platforms_=(platform,))
    assert KERNEL_CALL[platform] in calls
    assert not calls & set(NATIVE_CALLS)


@pytest.mark.parametrize("backend", ["pallas", "auto"])
@pytest.mark.parametrize("algorithm", ["popcount", "dot"])
@pytest.mark.parametrize("m,n,k", MATMULS)
def test_matmul_lowers(m, n, k, algorithm, backend, platform):
    rng = np.random.default_rng(k)
    a = bitpack.pack(jnp.asarray(rng.normal(size=(m, k)), jnp.float32))
    b = bitpack.pack(jnp.asarray(rng.normal(size=(n, k)), jnp.float32))
    pallas = xnor.PallasOptions(algorithm=algorithm)
    fn = lambda a, b: xnor.xnor_matmul(a, b, backend=backend, pallas=pallas)  # noqa: E731
    assert KERNEL_CALL[platform] in lower(fn, a, b, platforms_=(platform,))


@pytest.mark.parametrize("algorithm", ["popcount", "dot"])
@pytest.mark.parametrize("pad_value", [0.0, 1.0])
def test_fused_transform_and_packed_output_lower(pad_value, algorithm, platform):
    x, w = case_arrays(CONV_CASES[1])
    rng = np.random.default_rng(5)
    transform = xnor.OutputTransform(
        jnp.asarray(rng.normal(size=w.shape[-1]), jnp.float32),
        jnp.asarray(rng.normal(size=w.shape[-1]), jnp.float32),
        (-20.0, 15.0),
    )

    def conv(x, w, transform):
        return xnor.xnor_conv2d(
            x,
            w,
            transform,
            strides=(2, 2),
            pad_value=pad_value,
            packed_output=True,
            backend="pallas",
            pallas=xnor.PallasOptions(algorithm=algorithm),
        )

    assert KERNEL_CALL[platform] in lower(conv, x, w, transform, platforms_=(platform,))


@pytest.mark.parametrize("backend", ["pallas", "auto"])
@pytest.mark.parametrize("r,k,o", [(1, 1, 1), (7, 27, 5), (70, 100, 130), (33, 576, 16)])
def test_adder_distance_lowers(r, k, o, backend, platform):
    rng = np.random.default_rng(r)
    p = rng.normal(size=(r, k)).astype(np.float32)
    f = rng.normal(size=(k, o)).astype(np.float32)
    calls = lower(lambda p, f: adder.distance(p, f, backend), p, f, platforms_=(platform,))
    assert KERNEL_CALL[platform] in calls


def test_adder_layer_gradient_lowers(platform):
    # The layer's forward runs the kernel; its custom backward is XLA on every platform.
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 5)).astype(np.float32)
    f = np.random.default_rng(1).normal(size=(3, 3, 5, 4)).astype(np.float32)
    loss = lambda x, f: jnp.sum(adder.adder_conv2d(x, f, (1, 1), "SAME", "auto") ** 2)  # noqa: E731
    assert KERNEL_CALL[platform] in lower(jax.grad(loss, (0, 1)), x, f, platforms_=(platform,))


@pytest.mark.xdist_group("lowering_export")  # one worker builds the export fixture
@pytest.mark.parametrize("backend", ["pallas", "auto"])
def test_export_inference_lowers(packed_model, backend, platform):
    packed, images = packed_model
    calls = lower(lambda images: packed(images, backend=backend), images, platforms_=(platform,))
    assert KERNEL_CALL[platform] in calls
    assert not calls & set(NATIVE_CALLS)


@pytest.fixture(scope="module")
def packed_model(tmp_path_factory):
    from bnnlab import export, models

    quant = dict(kernel="siman", inputs="siman_act", scale="mean_abs", pad_value=0.0)
    ref = dict(name="resnet18_cifar", num_classes=10, quant=quant, kwargs=dict(width=0.125))
    model = models.from_ref(ref)
    images = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype(np.float32)
    variables = jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(images)
    path = tmp_path_factory.mktemp("export") / "model.npz"
    export.export(ref, variables, images.shape[1:], path)
    return export.load(path), images


def test_auto_lowers_to_the_native_call_on_cpu():
    if not cpu.available():
        pytest.skip(f"native kernel unavailable: {cpu.unavailable_reason()}")
    x, w = case_arrays(CONV_CASES[0])
    calls = lower(lambda x, w: xnor.xnor_conv2d(x, w), x, w, platforms_=("cpu",))
    assert calls & set(NATIVE_CALLS)
    assert not calls & set(KERNEL_CALL.values())


def test_pallas_errors_only_when_compiled_for_the_cpu():
    x, w = case_arrays(CONV_CASES[0])
    conv = lambda x, w: xnor.xnor_conv2d(x, w, backend="pallas")  # noqa: E731
    traced = jax.jit(conv).trace(x, w)  # tracing on this CPU host is fine
    with pytest.raises(ValueError, match=r"compile only for GPU/TPU.*interpret"):
        traced.lower(lowering_platforms=("cpu",))
    with pytest.raises(ValueError, match="compile only for GPU/TPU"):
        conv(x, w)  # eagerly on the CPU host
    native = lambda x, w: xnor.xnor_conv2d(x, w, backend="native")  # noqa: E731
    with pytest.raises(ValueError, match="native kernel runs on the CPU"):
        lower(native, x, w, platforms_=("cuda",))


def test_one_export_carries_every_platforms_kernel():
    x, w = case_arrays(CONV_CASES[1])
    conv = jax.jit(lambda x, w: xnor.xnor_conv2d(x, w, strides=(2, 2), pad_value=0.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with platforms.cross_lowering_target(("cpu", "cuda", "tpu")):
            exported = jax_export.export(
                conv,
                platforms=("cpu", "cuda", "tpu"),
                disabled_checks=platforms.export_safety_checks(),
            )(x, w)
    calls = custom_calls(exported.mlir_module())
    assert {KERNEL_CALL["cuda"], KERNEL_CALL["tpu"]} <= calls
    if cpu.available():
        assert calls & set(NATIVE_CALLS)
    # ... and the same export runs here, on its CPU branch.
    np.testing.assert_array_equal(
        exported.call(x, w), xnor.xnor_conv2d(x, w, strides=(2, 2), pad_value=0.0, backend="xla")
    )


def test_per_platform_under_vmap_and_eagerly():
    rng = np.random.default_rng(0)
    a = bitpack.pack(jnp.asarray(rng.normal(size=(3, 4, 70)), jnp.float32))
    b = bitpack.pack(jnp.asarray(rng.normal(size=(5, 70)), jnp.float32))
    expected = np.stack([xnor.xnor_matmul_reference(bitpack.PackedBits(w, 70), b) for w in a.words])
    batched = jax.vmap(lambda w: xnor.xnor_matmul(bitpack.PackedBits(w, 70), b))(a.words)
    np.testing.assert_array_equal(batched, expected)
    with pytest.raises(ValueError, match="Unknown platforms"):
        platforms.per_platform((a.words,), {"metal": lambda x: x}, lambda x: x)


def test_helpers():
    from jax.experimental.pallas import tpu as pl_tpu
    from jax.experimental.pallas import triton as pl_triton

    if jax.default_backend() == "cpu":
        assert platforms.host_platform() == "cpu"
    for gpu in platforms.GPU_PLATFORMS:  # the Triton backend, chosen here and nowhere else
        assert isinstance(platforms.compiler_params(gpu, num_warps=4), pl_triton.CompilerParams)
    assert isinstance(platforms.compiler_params("tpu"), pl_tpu.CompilerParams)
    with pytest.raises(ValueError, match=r"platform 'cpu'.*'cuda'"):
        platforms.compiler_params("cpu")
    assert len(platforms.export_safety_checks()) == len(platforms.UNGUARANTEED_CALLS)
