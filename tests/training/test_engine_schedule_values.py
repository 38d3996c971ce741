"""Schedules (DINOv2's recipe for pre-training): endpoints, warm-up, freeze and the teacher temperature."""

from __future__ import annotations

import math

import numpy as np
import pytest

from raddino.training.schedules import cosine_schedule, teacher_temperature_schedule


def test_learning_rate_warms_up_linearly_then_decays_by_cosine():
    schedule = cosine_schedule(1e-3, 1e-6, total_iters=110, warmup_iters=10)
    assert schedule.shape == (110,)
    assert schedule[0] == 0.0
    np.testing.assert_allclose(schedule[:10], np.linspace(0, 1e-3, 10))
    assert schedule[9] == pytest.approx(1e-3)  # warm-up ends at the base value
    assert schedule[10] == pytest.approx(1e-3)  # cosine starts there
    # Cosine step 50 of 100 is half-way: (base + final) / 2.
    assert schedule[60] == pytest.approx((1e-3 + 1e-6) / 2)
    assert schedule[-1] == pytest.approx(1e-6 + 0.5 * (1e-3 - 1e-6) * (1 + math.cos(math.pi * 99 / 100)))
    assert schedule[-1] < 1e-6 + 1e-6  # within a step of the final value
    assert np.all(np.diff(schedule[10:]) <= 0)


def test_weight_decay_and_momentum_grow_towards_their_final_values():
    weight_decay = cosine_schedule(0.04, 0.4, total_iters=1000)
    assert weight_decay[0] == pytest.approx(0.04)
    assert weight_decay[-1] == pytest.approx(0.4, abs=1e-5)
    assert np.all(np.diff(weight_decay) >= 0)
    momentum = cosine_schedule(0.992, 1.0, total_iters=1000)
    assert momentum[0] == pytest.approx(0.992)
    assert 0.99999 < momentum[-1] <= 1.0


def test_frozen_steps_are_zero_then_the_schedule_starts():
    last_layer = cosine_schedule(1e-3, 1e-6, total_iters=50, warmup_iters=10, freeze_iters=5)
    assert np.all(last_layer[:5] == 0)
    np.testing.assert_allclose(last_layer[5:15], np.linspace(0, 1e-3, 10))
    assert last_layer[15] == pytest.approx(1e-3)


def test_schedule_lengths_are_checked():
    with pytest.raises(ValueError, match="exceed total_iters"):
        cosine_schedule(1.0, 0.0, total_iters=10, warmup_iters=8, freeze_iters=3)
    with pytest.raises(ValueError, match=">= 0"):
        cosine_schedule(1.0, 0.0, total_iters=-1)
    assert cosine_schedule(1.0, 0.0, total_iters=0).shape == (0,)


def test_teacher_temperature_warms_up_then_stays():
    schedule = teacher_temperature_schedule(0.04, 0.07, warmup_iters=30, total_iters=100)
    assert schedule.shape == (100,)
    assert schedule[0] == pytest.approx(0.04)
    assert schedule[29] == pytest.approx(0.07)
    np.testing.assert_allclose(schedule[:30], np.linspace(0.04, 0.07, 30))
    assert np.all(schedule[30:] == 0.07)
    short = teacher_temperature_schedule(0.04, 0.07, warmup_iters=30, total_iters=10)
    np.testing.assert_allclose(short, np.linspace(0.04, 0.07, 30)[:10])
