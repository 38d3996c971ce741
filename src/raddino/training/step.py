"""One optimisation step: micro-batches under autocast, accumulated gradients, loss scaling, clipping,
the optimiser step and the hooks that follow it (the EMA teacher update).

The loss terms of a step are checked before the optimiser touches the weights: a NaN or infinite term stops
the run with :class:`NonFiniteLossError` naming it, so the last checkpoint stays the last good state.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from raddino.training.precision import MixedPrecision
from raddino.training.schedules import Schedules

StepHook = Callable[[int, Mapping[str, float]], None]
"""Called after the optimiser step with the 0-based step and its schedule values."""


class TrainingError(RuntimeError):
    """A run cannot go on (non-finite loss, checkpoint that does not fit); the message is one line."""


class NonFiniteLossError(TrainingError):
    """A loss term became NaN or infinite; the run stops before the optimiser step."""

    def __init__(self, step: int, term: str, value: float, advice: str = "") -> None:
        super().__init__(
            f"step {step + 1}: loss term '{term}' is {value}; stopping before the optimiser step (the last "
            f"checkpoint is the last good state{': ' + advice if advice else ''})"
        )
        self.step, self.term, self.value = step, term, value


@dataclass
class LossTerms:
    """What a task's loss returns for one micro-batch.

    Attributes:
        total: The scalar that is differentiated.
        terms: Named parts of it (``dino``, ``ibot``, ``koleo``), logged as ``train/<name>`` and checked
            for finiteness by name.
    """

    total: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)


@dataclass
class StepResult:
    """The numbers of one finished step: weighted mean losses (``loss`` and each term), gradient norms."""

    losses: dict[str, float]
    grad_norms: dict[str, float]


def apply_learning_rate(optimizer: torch.optim.Optimizer, values: Mapping[str, float]) -> None:
    """Set every group's ``lr`` (and ``weight_decay``) from the step's ``learning_rate`` (``weight_decay``)
    schedule, times the group's ``lr_scale`` (``wd_scale``) when it has one."""
    for group in optimizer.param_groups:
        if "learning_rate" in values:
            group["lr"] = values["learning_rate"] * group.get("lr_scale", 1.0)
        if "weight_decay" in values:
            group["weight_decay"] = values["weight_decay"] * group.get("wd_scale", 1.0)


@dataclass
class Optimization:
    """What a task hands the engine to train: the model, its optimiser and schedules, and the pieces a
    distributed run swaps in.

    Attributes:
        model: The module being trained (put in train mode when the loop starts).
        optimizer: Its optimiser.
        schedules: Per-step values (``learning_rate``, ``weight_decay``, ``momentum``, …).
        max_grad_norm: Clip the gradient norm to this (None: no clipping).
        clip: Replaces the default clipping (``clip_grad_norm_`` over the optimiser's parameters): takes
            ``max_grad_norm``, returns the norms before clipping by name (DINOv2 clips each module).
        gradient_sync: ``enabled -> context``; the engine disables the sync on every micro-batch but the
            last (DDP ``no_sync``, FSDP ``set_requires_gradient_sync``).
        reduce: Turns this process's losses into the job's (a mean over ranks); identity by default.
        apply_schedules: Writes the step's values into the optimiser (layer-wise rates, frozen layers).
        after_step: Hooks after the optimiser step (the EMA teacher update reads ``momentum``).
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedules: Schedules
    max_grad_norm: float | None = None
    clip: Callable[[float], dict[str, float]] | None = None
    gradient_sync: Callable[[bool], contextlib.AbstractContextManager[Any]] | None = None
    reduce: Callable[[dict[str, float]], dict[str, float]] | None = None
    apply_schedules: Callable[[torch.optim.Optimizer, Mapping[str, float]], None] = apply_learning_rate
    after_step: list[StepHook] = field(default_factory=list)

    def state_dict(self) -> dict[str, Any]:
        """The optimiser's state (a sharded run overrides this with a full, gathered state)."""
        return {"optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])

    def clip_gradients(self) -> dict[str, float]:
        if self.max_grad_norm is None:
            return {}
        if self.clip is not None:
            return self.clip(self.max_grad_norm)
        parameters = [p for group in self.optimizer.param_groups for p in group["params"]]
        return {"grad_norm": float(torch.nn.utils.clip_grad_norm_(parameters, self.max_grad_norm))}


def _weighted_means(collected: list[tuple[float, dict[str, torch.Tensor]]]) -> dict[str, float]:
    if not collected:
        raise ValueError("a training step got no micro-batches")
    keys = list(collected[0][1])
    stacked = torch.stack([torch.stack([terms[k].float() for k in keys]) for _, terms in collected])
    totals = dict.fromkeys(keys, 0.0)
    for (weight, _), row in zip(collected, stacked.tolist(), strict=True):  # one device sync per step
        for key, value in zip(keys, row, strict=True):
            totals[key] += value * weight
    return totals


def check_finite(step: int, losses: Mapping[str, float], advice: str = "") -> None:
    """Raise :class:`NonFiniteLossError` naming the first non-finite term (the total only if no term is)."""
    bad = [key for key, value in losses.items() if not math.isfinite(value)]
    if bad:
        term = next((key for key in bad if key != "loss"), bad[0])
        raise NonFiniteLossError(step, term, losses[term], advice)


def optimization_step(
    optimization: Optimization,
    precision: MixedPrecision,
    scaler: torch.amp.GradScaler | None,
    step: int,
    micro_batches: Iterable[tuple[Any, float]],
    loss: Callable[[Any, Mapping[str, float]], LossTerms],
    values: Mapping[str, float],
    advice: str = "",
) -> StepResult:
    """Run one optimiser step.

    Args:
        optimization: The model, optimiser and hooks.
        precision: Autocast of the forward passes.
        scaler: fp16's loss scaler, or None.
        step: 0-based step (for messages and hooks).
        micro_batches: ``(batch, weight)`` pairs, drawn one ahead of the one computed (a generator keeps
            at most two on the device); each micro-batch's loss is scaled by its weight before backward, so
            weights that sum to 1 give the gradient of the whole batch's mean.
        loss: ``(batch, values) -> LossTerms``, run under autocast.
        values: The step's schedule values.
        advice: Appended to a non-finite-loss message (what the user can change).

    Returns:
        The weighted losses (reduced over ranks) and the gradient norms before clipping.
    """
    optimizer = optimization.optimizer
    optimizer.zero_grad(set_to_none=True)
    collected: list[tuple[float, dict[str, torch.Tensor]]] = []
    pending = iter(micro_batches)
    current = next(pending, None)
    while current is not None:
        following = next(pending, None)  # one ahead: the last micro-batch syncs the gradients
        batch, weight = current
        sync = optimization.gradient_sync(following is None) if optimization.gradient_sync else None
        with sync or contextlib.nullcontext():
            with precision.autocast():
                terms = loss(batch, values)
            scaled = terms.total * weight
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        detached = {"loss": terms.total.detach(), **{k: v.detach() for k, v in terms.terms.items()}}
        collected.append((weight, detached))
        current = following
    losses = _weighted_means(collected)
    if optimization.reduce is not None:
        losses = optimization.reduce(losses)
    check_finite(step, losses, advice)
    if scaler is not None:
        scaler.unscale_(optimizer)
    norms = optimization.clip_gradients()
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    for hook in optimization.after_step:
        hook(step, values)
    return StepResult(losses, norms)
