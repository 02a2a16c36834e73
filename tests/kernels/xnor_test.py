"""XNOR-popcount matmul and conv2d: every backend bit-exact against NumPy ±1 arithmetic and a
float convolution of the ±1 tensors over a randomized shape suite (K not a multiple of 32,
stride 2, SAME/VALID/explicit padding, +1 and zero padding, batch 1); the fused output
transform and packed output; the straight-through gradients against the float layer; shard_map.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from bnnlab import layers
from bnnlab.kernels import bitpack, cpu, xnor

from kernel_cases import CONV_CASES, case_arrays, numpy_conv, pads_of

BACKENDS = ["interpret", "xla"] + (["native"] if cpu.available() else [])
DOT = xnor.PallasOptions(algorithm="dot")  # the tensor-core path


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_conv_bit_exact(case, backend):
    x, w = case_arrays(case)
    *_, k, stride, padding, pad_value = case
    expected = numpy_conv(x, w, stride, pads_of(padding, x.shape, k, stride), pad_value)
    kwargs = dict(strides=(stride, stride), padding=padding, pad_value=pad_value)
    got = xnor.xnor_conv2d(jnp.asarray(x), jnp.asarray(w), backend=backend, **kwargs)
    assert got.dtype == jnp.int32
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(xnor.xnor_conv2d_reference(x, w, **kwargs), expected)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (5, 7, 31), (33, 129, 100), (64, 64, 576)])
def test_matmul_bit_exact(m, n, k, backend):
    rng = np.random.default_rng(k)
    a, b = rng.choice([-1, 1], size=(m, k)), rng.choice([-1, 1], size=(n, k))
    pa, pb = bitpack.pack(jnp.asarray(a, jnp.float32)), bitpack.pack(jnp.asarray(b, jnp.float32))
    got = xnor.xnor_matmul(pa, pb, backend=backend)
    np.testing.assert_array_equal(got, a @ b.T)
    np.testing.assert_array_equal(xnor.xnor_matmul_reference(pa, pb), a @ b.T)


@pytest.mark.parametrize("xp", [jnp, np], ids=["jnp", "np"])
def test_kernel_words_hand_worked(xp):
    # HWIO (1, 2, 33, 2): two taps of 33 channels → two words per tap, taps in (k_h, k_w) order.
    w = np.ones((1, 2, 33, 2), np.float32)
    w[0, 0, 0, 0] = w[0, 0, 32, 0] = -1  # filter 0, tap 0: channels 0 and 32
    w[0, 1, 1, 1] = -1  # filter 1, tap 1: channel 1
    w[0, 1, 5, 1] = 0.0  # sign(0) = +1: no bit
    expected = [[1, 1, 0, 0], [0, 0, 0b10, 0]]
    words = xnor.kernel_words(xp.asarray(w), xp)
    assert words.dtype == np.uint32
    np.testing.assert_array_equal(words, expected)
    np.testing.assert_array_equal(xnor.pack_kernel(jnp.asarray(w)).words, expected)


def test_swar_popcount_kernel_matches_native():
    rng = np.random.default_rng(1)
    pa = bitpack.pack(jnp.asarray(rng.normal(size=(9, 77)), jnp.float32))
    pb = bitpack.pack(jnp.asarray(rng.normal(size=(11, 77)), jnp.float32))
    native = xnor.xnor_matmul(pa, pb, backend="interpret")
    np.testing.assert_array_equal(
        xnor.xnor_matmul(pa, pb, backend="interpret", pallas=xnor.PallasOptions(popcount="swar")),
        native,
    )


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    "clamp,pad_value", [(None, 0.0), ((-20.0, 15.0), 0.0), ((-20.0, 15.0), 1.0)]
)
def test_output_transform_and_packed_output(backend, clamp, pad_value):
    case = CONV_CASES[1]
    x, w = case_arrays(case)
    kwargs = dict(strides=(2, 2), padding="SAME", pad_value=pad_value, backend=backend)
    rng = np.random.default_rng(5)
    mult = rng.normal(size=w.shape[-1]).astype(np.float32)
    bias = rng.normal(size=w.shape[-1]).astype(np.float32) * 10
    transform = xnor.OutputTransform(jnp.asarray(mult), jnp.asarray(bias), clamp)
    dots = np.asarray(xnor.xnor_conv2d(x, w, **kwargs), np.float32)
    expected = (dots if clamp is None else np.clip(dots, *clamp)) * mult + bias
    got = xnor.xnor_conv2d(x, w, transform, **kwargs)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)
    packed = xnor.xnor_conv2d(x, w, transform, packed_output=True, **kwargs)
    # Packed output: bit set exactly where the transformed value is negative (a threshold).
    np.testing.assert_array_equal(bitpack.unpack(packed), np.where(np.asarray(got) < 0, -1, 1))
    # ... and it feeds the next binary layer directly.
    w2 = rng.normal(size=(3, 3, w.shape[-1], 4)).astype(np.float32)
    chained = xnor.xnor_conv2d(packed, w2, backend=backend)
    np.testing.assert_array_equal(chained, xnor.xnor_conv2d(got, w2, backend=backend))


def test_matmul_transform_fused_in_kernel_matches_xla():
    rng = np.random.default_rng(2)
    pa = bitpack.pack(jnp.asarray(rng.normal(size=(40, 70)), jnp.float32))
    pb = bitpack.pack(jnp.asarray(rng.normal(size=(20, 70)), jnp.float32))
    t = xnor.OutputTransform(
        jnp.asarray(rng.normal(size=20)), jnp.asarray(rng.normal(size=20)), (-9.0, 9.0)
    )
    np.testing.assert_allclose(
        xnor.xnor_matmul(pa, pb, t, backend="interpret"),
        xnor.xnor_matmul(pa, pb, t, backend="xla"),
        rtol=1e-6,
    )


@pytest.mark.parametrize("pad_value", [0.0, 1.0])
@pytest.mark.parametrize("strides", [1, 2])
def test_conv_gradients_equal_float_ste_layer(pad_value, strides):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(2, 6, 6, 35)) * 1.5, jnp.float32)  # some |x| > 1
    w = jnp.asarray(rng.normal(size=(3, 3, 35, 6)) * 1.5, jnp.float32)
    g = jnp.asarray(rng.normal(size=(2, 6 // strides, 6 // strides, 6)), jnp.float32)
    layer = layers.QuantConv(
        6,
        (3, 3),
        strides=strides,
        use_bias=False,
        kernel_quantizer="ste_sign",
        input_quantizer="ste_sign",
        pad_value=pad_value,
    )

    def float_loss(x, w):
        return jnp.sum(layer.apply({"params": {"kernel": w}}, x) * g)

    def kernel_loss(x, w):
        y = xnor.binary_conv2d(x, w, (strides, strides), "SAME", pad_value, "xla")
        return jnp.sum(y * g)

    np.testing.assert_allclose(kernel_loss(x, w), float_loss(x, w), rtol=1e-6)
    for got, want in zip(
        jax.grad(kernel_loss, (0, 1))(x, w), jax.grad(float_loss, (0, 1))(x, w), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_dense_gradients_equal_float_ste_layer():
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(5, 70)) * 1.5, jnp.float32)
    w = jnp.asarray(rng.normal(size=(70, 9)) * 1.5, jnp.float32)
    layer = layers.QuantDense(
        9, use_bias=False, kernel_quantizer="ste_sign", input_quantizer="ste_sign"
    )

    def float_loss(x, w):
        return jnp.sum(jnp.sin(layer.apply({"params": {"kernel": w}}, x)))

    def kernel_loss(x, w):
        return jnp.sum(jnp.sin(xnor.binary_dense(x, w, "interpret")))

    np.testing.assert_allclose(kernel_loss(x, w), float_loss(x, w), rtol=1e-6)
    for got, want in zip(
        jax.grad(kernel_loss, (0, 1))(x, w), jax.grad(float_loss, (0, 1))(x, w), strict=True
    ):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_binary_conv_inside_a_differentiated_flax_model():
    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            w = self.param("w", nn.initializers.normal(1.0), (3, 3, 4, 8))
            return jnp.mean(xnor.binary_conv2d(x, w, (1, 1), "SAME", 0.0, "xla"))

    x = jnp.asarray(np.random.default_rng(6).normal(size=(2, 5, 5, 4)), jnp.float32)
    params = Net().init(jax.random.key(0), x)
    grads = jax.jit(jax.grad(lambda p: Net().apply(p, x)))(params)
    assert np.all(np.isfinite(grads["params"]["w"])) and np.any(grads["params"]["w"] != 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_conv_under_shard_map(backend):
    mesh = jax.make_mesh((8,), ("data",))
    x, w = case_arrays(CONV_CASES[0])
    x = np.concatenate([x] * 8)
    x[::2] *= -1  # shards differ

    @jax.jit
    def sharded(x, w):
        return jax.shard_map(
            lambda x, w: xnor.xnor_conv2d(x, w, backend=backend),
            mesh=mesh,
            in_specs=(P("data"), P()),
            out_specs=P("data"),
            check_vma=False,
        )(x, w)

    expected = numpy_conv(x, w, 1, [(1, 1), (1, 1)], 1.0)
    x = jax.device_put(x, jax.NamedSharding(mesh, P("data")))
    w = jax.device_put(w, jax.NamedSharding(mesh, P()))
    np.testing.assert_array_equal(sharded(x, w), expected)


def test_errors_name_the_value():
    x, w = case_arrays(CONV_CASES[0])
    with pytest.raises(ValueError, match=r"'cuda'.*auto"):
        xnor.xnor_conv2d(x, w, backend="cuda")
    with pytest.raises(ValueError, match=r"pad_value.*0.5"):
        xnor.xnor_conv2d(x, w, pad_value=0.5)
    with pytest.raises(ValueError, match=r"3 channels.*5"):
        xnor.xnor_conv2d(x, np.ones((3, 3, 5, 2), np.float32))
    with pytest.raises(ValueError, match="different K"):
        xnor.xnor_matmul(bitpack.pack(jnp.ones((2, 5))), bitpack.pack(jnp.ones((2, 6))))


@pytest.mark.parametrize("case", CONV_CASES, ids=str)
def test_tensor_core_path_bit_exact(case):
    # The unpack-to-int8 dot kernel (GPU tensor cores), interpreted: the same integers.
    x, w = case_arrays(case)
    *_, k, stride, padding, pad_value = case
    expected = numpy_conv(x, w, stride, pads_of(padding, x.shape, k, stride), pad_value)
    kwargs = dict(strides=(stride, stride), padding=padding, pad_value=pad_value)
    got = xnor.xnor_conv2d(x, w, backend="interpret", pallas=DOT, **kwargs)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (5, 7, 31), (33, 129, 100), (17, 9, 2100)])
def test_tensor_core_matmul_bit_exact_with_transform(m, n, k):
    # k = 2100: 66 words, three chunks of 32 words, most of the last one padding.
    rng = np.random.default_rng(k)
    a, b = rng.choice([-1, 1], size=(m, k)), rng.choice([-1, 1], size=(n, k))
    pa, pb = bitpack.pack(jnp.asarray(a, jnp.float32)), bitpack.pack(jnp.asarray(b, jnp.float32))
    got = xnor.xnor_matmul(pa, pb, backend="interpret", pallas=DOT)
    np.testing.assert_array_equal(got, a @ b.T)
    mult, bias = rng.normal(size=n).astype(np.float32), rng.normal(size=n).astype(np.float32)
    transform = xnor.OutputTransform(jnp.asarray(mult), jnp.asarray(bias), (-3.0, 5.0))
    got = xnor.xnor_matmul(pa, pb, transform, backend="interpret", pallas=DOT)
    np.testing.assert_allclose(got, np.clip(a @ b.T, -3, 5) * mult + bias, rtol=1e-6, atol=1e-5)


def test_algorithm_choice_by_platform_and_rows():
    choose = xnor.choose_algorithm
    assert choose("auto", "cuda", xnor.DOT_MIN_ROWS) == "dot"
    assert choose("auto", "cuda", xnor.DOT_MIN_ROWS - 1) == "popcount"  # GEMV-like
    assert choose("auto", "tpu", 10_000) == "popcount"
    assert choose("auto", "interpret", 10_000) == "popcount"
    assert choose("dot", "tpu", 1) == "dot"
    with pytest.raises(ValueError, match=r"'mma'.*popcount"):
        xnor.xnor_matmul(
            bitpack.pack(jnp.ones((2, 5))),
            bitpack.pack(jnp.ones((2, 5))),
            pallas=xnor.PallasOptions(algorithm="mma"),
        )
