"""The engine's schedules give the values of the loops they replaced (DINOv2's arrays, the segmentation
heads' ``LambdaLR``, the linear probe's cosine, transformers' warm-up cosine)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from transformers import get_cosine_schedule_with_warmup

from raddino.training.schedules import Schedules, constant_schedule, cosine_schedule

POINTS = (0, 1, 7, 50, 99)


def _lrs_of(scheduler: torch.optim.lr_scheduler.LRScheduler, steps: int) -> list[float]:
    """The learning rate each optimiser step used under a torch scheduler stepped after it."""
    used = []
    for _ in range(steps):
        used.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return used


def _optimizer(lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_cosine_equals_the_dinov2_arrays_pretraining_used() -> None:
    base, final, warmup, total = 1e-3, 1e-6, 10, 110
    cosine_steps = np.arange(total - warmup)
    earlier = np.concatenate(
        [
            np.linspace(0.0, base, warmup),
            final + 0.5 * (base - final) * (1 + np.cos(np.pi * cosine_steps / len(cosine_steps))),
        ]
    )
    ours = cosine_schedule(base, final, total, warmup_iters=warmup)
    for step in (0, 5, 9, 10, 60, 109):
        assert ours[step] == earlier[step]


def test_cosine_equals_the_segmentation_heads_lambda_schedule() -> None:
    lr, total = 5e-4, 100
    optimizer = _optimizer(lr)
    earlier = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    )
    used = _lrs_of(earlier, total)
    ours = cosine_schedule(lr, 0.0, total)
    for step in POINTS:
        assert ours[step] == used[step]


def test_cosine_equals_the_linear_probes_decay() -> None:
    total = 100
    ours = cosine_schedule(1.0, 0.0, total)
    for step in POINTS:
        assert ours[step] == 0.5 * (1 + math.cos(math.pi * step / total))


def test_warmup_short_of_the_peak_equals_transformers_schedule() -> None:
    lr, total, warmup = 2e-5, 100, 3  # LLaVA's 3% warm-up
    used = _lrs_of(get_cosine_schedule_with_warmup(_optimizer(lr), warmup, total), total)
    ours = cosine_schedule(lr, 0.0, total, warmup_iters=warmup, warmup_reaches_base=False)
    assert ours[0] == 0.0
    assert ours[1] == used[1] == pytest.approx(lr / 3)
    assert ours[3] == used[3] == lr  # the cosine starts at the peak
    # transformers computes π·(i/n), DINOv2 (π·i)/n: the same value within a rounding
    np.testing.assert_allclose(ours, used, rtol=1e-12, atol=0)


def test_constant_and_named_schedules() -> None:
    assert constant_schedule(0.04, 3).tolist() == [0.04, 0.04, 0.04]
    schedules = Schedules(
        {"learning_rate": cosine_schedule(1.0, 0.0, 4), "weight_decay": constant_schedule(0.1, 4)}, 4
    )
    assert schedules.at(2) == {"learning_rate": pytest.approx(0.5), "weight_decay": 0.1}
    assert all(type(value) is float for value in schedules.at(0).values())
    with pytest.raises(ValueError, match=r"shorter than the run's 5 steps: \{'weight_decay': 3\}"):
        Schedules({"learning_rate": np.ones(5), "weight_decay": np.ones(3)}, 5)
