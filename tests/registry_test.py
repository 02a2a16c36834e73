"""The shared name → factory registry and its call-string parser."""

import pytest

from bnnlab import registry


def test_parse_spec():
    assert registry.parse_spec("recu") == ("recu", {})
    assert registry.parse_spec(" dorefa(k_bit=2, mode='weights') ") == (
        "dorefa",
        {"k_bit": 2, "mode": "weights"},
    )
    assert registry.parse_spec("f(a=(1, 2), b=None, c=-0.5)") == (
        "f",
        {"a": (1, 2), "b": None, "c": -0.5},
    )


@pytest.mark.parametrize(
    "spec,match",
    [
        ("recu(", "Cannot parse 'recu\\('"),
        ("recu(0.9)", "keyword arguments only"),
        ("recu(tau=x)", "must be a literal"),
        ("a.b", "expected 'name'"),
        ("f(**k)", "'\\*\\*' is not allowed"),
    ],
)
def test_parse_errors(spec, match):
    with pytest.raises(ValueError, match=match):
        registry.parse_spec(spec)


def test_registry_register_get_and_errors():
    reg = registry.Registry("widget")

    @reg.register("box")
    def make_box(size=1):
        return ("box", size)

    assert reg.available() == ["box"]
    assert reg.get("box(size=3)") == ("box", 3)
    assert reg.get("box(size=3)", size=4) == ("box", 4)
    with pytest.raises(ValueError, match=r"Unknown widget 'bag'\. Available: box\."):
        reg.get("bag")
    with pytest.raises(ValueError, match="Bad arguments for widget 'box'"):
        reg.get("box", colour="red")
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("box")(make_box)
