"""Per-step schedules, precomputed as arrays (DINOv2 ``CosineScheduler`` in ``dinov2/train/train.py``).

Every schedule counts optimiser steps; a training run indexes its arrays with the step it is about to
take, so a resumed run needs no scheduler state beyond the step. DINOv2 uses them for the learning rate
(linear warm-up from 0, then cosine to ``min_lr``), the weight decay (0.04 → 0.4), the teacher momentum
(0.992 → 1.0), the last head layer's learning rate (0 while frozen) and the teacher temperature (linear
0.04 → 0.07, then constant); the segmentation heads, the linear probe and report generation use the cosine
learning rate (report generation with transformers' warm-up, see ``warmup_reaches_base``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def cosine_schedule(
    base_value: float,
    final_value: float,
    total_iters: int,
    warmup_iters: int = 0,
    start_warmup_value: float = 0.0,
    freeze_iters: int = 0,
    warmup_reaches_base: bool = True,
) -> np.ndarray:
    """``freeze_iters`` zeros, a linear warm-up, then a half cosine from ``base_value`` to ``final_value``.

    With ``warmup_reaches_base`` (DINOv2's ``CosineScheduler``) the warm-up is
    ``linspace(start, base, warmup_iters)``, its last step already at ``base_value``; without it, warm-up
    step ``k`` of ``w`` is ``start + (base − start)·k/w`` (transformers' ``get_cosine_schedule_with_warmup``,
    LLaVA's recipe), one step short of ``base_value``. Cosine step ``i`` of ``n`` is
    ``final + (base − final)(1 + cos(π i / n)) / 2``, so the last entry is one step short of
    ``final_value`` (DINOv2 returns ``final_value`` past the end; index beyond the array for that).

    Args:
        base_value: Value at the end of the warm-up and at the start of the cosine.
        final_value: Value the cosine decays (or grows) towards.
        total_iters: Length of the schedule.
        warmup_iters: Linear warm-up steps, after the frozen ones.
        start_warmup_value: First warm-up value.
        freeze_iters: Leading steps at 0 (the last head layer's frozen first epoch).
        warmup_reaches_base: Whether the last warm-up step is at ``base_value`` (see above).

    Returns:
        (total_iters,) float64 array.

    Raises:
        ValueError: negative lengths, or ``warmup_iters + freeze_iters > total_iters``.
    """
    if min(total_iters, warmup_iters, freeze_iters) < 0:
        raise ValueError(
            f"schedule lengths must be >= 0: total {total_iters}, warmup {warmup_iters}, "
            f"freeze {freeze_iters}"
        )
    if warmup_iters + freeze_iters > total_iters:
        raise ValueError(
            f"warmup_iters ({warmup_iters}) + freeze_iters ({freeze_iters}) exceed "
            f"total_iters ({total_iters})"
        )
    frozen = np.zeros(freeze_iters)  # (freeze_iters,)
    if warmup_reaches_base:
        warmup = np.linspace(start_warmup_value, base_value, warmup_iters)  # (warmup_iters,)
    else:
        fractions = np.arange(warmup_iters) / max(warmup_iters, 1)  # k / w, as transformers computes it
        warmup = start_warmup_value + (base_value - start_warmup_value) * fractions
    n_cosine = total_iters - warmup_iters - freeze_iters
    steps = np.arange(n_cosine)
    cosine = final_value + 0.5 * (base_value - final_value) * (1 + np.cos(np.pi * steps / max(n_cosine, 1)))
    return np.concatenate([frozen, warmup, cosine]).astype(np.float64)


def constant_schedule(value: float, total_iters: int) -> np.ndarray:
    """(total_iters,) float64 array of ``value`` (a setting that could be scheduled but is not)."""
    if total_iters < 0:
        raise ValueError(f"schedule length must be >= 0, got {total_iters}")
    return np.full(total_iters, float(value))


def teacher_temperature_schedule(
    warmup_temp: float, temp: float, warmup_iters: int, total_iters: int
) -> np.ndarray:
    """Teacher temperature: linear from ``warmup_temp`` to ``temp`` over ``warmup_iters``, then ``temp``.

    DINOv2 / RAD-DINO: 0.04 → 0.07 over the first 30 epochs (``teacher.warmup_teacher_temp``,
    ``teacher.teacher_temp``, ``teacher.warmup_teacher_temp_epochs``); a warm-up longer than the run is cut
    at ``total_iters``, as DINOv2's indexing does.

    Args:
        warmup_temp: First temperature.
        temp: Temperature after the warm-up.
        warmup_iters: Warm-up steps (``linspace`` including both ends, as DINOv2).
        total_iters: Length of the schedule.

    Returns:
        (total_iters,) float64 array.
    """
    if total_iters < 0 or warmup_iters < 0:
        raise ValueError(f"schedule lengths must be >= 0: total {total_iters}, warmup {warmup_iters}")
    schedule = np.full(total_iters, float(temp))
    warmup = np.linspace(warmup_temp, temp, warmup_iters)[:total_iters]
    schedule[: len(warmup)] = warmup
    return schedule


class Schedules:
    """Named per-step arrays of one run, read together at each step.

    Args:
        arrays: Name → (total_steps,) array. The names are what the training step passes to the task's
            loss and hooks and what the metrics log records (``train/<name>``); ``learning_rate`` and
            ``weight_decay`` are applied to the optimiser by default
            (:func:`raddino.training.step.apply_learning_rate`).
        total_steps: Steps of the run; every array must cover them.

    Raises:
        ValueError: an array shorter than ``total_steps`` (the message names it).
    """

    def __init__(self, arrays: Mapping[str, np.ndarray], total_steps: int) -> None:
        short = {name: len(array) for name, array in arrays.items() if len(array) < total_steps}
        if short:
            raise ValueError(f"schedules shorter than the run's {total_steps} steps: {short}")
        self.arrays = {name: np.asarray(array, dtype=np.float64) for name, array in arrays.items()}
        self.total_steps = total_steps

    def at(self, step: int) -> dict[str, float]:
        """The values of step ``step`` (0-based: the step about to be taken), as Python floats."""
        return {name: float(array[step]) for name, array in self.arrays.items()}
