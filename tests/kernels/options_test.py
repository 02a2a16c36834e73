"""Per-backend options: the defaults are the ops' former keyword defaults, every bad value is
refused where it is written with a ValueError naming it and the allowed values, the classes
work as the jitted ops need them (PallasOptions hashable and static, NativeOptions a pytree
with a static ``isa``), and each op reads only the options of the backend it runs."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnlab import kernels
from bnnlab.kernels import bitpack, cpu, options, xnor

from kernel_cases import CONV_CASES, case_arrays


def test_defaults_are_the_former_keyword_defaults():
    assert options.DEFAULT_PALLAS == options.PallasOptions(
        block_m=32, block_n=128, algorithm="auto", popcount="native"
    )
    assert options.DEFAULT_NATIVE == options.NativeOptions(isa="auto", b_panels=None)
    # One class, wherever it is reached from.
    assert kernels.PallasOptions is xnor.PallasOptions is options.PallasOptions
    assert kernels.NativeOptions is xnor.NativeOptions is options.NativeOptions


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: options.PallasOptions(algorithm="mma"), r"XNOR algorithm 'mma'.*'popcount'"),
        (lambda: options.PallasOptions(popcount="hw"), r"popcount 'hw'.*'native', 'swar'"),
        (lambda: options.PallasOptions(block_m=0), r"block_m must be a positive int, got 0"),
        (lambda: options.PallasOptions(block_n=-128), r"block_n .* got -128"),
        (lambda: options.PallasOptions(block_m="32"), r"block_m .* got '32'"),
        (lambda: options.PallasOptions(block_n=True), r"block_n .* got True"),
        (lambda: options.PallasOptions(block_m=32.0), r"block_m .* got 32.0"),
        (lambda: options.NativeOptions(isa="sse"), r"instruction set 'sse'.*'avx512'"),
    ],
)
def test_bad_values_name_themselves_and_the_choices(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_good_values():
    assert options.PallasOptions(block_m=np.int64(16)).block_m == 16  # NumPy ints are ints
    for algorithm in options.ALGORITHMS:
        assert options.PallasOptions(algorithm=algorithm).algorithm == algorithm
    for isa in cpu.ISAS:  # known to the kernel; whether this CPU runs it is checked at run time
        assert options.NativeOptions(isa=isa).isa == isa


def test_options_are_frozen_and_pallas_options_hash_as_a_static_argument():
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.DEFAULT_PALLAS.block_m = 8
    assert hash(options.PallasOptions(block_m=8)) == hash(options.PallasOptions(block_m=8))
    traced = []

    @functools.partial(jax.jit, static_argnames="o")
    def f(x, o):
        traced.append(o)
        return x * o.block_m

    f(1.0, o=options.PallasOptions(block_m=8))
    f(1.0, o=options.PallasOptions(block_m=8))  # equal options: the same compiled function
    assert len(traced) == 1


def test_native_options_are_a_pytree_with_a_static_isa():
    panels = jnp.zeros((1, 16), jnp.uint32)
    leaves, tree = jax.tree.flatten(options.NativeOptions("avx2", panels))
    assert len(leaves) == 1 and leaves[0] is panels
    assert jax.tree.leaves(options.NativeOptions()) == []
    assert tree != jax.tree.structure(options.NativeOptions("scalar", panels))
    # Unflattening (as jit, vmap and tree.map do) accepts any placeholder for the array.
    rebuilt = jax.tree.unflatten(tree, [object()])
    assert rebuilt.isa == "avx2"


def test_ops_take_only_the_options_classes():
    x, w = case_arrays(CONV_CASES[0])
    with pytest.raises(TypeError, match=r"pallas= takes a PallasOptions, got \{'block_m': 16\}"):
        xnor.xnor_conv2d(x, w, pallas={"block_m": 16})
    with pytest.raises(TypeError, match=r"native= takes a NativeOptions, got 'avx2'"):
        xnor.xnor_conv2d(x, w, native="avx2")
    with pytest.raises(TypeError, match="native= takes a NativeOptions"):
        options.check(options.DEFAULT_PALLAS, options.DEFAULT_PALLAS)


def test_conv_panels_come_with_the_kernel_not_the_options():
    x, w = case_arrays(CONV_CASES[0])
    native = options.NativeOptions(b_panels=jnp.zeros((2, 16), jnp.uint32))
    with pytest.raises(ValueError, match=r"native_layout.*b_panels is for xnor_matmul"):
        xnor.xnor_conv2d(x, w, native=native)


def test_each_backend_reads_only_its_own_options():
    rng = np.random.default_rng(7)
    a, b = rng.choice([-1, 1], size=(37, 75)), rng.choice([-1, 1], size=(19, 75))
    pa, pb = bitpack.pack(jnp.asarray(a, jnp.float32)), bitpack.pack(jnp.asarray(b, jnp.float32))
    odd = dict(
        pallas=options.PallasOptions(block_m=8, block_n=16, algorithm="popcount", popcount="swar"),
        native=options.NativeOptions(isa="scalar"),
    )
    backends = ["xla", "interpret"] + (["native"] if cpu.available() else [])
    for backend in backends:  # non-default options of every backend, one call
        got = xnor.xnor_matmul(pa, pb, backend=backend, **odd)
        np.testing.assert_array_equal(got, a @ b.T, err_msg=backend)
    # Pallas tiles smaller than the output: several programs per axis, the same integers.
    for blocks in [(8, 16), (16, 8), (64, 256)]:
        pallas = options.PallasOptions(*blocks, algorithm="dot")
        got = xnor.xnor_matmul(pa, pb, backend="interpret", pallas=pallas)
        np.testing.assert_array_equal(got, a @ b.T, err_msg=str(blocks))
