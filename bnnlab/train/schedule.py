"""Where a run is in its training, computed in one place: the epoch and the progress that
quantizer schedules (ReCU's τ, SiMaN's clip percentile, …) read, and the papers' learning-rate
schedules.

A ``Schedule`` is built once per run from its config and passed to every step; the steps read
the step counter from the train state, so no schedule value is a recompiling constant.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax.numpy as jnp

UNITS = ("epoch", "step")


def epoch_of(step, steps_per_epoch: int, unit: str):
    """Training time in epochs: whole epochs (the papers step schedules per epoch) or exact."""
    step = jnp.asarray(step, jnp.float32)
    if unit == "epoch":
        return jnp.floor(step / steps_per_epoch)
    return step / steps_per_epoch


def learning_rate_fn(config, steps_per_epoch: int, total_steps: int):
    """lr(step). Schedules (t = epoch + ``lr_epoch_offset``, T = ``lr_schedule_epochs`` or the
    run's length in epochs, w = warm-up epochs):

    * cosine: lr·(t+1)/w for t < w, then lr·½(1 + cos(π(t − w + 1)/(T − w + 1))) (ReCU/SiMaN's
      warm-up + CosineAnnealingLR(T_max = T − 4) for w = 5; plain cosine for w = 0, which with
      offset 1 and T = 400 over 399 epochs is AdderNet's 0.05·(1 + cos(πt/400)), t = 1 … 399).
    * linear: lr·(1 − t/T) (Bi-Real/ReActNet's Adam recipe; with offset 1, their scheduler
      stepped at the start of each epoch).
    * constant, or piecewise: ``lr_values[i]`` between ``lr_boundaries`` (in epochs).
    """
    run_epochs = total_steps / steps_per_epoch
    total_epochs = config.lr_schedule_epochs if config.lr_schedule_epochs > 0 else run_epochs
    w, base = config.warmup_epochs, config.lr

    def schedule(step):
        t = epoch_of(step, steps_per_epoch, config.schedule_unit) + config.lr_epoch_offset
        if config.schedule == "constant":
            lr = jnp.full_like(t, base)
        elif config.schedule == "linear":
            lr = base * jnp.maximum(0.0, 1.0 - t / total_epochs)
        elif config.schedule == "piecewise":
            index = jnp.sum(t >= jnp.asarray(config.lr_boundaries, jnp.float32))
            lr = jnp.asarray(config.lr_values, jnp.float32)[index]
        else:
            shift = max(w - 1, 0)
            cos = 0.5 * base * (1 + jnp.cos(math.pi * (t - shift) / (total_epochs - shift)))
            lr = cos if w == 0 else jnp.where(t < w, base * (t + 1) / w, cos)
        return lr

    return schedule


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A run's length and clock: ``progress(step)`` for the quantizers, ``lr(step)`` for the
    optimizer, both functions of the (traced) step counter."""

    steps_per_epoch: int
    total_steps: int
    unit: str  # "epoch": schedules move once per epoch, as the papers' code; "step": smoothly
    lr: Callable

    @classmethod
    def from_config(cls, config, steps_per_epoch: int) -> Schedule:
        """``config.total_steps`` if positive, else ``config.num_epochs`` epochs."""
        total = (
            config.total_steps if config.total_steps > 0 else config.num_epochs * steps_per_epoch
        )
        lr = learning_rate_fn(config, steps_per_epoch, total)
        return cls(steps_per_epoch, total, config.schedule_unit, lr)

    def epoch(self, step):
        return epoch_of(step, self.steps_per_epoch, self.unit)

    def progress(self, step):
        """Fraction of training done, as quantizer schedules see it, in [0, 1]."""
        total = self.total_steps / self.steps_per_epoch
        return jnp.clip(self.epoch(step) / total, 0.0, 1.0)

    def evaluates_at(self, done: int, eval_every_epochs: int) -> bool:
        """Whether the run evaluates after step ``done``: every ``eval_every_epochs`` epochs
        and at the end."""
        epochs, rest = divmod(done, self.steps_per_epoch)
        return done == self.total_steps or (rest == 0 and epochs % eval_every_epochs == 0)
