"""The quantizer protocol's shared pieces: the encoded form's affine map, the progress rule,
the argument and input-rank checks, registration, and the base class's defaults."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnnlab import quant
from bnnlab.quant import base


def test_encoded_decode_is_codes_times_scale_plus_offset():
    codes = jnp.asarray([[0, 1, 2], [3, 2, 0]], jnp.uint8)
    enc = base.Encoded(codes, scale=jnp.asarray([0.5, 2.0, -1.0]), offset=jnp.float32(-1.0), bits=2)
    # Hand-worked: code · scale + offset, per column scale.
    expected = [[-1.0, 1.0, -3.0], [0.5, 3.0, -1.0]]
    np.testing.assert_array_equal(enc.decode(), expected)
    # A pytree of the three arrays; ``bits`` is static metadata, so it survives jit.
    assert len(jax.tree.leaves(enc)) == 3
    decoded, bits = jax.jit(lambda e: (e.decode(), e.bits))(enc)
    np.testing.assert_array_equal(decoded, expected)
    assert bits == 2


def test_signs_encoded_are_int8_signs_times_the_scale():
    b = jnp.asarray([[1.0, -1.0], [-1.0, 1.0]])
    enc = base.signs_encoded(b, jnp.asarray([3.0, 0.25]))
    assert enc.codes.dtype == jnp.int8 and enc.bits == 1
    np.testing.assert_array_equal(enc.codes, [[1, -1], [-1, 1]])
    np.testing.assert_array_equal(enc.decode(), [[3.0, -0.25], [-3.0, 0.25]])


def test_resolve_progress():
    assert float(base.resolve_progress(None)) == 1.0  # None: the end of the schedule
    assert float(base.resolve_progress(0.25)) == 0.25
    # Traced values cannot be checked, so they are clipped into [0, 1].
    clipped = jax.jit(base.resolve_progress)
    assert [float(clipped(p)) for p in (-0.5, 0.5, 1.5)] == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match=r"progress must be in \[0, 1\].*got -0.1"):
        base.resolve_progress(-0.1)


def test_progress_out_of_range():
    with pytest.raises(ValueError, match=r"progress must be in \[0, 1\].*got 2"):
        quant.get("recu")(jnp.ones((3, 3, 2, 4)), progress=2)


def test_argument_checks():
    for k_bit in (1, 8):
        base.check_bits("q", k_bit)
    for k_bit in (0, 9, 2.0, True):
        with pytest.raises(ValueError, match=r"q: k_bit must be an integer in \[1, 8\]"):
            base.check_bits("q", k_bit)
    with pytest.raises(ValueError, match=r"q: mode must be one of \('a', 'b'\), got 'c'"):
        base.check_choice("q", "mode", "c", ("a", "b"))
    with pytest.raises(ValueError, match="q: beta must be > 0, got 0"):
        base.check_positive("q", "beta", 0)
    base.require_kernel_rank("q", jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"output-channel axis last .*got shape \(3,\)"):
        base.require_kernel_rank("q", jnp.ones(3))
    base.require_batched("q", jnp.ones((2, 3)))
    with pytest.raises(ValueError, match=r"needs a batch axis first .*got shape \(\)"):
        base.require_batched("q", jnp.float32(1.0))


def test_register_names_the_class_and_refuses_a_second_registration():
    for name in quant.available():
        assert base.REGISTRY.factory(name).name == name

    class Duplicate(base.Quantizer):
        pass

    with pytest.raises(ValueError, match="quantizer 'ste_sign' is registered twice"):
        base.register("ste_sign")(Duplicate)
    assert base.REGISTRY.factory("ste_sign") is quant.SteSign


def test_base_class_defaults():
    @dataclasses.dataclass(frozen=True)
    class Plain(base.Quantizer):
        pass

    q, w = Plain(), jnp.arange(6.0).reshape(2, 3)
    assert q.precision == 1 and q.learnable == () and not q.stateful and q.weight_decay
    assert q.project(w, 0.5) is w  # identity projection
    assert q.schedule(0.5) == {} and q.init_learnable(w) == {}
    with pytest.raises(NotImplementedError, match="Plain is not stateful"):
        q.init_state(w)
    with pytest.raises(NotImplementedError, match="Plain is not stateful"):
        q.next_state(w)
