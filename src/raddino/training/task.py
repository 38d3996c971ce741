"""What a trainable thing supplies to the engine (:class:`Task`), and how long and how often (:class:`Plan`).

A task owns its model, data and loss; the engine owns the loop, the optimisation step, checkpoints,
resume, metrics and progress. Steps are counted in two ways: ``micro_batches(step)`` gets the 0-based
index of the step about to be taken (it picks the data of that step, which is what makes resume exact);
the hooks that run after a step (``after_step``, ``validate``, ``wants_checkpoint``) get ``done``, the
number of steps completed (1-based), which is also the step every log record and checkpoint carries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from raddino.training.step import LossTerms, Optimization, StepResult


@dataclass(frozen=True)
class Plan:
    """How long a run is, and when it validates and checkpoints.

    Attributes:
        total_steps: Optimiser steps of the whole run (the schedules' length).
        steps_per_epoch: Validation at the end of every epoch of this many steps (None: no epochs).
        checkpoint_every: Steps between checkpoints (None: epoch ends and the last step only).
        checkpoint_epochs: A checkpoint at the end of every this many epochs (where saving is costly
            next to an epoch); always at the end of the session.
        stop_at: Stop, with a checkpoint, after this many steps in total (``max_steps``); None runs on.
        keep_checkpoints: Checkpoints kept on disk.
        log_every: Steps between ``train/…`` records (the last step is always logged).
    """

    total_steps: int
    steps_per_epoch: int | None = None
    checkpoint_every: int | None = None
    checkpoint_epochs: int = 1
    stop_at: int | None = None
    keep_checkpoints: int = 1
    log_every: int = 1

    def __post_init__(self) -> None:
        for name in ("steps_per_epoch", "checkpoint_every", "stop_at"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or unset), got {value}")
        counts = (self.keep_checkpoints, self.log_every, self.checkpoint_epochs)
        if self.total_steps < 0 or min(counts) < 1:
            raise ValueError(
                f"total_steps must be >= 0 and keep_checkpoints, log_every, checkpoint_epochs >= 1; got "
                f"{self.total_steps}, {counts}"
            )

    @property
    def last_step(self) -> int:
        """Where this session stops: ``total_steps``, or ``stop_at`` when that comes first."""
        return min(self.total_steps, self.stop_at) if self.stop_at else self.total_steps

    def is_epoch_end(self, done: int) -> bool:
        return self.steps_per_epoch is not None and done % self.steps_per_epoch == 0

    def checkpoint_due(self, done: int) -> bool:
        """At ``checkpoint_every``, at every ``checkpoint_epochs``-th epoch end, at the last step."""
        periodic = self.checkpoint_every is not None and done % self.checkpoint_every == 0
        epochs = (
            self.is_epoch_end(done) and (done // (self.steps_per_epoch or 1)) % self.checkpoint_epochs == 0
        )
        return periodic or epochs or done == self.last_step


class Task(Protocol):
    """A trainable thing: what the engine needs from pre-training, fine-tuning, segmentation heads or
    report generation. :class:`TaskBase` gives the optional parts defaults."""

    description: str
    """Shown beside the progress bar."""

    shown: tuple[str, ...]
    """Keys of the ``train`` record shown beside the progress bar."""

    items_per_step: int
    """Images (items) one step consumes over all processes, for the bar's img/s (0: steps/s only); read
    after :meth:`begin`."""

    def build(self, device: torch.device) -> Optimization:
        """Create (or load) the model on ``device``, its optimiser and schedules; called once per session,
        before the checkpoint (if any) is restored into them."""
        ...

    def begin(self, start: int) -> None:
        """Called after the restore with the number of steps already done (set up data iterators)."""
        ...

    def micro_batches(self, step: int) -> Iterable[tuple[Any, float]]:
        """The ``(batch, weight)`` pairs of step ``step`` (0-based); weights of one step sum to 1."""
        ...

    def loss(self, batch: Any, values: Mapping[str, float]) -> LossTerms:
        """The loss of one micro-batch, given the step's schedule values (run under autocast)."""
        ...

    def after_step(self, done: int, result: StepResult) -> dict[str, float]:
        """Bookkeeping after a step; returns extra values for its ``train`` record (``train/epoch``)."""
        ...

    def validate(self, done: int) -> dict[str, float]:
        """At epoch ends: measure (``val/loss``), update the best-model record; returns values to log."""
        ...

    def wants_checkpoint(self, done: int) -> bool:
        """Ask for a checkpoint after this step besides the plan's (a snapshot to export)."""
        ...

    @property
    def finished(self) -> bool:
        """True when the task ends the run early (patience ran out)."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything to save besides the optimiser, scaler and RNG: trained weights, the best-model
        record, data position, numpy generator states; tensors and plain values only."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict`; raise ``ValueError`` when it does not fit this run."""
        ...


class TaskBase:
    """Defaults of a task's optional parts: no set-up, no extra values, no validation, no early end."""

    description = "train"
    shown: tuple[str, ...] = ("train/loss", "train/learning_rate")
    items_per_step = 0

    def begin(self, start: int) -> None:
        return None

    def after_step(self, done: int, result: StepResult) -> dict[str, float]:
        return {}

    def validate(self, done: int) -> dict[str, float]:
        return {}

    def wants_checkpoint(self, done: int) -> bool:
        return False

    @property
    def finished(self) -> bool:
        return False

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        return None
