"""Learning-rate schedules against the papers' formulas, and the training clock."""

import math

import numpy as np
import pytest

from bnnlab import config_lib
from bnnlab.train import schedule


def lr_at(config, epochs, steps_per_epoch=10, total_epochs=600):
    fn = schedule.learning_rate_fn(config, steps_per_epoch, total_epochs * steps_per_epoch)
    return np.asarray([fn(int(e * steps_per_epoch)) for e in epochs])


def test_recu_warmup_cosine_matches_reference():
    c = config_lib.base()
    c.lr, c.warmup_epochs = 0.1, 5
    epochs = [0, 1, 4, 5, 100, 300, 599]
    # PyTorch reference: lr·(t+1)/5 for t < 5, then CosineAnnealingLR(T_max = T − 4) from t = 4.
    expected = [
        0.1 * (t + 1) / 5 if t < 5 else 0.05 * (1 + math.cos(math.pi * (t - 4) / 596))
        for t in epochs
    ]
    np.testing.assert_allclose(lr_at(c, epochs), expected, rtol=1e-5, atol=1e-9)
    # Epoch granularity: the lr is constant within an epoch.
    assert lr_at(c, [100.0, 100.9])[0] == lr_at(c, [100.0, 100.9])[1]


def test_adder_cosine_and_linear_and_piecewise():
    c = config_lib.base()
    c.lr, c.warmup_epochs = 0.1, 0
    np.testing.assert_allclose(
        lr_at(c, [0, 100, 399], total_epochs=400),
        [0.05 * (1 + math.cos(math.pi * t / 400)) for t in (0, 100, 399)],
        rtol=1e-5,
        atol=1e-8,
    )
    c.schedule, c.schedule_unit, c.lr = "linear", "step", 1e-3
    np.testing.assert_allclose(
        lr_at(c, [0, 64, 128], total_epochs=256), [1e-3, 7.5e-4, 5e-4], rtol=1e-5
    )
    c.schedule, c.schedule_unit = "piecewise", "epoch"
    c.lr_boundaries, c.lr_values = (40, 80), (5e-3, 1e-3, 5e-4)
    np.testing.assert_allclose(
        lr_at(c, [0, 39, 40, 79, 80, 199], total_epochs=200),
        [5e-3, 5e-3, 1e-3, 1e-3, 5e-4, 5e-4],
        rtol=1e-6,
    )


def test_released_epoch_offsets():
    """AdderNet's loop trains epochs e = 1 … 399 at 0.05·(1 + cos(πe/400)); ReActNet's and
    Bi-Real's LambdaLR(1 − e/T) is stepped before each epoch, so epoch t trains at lr(t + 1)."""
    c = config_lib.base()
    c.lr, c.warmup_epochs, c.lr_epoch_offset, c.lr_schedule_epochs = 0.1, 0, 1, 400
    released = [0.05 * (1 + math.cos(math.pi * e / 400)) for e in range(1, 400)]
    np.testing.assert_allclose(
        lr_at(c, range(399), total_epochs=399), released, rtol=1e-5, atol=1e-8
    )
    c = config_lib.base()
    config_lib.adam_linear(c, lr=2.5e-3)
    epochs = [0, 0.5, 1, 127]
    # LambdaLR: constructing it sets lr·(1 − 0/T); step() at each epoch's start moves it on.
    expected = [2.5e-3 * (1 - (int(t) + 1) / 128) for t in epochs]
    np.testing.assert_allclose(lr_at(c, epochs, total_epochs=128), expected, rtol=1e-5, atol=1e-9)
    assert lr_at(c, [127], total_epochs=128)[0] == 0.0


@pytest.mark.parametrize("unit", ["epoch", "step"])
def test_progress_and_epoch(unit):
    clock = schedule.Schedule(steps_per_epoch=10, total_steps=40, unit=unit, lr=None)
    for step in (0, 5, 10, 25, 39, 40, 55):
        epoch = step // 10 if unit == "epoch" else step / 10
        assert float(clock.epoch(step)) == pytest.approx(epoch)
        assert float(clock.progress(step)) == pytest.approx(min(epoch / 4, 1.0))


def test_from_config_and_eval_cadence():
    c = config_lib.base()
    c.num_epochs, c.total_steps = 3, -1
    clock = schedule.Schedule.from_config(c, steps_per_epoch=7)
    assert clock.total_steps == 21 and clock.unit == c.schedule_unit
    c.total_steps = 16  # ends mid-epoch: evaluated at the end too
    clock = schedule.Schedule.from_config(c, steps_per_epoch=7)
    assert [s for s in range(1, 17) if clock.evaluates_at(s, 1)] == [7, 14, 16]
    assert [s for s in range(1, 17) if clock.evaluates_at(s, 2)] == [14, 16]
