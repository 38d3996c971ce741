"""The training engine: one loop for every trained thing (see :mod:`raddino.training.task`).

Each step: read the schedules at the step, write them into the optimiser, run the task's micro-batches
through :func:`raddino.training.step.optimization_step`, log ``train/…``; at epoch ends validate; at the
plan's checkpoints save the optimiser, scaler, every rank's RNG and the task's state. A rerun into the same
run folder restores the newest checkpoint and goes on exactly: the same data, the same random draws, the
same weights as an uninterrupted run, and a metrics log that holds every step once.

Distributed runs pass their ``DistributedContext``: every rank builds, steps, and takes part in the state
collection (collective for sharded models); rank 0 writes the checkpoint and the metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch.distributed as dist

from raddino.io.state_file import capture_rng, restore_rng
from raddino.training.distributed import DistributedContext
from raddino.training.metrics import CsvView, MetricsLog
from raddino.training.precision import MixedPrecision
from raddino.training.progress import Progress
from raddino.training.run_folder import RunFolder
from raddino.training.step import Optimization, StepResult, TrainingError, optimization_step
from raddino.training.task import Plan, Task
from raddino.training.tracking import TrackingConfig

logger = logging.getLogger(__name__)

Callback = Callable[[int, Mapping[str, float]], None]
"""Called after every step (and its checkpoint) with the steps done and the step's ``train`` record."""


class CheckpointMismatchError(TrainingError, ValueError):
    """A checkpoint was written by a run with other settings or another model; one line."""


@dataclass
class FitResult:
    """What :meth:`Engine.fit` did: steps done before and after this session, whether the run is over."""

    start: int
    step: int
    complete: bool
    last: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300] or type(error).__name__


class Engine:
    """Trains a :class:`Task` into a :class:`RunFolder` following a :class:`Plan`.

    Args:
        task: What to train.
        run: Where its checkpoints and logs go.
        plan: Length, epochs, checkpoint periods.
        precision: Autocast dtype (and the fp16 scaler).
        context: This process's place in a distributed job (None: one process).
        views: CSV files derived from ``metrics.jsonl`` (``train_log.csv``).
        callbacks: Called after every step.
        progress: Show a progress bar (else a log line a minute).
        fingerprint: Stored in checkpoints; a checkpoint with another one is not resumed.
        mismatch: With another fingerprint, ``error`` stops, ``restart`` discards the run's checkpoints
            and logs and starts afresh (for runs that are caches of a setting, like segmentation heads).
        advice: Appended to a non-finite-loss message.
        tracking: MLflow or W&B besides ``metrics.jsonl`` (see :mod:`raddino.training.tracking`).
        config: The run's config, logged to the tracker as its parameters.
    """

    def __init__(
        self,
        task: Task,
        run: RunFolder,
        plan: Plan,
        precision: MixedPrecision,
        *,
        context: DistributedContext | None = None,
        views: Sequence[CsvView] = (),
        callbacks: Sequence[Callback] = (),
        progress: bool = True,
        fingerprint: str = "",
        mismatch: Literal["error", "restart"] = "error",
        advice: str = "",
        tracking: TrackingConfig | None = None,
        config: Any = None,
    ) -> None:
        self.task, self.run, self.plan, self.precision = task, run, plan, precision
        self.context = context
        self.views = list(views)
        self.callbacks = list(callbacks)
        self.progress = progress
        self.fingerprint, self.mismatch, self.advice = fingerprint, mismatch, advice
        self.tracking, self.config = tracking, config
        self.is_main = context is None or context.is_main
        self.rank = context.rank if context is not None else 0
        self.world_size = context.world_size if context is not None else 1

    def fit(self) -> FitResult:
        """Train from the newest checkpoint (or from scratch) to the plan's last step."""
        if self.is_main:
            self.run.path.mkdir(parents=True, exist_ok=True)
            self.run.remove_stale_temporaries(["metrics.jsonl", *(view.name for view in self.views)])
        optimization = self.task.build(self.precision.device)
        scaler = self.precision.grad_scaler()
        start, resumed = self._resume(optimization, scaler)
        self.task.begin(start)
        resume_from = start if resumed else None
        metrics = MetricsLog(self.run.path, resume_from, self.is_main, self.views, self.tracking, self.config)
        bar = Progress(
            self.plan.total_steps,
            start,
            self.task.description,
            self.progress and self.is_main,
            items_per_step=self.task.items_per_step,
        )
        result = FitResult(start, start, False, checkpoint=self.run.latest() if resumed else None)
        optimization.model.train()
        status = "FAILED"  # what the tracked run says if the loop is left by an error
        try:
            while result.step < self.plan.last_step and not self.task.finished:
                self._step(optimization, scaler, metrics, result)
                bar.update(result.step, {k: v for k, v in result.last.items() if k in self.task.shown})
                for callback in self.callbacks:
                    callback(result.step, result.last)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            bar.close()
            metrics.close(status)
        if result.step > start:
            logger.info("%s: %s", self.task.description, bar.line())
        result.complete = result.step >= self.plan.total_steps or self.task.finished
        return result

    def _step(self, optimization: Optimization, scaler: Any, metrics: MetricsLog, result: FitResult) -> None:
        step = result.step
        values = optimization.schedules.at(step)
        optimization.apply_schedules(optimization.optimizer, values)
        outcome = optimization_step(
            optimization,
            self.precision,
            scaler,
            step,
            self.task.micro_batches(step),
            self.task.loss,
            values,
            self.advice,
        )
        done = result.step = step + 1
        result.last = {**_train_record(outcome, values), **self.task.after_step(done, outcome)}
        if done % self.plan.log_every == 0 or done == self.plan.last_step:
            metrics.log(done, result.last)
        epoch_end = self.plan.is_epoch_end(done)
        if epoch_end:
            validation = self.task.validate(done)
            if validation:
                metrics.log(done, validation)
        if self.plan.checkpoint_due(done) or self.task.finished or self.task.wants_checkpoint(done):
            result.checkpoint = self._checkpoint(optimization, scaler, done)

    def _checkpoint(self, optimization: Optimization, scaler: Any, done: int) -> Path | None:
        rng = self._gather(capture_rng(self.precision.device))
        payload = {
            "fingerprint": self.fingerprint,
            "optimization": optimization.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": rng,
            "world_size": self.world_size,
            "task": self.task.state_dict(),
        }
        path = None
        if self.is_main:
            path = self.run.save_checkpoint(done, payload, self.plan.keep_checkpoints)
        if self.context is not None:
            self.context.barrier()
        return path

    def _gather(self, value: Any) -> list[Any]:
        if self.world_size == 1 or not dist.is_initialized():
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def _resume(self, optimization: Optimization, scaler: Any) -> tuple[int, bool]:
        """Restore the newest checkpoint into the built pieces; returns (steps done, whether resumed)."""
        path = self.run.latest()
        if path is None:
            return 0, False
        state = self.run.load_checkpoint(path)
        hint = f"; {self.run.restart_hint}" if self.run.restart_hint else ""
        if self.fingerprint and state.get("fingerprint") != self.fingerprint:
            if self.mismatch == "restart":
                if self.is_main:
                    self.run.clear(view.name for view in self.views)
                return 0, False
            raise CheckpointMismatchError(f"{path}: written by a run with other settings{hint}")
        try:
            self.task.load_state_dict(state["task"])
            optimization.load_state_dict(state["optimization"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
        except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as error:
            raise CheckpointMismatchError(
                f"{path}: does not fit this run: {_one_line(error)}{hint}"
            ) from None
        rng = state.get("rng") or []
        if state.get("world_size") == self.world_size and len(rng) == self.world_size:
            restore_rng(rng[self.rank], self.precision.device)
        logger.info("%s: resuming %s at step %d", self.task.description, path, state["step"])
        return int(state["step"]), True


def _train_record(outcome: StepResult, values: Mapping[str, float]) -> dict[str, float]:
    record = {f"train/{key}": value for key, value in outcome.losses.items()}
    record.update({f"train/{key}": value for key, value in values.items()})
    record.update({f"train/{key}": value for key, value in outcome.grad_norms.items()})
    return record
