"""The allowed range of every numeric config key, checked before any data or compute.

Each check names the key, the value and what is allowed (and what 0 or -1 means where they
mean something), so ``batch_size=0`` fails at start-up with a sentence instead of a
ZeroDivisionError after compilation. ``config_lib.validate`` runs these after the key and
choice checks.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from typing import Any


@dataclasses.dataclass(frozen=True)
class Range:
    """A number in [low, high] (bounds optional; ``open_high`` excludes ``high``); ``special``
    values are allowed besides, each with what it means."""

    low: float | None = None
    high: float | None = None
    integer: bool = False
    open_low: bool = False
    open_high: bool = False
    special: tuple[tuple[Any, str], ...] = ()
    optional: bool = False  # None allowed (the key is unset)

    def allowed(self) -> str:
        kind = "an integer" if self.integer else "a finite number"
        low = "(" if self.open_low else "["
        high = ")" if self.open_high else "]"
        if self.low is not None and self.high is not None:
            text = f"{kind} in {low}{self.low}, {self.high}{high}"
        elif self.low is not None:
            text = f"{kind} {'>' if self.open_low else '>='} {self.low}"
        elif self.high is not None:
            text = f"{kind} {'<' if self.open_high else '<='} {self.high}"
        else:
            text = kind
        extras = [f"{v!r} ({meaning})" for v, meaning in self.special]
        if self.optional:
            extras.append("None (unset)")
        return text + (f", or {' or '.join(extras)}" if extras else "")

    def ok(self, value) -> bool:
        if value is None:
            return self.optional
        if any(value == v and type(value) is type(v) for v, _ in self.special):
            return True
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.integer and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return False
        return not (
            self.high is not None and (value >= self.high if self.open_high else value > self.high)
        )


POSITIVE_INT = Range(low=1, integer=True)
COUNT = Range(low=0, integer=True)
NON_NEGATIVE = Range(low=0)
FRACTION = Range(low=0, high=1, open_high=True)

RANGES: dict[str, Range] = {
    "seed": COUNT,
    "crop_padding": COUNT,
    "image_size": Range(low=1, integer=True, optional=True),
    "batch_size": POSITIVE_INT,
    "eval_batch_size": POSITIVE_INT,
    "data_workers": Range(low=0, integer=True, special=((-1, "one per CPU core but one"),)),
    "num_epochs": POSITIVE_INT,
    "total_steps": Range(low=1, integer=True, special=((-1, "num_epochs epochs"),)),
    "lr": Range(low=0, open_low=True),
    "binary_lr_scale": Range(low=0, open_low=True),
    "momentum": FRACTION,
    "b1": FRACTION,
    "b2": FRACTION,
    "warmup_epochs": COUNT,
    "lr_epoch_offset": COUNT,
    "lr_schedule_epochs": Range(low=1, integer=True, special=((-1, "num_epochs"),)),
    "weight_decay": NON_NEGATIVE,
    "grad_clip_norm": Range(low=0, open_low=True, optional=True),
    "label_smoothing": FRACTION,
    "adder_eta": NON_NEGATIVE,  # 0 = off
    "distill_weight": Range(low=0, high=1),
    "log_every_steps": POSITIVE_INT,
    "eval_every_epochs": POSITIVE_INT,
    "checkpoint_every_steps": POSITIVE_INT,
    "keep_checkpoints": POSITIVE_INT,
    "diagnostics_every_steps": Range(low=1, integer=True, special=((0, "off"),)),
    "model.width": Range(low=0, open_low=True),
}


def _get(config, dotted: str):
    node = config
    for part in dotted.split("."):
        if part not in node:
            return _MISSING
        node = node[part]
    return node


_MISSING = object()


def check_ranges(config) -> None:
    """Raises ValueError for the first numeric key out of its range."""
    for key, allowed in RANGES.items():
        value = _get(config, key)
        if value is _MISSING:
            continue
        if not allowed.ok(value):
            raise ValueError(f"config.{key} = {value!r}: must be {allowed.allowed()}.")
    _check_sequences(config)


def _check_sequences(config) -> None:
    scale = tuple(config.rrc_scale)
    if not (len(scale) == 2 and all(NON_NEGATIVE.ok(v) for v in scale)) or not (
        0 < scale[0] <= scale[1]
    ):
        raise ValueError(
            f"config.rrc_scale = {tuple(config.rrc_scale)!r}: must be (low, high) with "
            "0 < low <= high (fractions of the image area; above 1 retries as torchvision does, "
            "as SiMaN's and ReCU's ImageNet commands use 1.25)."
        )
    boundaries = list(config.lr_boundaries)
    if any(not Range(low=0).ok(b) for b in boundaries) or boundaries != sorted(boundaries):
        raise ValueError(
            f"config.lr_boundaries = {tuple(boundaries)!r}: must be increasing epochs >= 0."
        )
    if any(not NON_NEGATIVE.ok(v) for v in config.lr_values):
        raise ValueError(
            f"config.lr_values = {tuple(config.lr_values)!r}: must be finite numbers >= 0."
        )
    for entry in config.mesh:
        if not (isinstance(entry, (tuple, list)) and len(entry) == 2):
            raise ValueError(
                f"config.mesh = {config.mesh!r}: must be (axis name, size) pairs, e.g. "
                "(('data', -1),)."
            )


def unknown_model_keys(config, fields) -> list[str]:
    """``config.model`` keys that are not fields of the model's constructor, each with the
    closest field as a suggestion."""
    bad = []
    for key in config.model:
        if key not in fields:
            hint = difflib.get_close_matches(key, list(fields), n=1)
            bad.append(f"model.{key}" + (f" (did you mean 'model.{hint[0]}'?)" if hint else ""))
    return bad
