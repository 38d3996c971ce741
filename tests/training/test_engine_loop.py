"""The engine's loop on a toy task: stop and go on, non-finite losses, settings that changed, early ends."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from raddino.training import (
    CheckpointMismatchError,
    Engine,
    LossTerms,
    MixedPrecision,
    NonFiniteLossError,
    Optimization,
    Plan,
    RunFolder,
    Schedules,
    TaskBase,
    cosine_schedule,
    read_metrics,
)

FP32 = MixedPrecision(torch.device("cpu"), None)


class ToyTask(TaskBase):
    """Linear regression whose batches come from a numpy Generator (its state goes in the checkpoint)."""

    description = "toy"

    def __init__(self, total: int = 8, nan_at: int = -1, patience_epoch: int = 0) -> None:
        self.total, self.nan_at, self.patience_epoch = total, nan_at, patience_epoch
        self.rng = np.random.default_rng(0)
        self.data = torch.randn(32, 4, generator=torch.Generator().manual_seed(0))
        self.epochs_seen = 0

    def build(self, device: torch.device) -> Optimization:
        torch.manual_seed(0)
        self.model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.Linear(8, 1))
        optimizer = torch.optim.AdamW(self.model.parameters())
        schedules = Schedules({"learning_rate": cosine_schedule(0.05, 0.0, self.total)}, self.total)
        return Optimization(self.model, optimizer, schedules, max_grad_norm=1.0)

    def micro_batches(self, step: int) -> list[tuple[Any, float]]:
        rows = torch.from_numpy(self.rng.choice(32, 4, replace=False))
        return [((self.data[rows[:2]], step), 0.5), ((self.data[rows[2:]], step), 0.5)]

    def loss(self, batch: Any, values: Mapping[str, float]) -> LossTerms:
        inputs, step = batch
        loss = (self.model(inputs) - inputs.sum(dim=1, keepdim=True)).square().mean()
        return LossTerms(loss * float("nan") if step == self.nan_at else loss, {"mse": loss.detach()})

    def validate(self, done: int) -> dict[str, float]:
        self.epochs_seen += 1
        return {"val/loss": float(done)}

    @property
    def finished(self) -> bool:
        return bool(self.patience_epoch) and self.epochs_seen >= self.patience_epoch

    def state_dict(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "rng": self.rng.bit_generator.state,
            "epochs": self.epochs_seen,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.rng.bit_generator.state = state["rng"]
        self.epochs_seen = state["epochs"]


def _fit(run: Path, task: ToyTask, **plan: Any) -> Any:
    settings = {"total_steps": task.total, **plan}
    engine = Engine(task, RunFolder(run, restart_hint="start afresh"), Plan(**settings), FP32, progress=False)
    return engine.fit()


def test_a_run_stopped_at_max_steps_goes_on_exactly_when_rerun(tmp_path: Path) -> None:
    straight = _fit(tmp_path / "a", ToyTask())
    stopped = _fit(tmp_path / "b", ToyTask(), stop_at=3)
    assert (stopped.step, stopped.complete) == (3, False)
    assert stopped.checkpoint == tmp_path / "b" / "checkpoints" / "step_0000003.pt"
    resumed = _fit(tmp_path / "b", ToyTask())
    assert (resumed.start, resumed.step, resumed.complete) == (3, 8, True)
    assert resumed.last == straight.last  # same loss, learning rate and gradient norm at the last step
    assert read_metrics(tmp_path / "b") == read_metrics(tmp_path / "a")
    assert set(straight.last) == {"train/loss", "train/mse", "train/learning_rate", "train/grad_norm"}


def test_a_non_finite_loss_stops_before_the_step_and_leaves_the_last_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(NonFiniteLossError, match=r"^step 6: loss term 'loss' is nan"):
        _fit(tmp_path, ToyTask(nan_at=5), checkpoint_every=2)
    assert RunFolder(tmp_path).latest() == tmp_path / "checkpoints" / "step_0000004.pt"
    assert [record["iteration"] for record in read_metrics(tmp_path)] == [1, 2, 3, 4, 5]


def test_a_checkpoint_of_other_settings_stops_the_run_or_is_discarded(tmp_path: Path) -> None:
    task = ToyTask()
    Engine(task, RunFolder(tmp_path), Plan(8, stop_at=2), FP32, progress=False, fingerprint="lr=0.05").fit()
    other = Engine(
        ToyTask(), RunFolder(tmp_path, restart_hint="pass overwrite"), Plan(8), FP32, fingerprint="lr=1"
    )
    with pytest.raises(
        CheckpointMismatchError, match=r"step_0000002\.pt: written by a run with other settings; pass"
    ):
        other.fit()
    restart = Engine(
        ToyTask(), RunFolder(tmp_path), Plan(8), FP32, progress=False, fingerprint="x", mismatch="restart"
    )
    result = restart.fit()
    assert (result.start, result.step) == (0, 8)


def test_a_task_that_finishes_early_ends_complete_with_a_checkpoint(tmp_path: Path) -> None:
    result = _fit(tmp_path, ToyTask(total=20, patience_epoch=2), steps_per_epoch=4)
    assert (result.step, result.complete) == (8, True)
    assert RunFolder(tmp_path).latest() == tmp_path / "checkpoints" / "step_0000008.pt"
    again = _fit(tmp_path, ToyTask(total=20, patience_epoch=2), steps_per_epoch=4)
    assert (again.start, again.step, again.complete) == (8, 8, True)
    assert [r["iteration"] for r in read_metrics(tmp_path) if "val/loss" in r] == [4, 8]


def test_log_every_logs_the_last_step_too_and_a_model_that_does_not_fit_is_one_line(tmp_path: Path) -> None:
    _fit(tmp_path / "a", ToyTask(total=7), log_every=3)
    assert [record["iteration"] for record in read_metrics(tmp_path / "a")] == [3, 6, 7]

    class Wider(ToyTask):
        def build(self, device: torch.device) -> Optimization:
            optimization = super().build(device)
            self.model[0] = nn.Linear(4, 16)
            return optimization

    _fit(tmp_path / "b", ToyTask(), stop_at=2)
    with pytest.raises(
        CheckpointMismatchError, match=r"does not fit this run: .*size mismatch.*; start afresh$"
    ) as caught:
        _fit(tmp_path / "b", Wider())
    assert "\n" not in str(caught.value)


def test_the_plan_checkpoints_periodically_at_chosen_epoch_ends_and_at_the_last_step() -> None:
    plan = Plan(20, steps_per_epoch=2, checkpoint_epochs=3, checkpoint_every=7)
    assert [done for done in range(1, 21) if plan.checkpoint_due(done)] == [6, 7, 12, 14, 18, 20]
    assert [done for done in range(1, 21) if plan.is_epoch_end(done)] == list(range(2, 21, 2))
    assert Plan(20, stop_at=5).last_step == 5
    with pytest.raises(ValueError, match="checkpoint_every must be at least 1"):
        Plan(20, checkpoint_every=0)
