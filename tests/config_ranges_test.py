"""Every numeric config key out of range is refused by validation, naming key, value and what
is allowed, before any data or compute."""

import math

import pytest

from bnnlab import config_lib, train
from bnnlab.config_ranges import Range

import recipes

CASES = [
    ("batch_size", 0, "batch_size = 0: must be an integer >= 1"),
    ("batch_size", -64, "batch_size = -64"),
    ("eval_batch_size", 0, "eval_batch_size = 0"),
    ("eval_batch_size", -5, "eval_batch_size = -5"),
    ("model.width", 0.0, r"model\.width = 0\.0: must be a finite number > 0"),
    ("model.width", -0.5, r"model\.width = -0\.5"),
    ("lr", -0.1, r"lr = -0\.1: must be a finite number > 0"),
    ("lr", math.nan, "lr = nan"),
    ("lr", math.inf, "lr = inf"),
    ("num_epochs", 0, "num_epochs = 0"),
    ("num_epochs", -3, "num_epochs = -3"),
    ("total_steps", 0, r"total_steps = 0: .* or -1 \(num_epochs epochs\)"),
    ("momentum", 2.0, r"momentum = 2\.0: must be a finite number in \[0, 1\)"),
    ("b2", 1.0, r"b2 = 1\.0"),
    ("label_smoothing", 2.0, "label_smoothing = 2.0"),
    ("weight_decay", -1.0, "weight_decay = -1.0"),
    ("log_every_steps", -1, "log_every_steps = -1"),
    ("eval_every_epochs", -1, "eval_every_epochs = -1"),
    ("checkpoint_every_steps", -4, "checkpoint_every_steps = -4"),
    ("diagnostics_every_steps", -1, r"diagnostics_every_steps = -1: .* or 0 \(off\)"),
    ("keep_checkpoints", 0, "keep_checkpoints = 0"),
    ("seed", -1, "seed = -1"),
    ("crop_padding", -1, "crop_padding = -1"),
    ("warmup_epochs", -2, "warmup_epochs = -2"),
    ("data_workers", -2, r"data_workers = -2: .* or -1 \(one per CPU core but one\)"),
    ("grad_clip_norm", -1.0, r"grad_clip_norm = -1\.0: .* or None \(unset\)"),
    ("image_size", 0, "image_size = 0"),
    ("distill_weight", 1.5, "distill_weight = 1.5"),
    ("adder_eta", -0.2, "adder_eta = -0.2"),
    ("rrc_scale", (0.5, 0.2), "rrc_scale = "),
    ("lr_boundaries", (20, 10), "lr_boundaries = "),
    ("mesh", ("data",), "must be \\(axis name, size\\) pairs"),  # --config.mesh=data
    ("quant.pad_value", 0.5, r"quant\.pad_value = 0\.5 is not one of"),
    ("model.widht", 0.5, r"model\.widht \(did you mean 'model\.width'\?\)"),
]


def smoke(key, value):
    c = recipes.config("smoke")
    if key == "lr_boundaries":
        c.schedule, c.lr_values = "piecewise", (0.1, 0.01, 0.001)
    node, _, leaf = key.rpartition(".")
    target = c[node] if node else c
    with target.unlocked() if hasattr(target, "unlocked") else _null():
        target[leaf] = value
    return c


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.parametrize("key,value,match", CASES, ids=[f"{k}={v}" for k, v, _ in CASES])
def test_out_of_range_values_are_refused(key, value, match):
    with pytest.raises(ValueError, match=match):
        config_lib.validate(smoke(key, value))


def test_every_recipe_is_in_range():
    for name in ("simaN_r18", "recu_r18", "adder_r20", "rbnn_reactnet", "smoke"):
        for arg in (None, "runlocal"):
            config_lib.validate(recipes.config(name, arg))


def test_refused_before_any_data_or_compute(tmp_path):
    with pytest.raises(ValueError, match="keep_checkpoints = 0"):
        train.train_and_evaluate(smoke("keep_checkpoints", 0), tmp_path)
    assert not any(tmp_path.iterdir())


def test_range_text_and_special_values():
    r = Range(low=1, integer=True, special=((-1, "all"),))
    assert r.ok(-1) and r.ok(5) and not r.ok(0) and not r.ok(1.5) and not r.ok(True)
    assert r.allowed() == "an integer >= 1, or -1 (all)"
    assert Range(low=0, high=1, open_high=True).allowed() == "a finite number in [0, 1)"
