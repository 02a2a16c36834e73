"""Config parsing and validation, and the command-line entry point's handling of bad keys."""

import pathlib

import pytest

from bnnlab import config_lib

ROOT = pathlib.Path(__file__).parents[1]


def test_parse_arg():
    arg = config_lib.parse_arg(
        "runlocal,width=0.5,depth=34", runlocal=False, width=1.0, depth=18, imagenet=False
    )
    assert (arg.runlocal, arg.width, arg.depth, arg.imagenet) == (True, 0.5, 34, False)
    assert config_lib.parse_arg(None, runlocal=False).runlocal is False
    assert config_lib.parse_arg("runlocal=false", runlocal=True).runlocal is False
    with pytest.raises(ValueError, match=r"Unknown config argument 'runlcoal'.*Known: runlocal"):
        config_lib.parse_arg("runlcoal", runlocal=False)
    with pytest.raises(ValueError, match="needs a value"):
        config_lib.parse_arg("width", width=1.0)


def test_validate_names_unknown_keys_with_suggestions():
    c = config_lib.base()
    c.unlock()
    c.wieght_decay = 0.1
    c.quant.kernl = "recu"
    c.model.anything_goes = 1  # architecture overrides are checked by the model
    with pytest.raises(ValueError) as error:
        config_lib.validate(c)
    assert "wieght_decay (did you mean 'weight_decay'?)" in str(error.value)
    assert "quant.kernl (did you mean 'quant.kernel'?)" in str(error.value)
    assert "anything_goes" not in str(error.value)


@pytest.mark.parametrize(
    "field,value,match",
    [
        (
            "optimizer",
            "lamb",
            r"config\.optimizer = 'lamb' is not one of \('sgd', 'adam', 'adamw', 'case'\)",
        ),
        ("schedule", "step", "config.schedule = 'step' is not one of"),
        ("checkpoint_every_steps", 75, "must be a multiple of config.log_every_steps"),
        ("mesh", (("batch", -1),), "Unknown mesh axis 'batch'"),
        ("lr_values", (0.1,), "one more entry than config.lr_boundaries"),
    ],
)
def test_validate_values(field, value, match):
    c = config_lib.base()
    if field == "lr_values":
        c.schedule = "piecewise"
        c.lr_boundaries = (10,)
    c[field] = value
    with pytest.raises(ValueError, match=match):
        config_lib.validate(c)
