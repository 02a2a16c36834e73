"""The quantizer registry (``bnnlab.quant.get``, ``available``, ``resolve``): every method by
name, call strings, and the errors for unknown names and bad arguments."""

import pytest

from bnnlab import quant

ALL = quant.available()


def test_available_is_sorted_and_complete():
    assert ALL == sorted(ALL)
    for name in [
        "ste_sign",
        "approx_sign",
        "swish_sign",
        "ste_heaviside",
        "magnitude_aware_sign",
        "xnor_sign",
        "dorefa",
        "lsq",
        "ir_net",
        "ede_sign",
        "rbnn_sign",
        "recu",
        "recu_act",
        "siman",
        "siman_act",
        "identity",
    ]:
        assert name in ALL


def test_unknown_name_lists_available():
    with pytest.raises(ValueError, match=r"Unknown quantizer 'sgn'\. Available: approx_sign, "):
        quant.get("sgn")


def test_bad_arguments():
    with pytest.raises(ValueError, match="Bad arguments for quantizer 'ste_sign'"):
        quant.get("ste_sign", bits=3)
    with pytest.raises(TypeError, match=r"Expected a bnnlab\.quant\.Quantizer"):
        quant.resolve(3)


def test_call_string_equals_kwargs():
    assert quant.get("dorefa(k_bit=3, mode='weights')") == quant.get(
        "dorefa", k_bit=3, mode="weights"
    )
    assert quant.get("recu(tau_min=0.9)", tau_max=0.95) == quant.ReCU(tau_min=0.9, tau_max=0.95)
