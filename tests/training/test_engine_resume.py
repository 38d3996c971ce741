"""The one resume test, run against every task on the engine: a run killed between two checkpoints and
resumed ends with the same weights and the same metrics as an uninterrupted run, each step logged once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_tasks import EngineCase, Killed, csv_rows, kill_after

from raddino.training import read_metrics


def _steps(records: list[dict[str, float]], key: str) -> list[int]:
    return [int(record["iteration"]) for record in records if key in record]


def test_killed_and_resumed_run_equals_an_uninterrupted_one(engine_case: EngineCase, tmp_path: Path) -> None:
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    engine_case.train(straight, [], False)

    with pytest.raises(Killed):
        engine_case.train(interrupted, [kill_after(engine_case.kill_at)], False)
    folder = engine_case.run_folder(interrupted)
    checkpoint = int((folder / "checkpoints" / "latest.txt").read_text().strip()[5:12])
    assert checkpoint < engine_case.kill_at  # the kill lost steps: they are logged but not checkpointed
    assert max(_steps(read_metrics(folder), "train/loss")) == engine_case.kill_at

    session: list[int] = []
    engine_case.train(interrupted, [lambda done, record: session.append(done)], False)
    assert session[0] == checkpoint + 1  # resumed from the checkpoint, not started again

    expected, resumed = engine_case.weights(straight), engine_case.weights(interrupted)
    assert expected.keys() == resumed.keys()
    for name, tensor in expected.items():
        assert torch.equal(resumed[name], tensor), name
    straight_records = read_metrics(engine_case.run_folder(straight))
    resumed_records = read_metrics(folder)
    assert resumed_records == straight_records  # every value, bit for bit
    train_steps = _steps(resumed_records, "train/loss")
    assert train_steps == list(range(1, len(train_steps) + 1))
    assert _steps(resumed_records, "val/loss") == sorted(set(_steps(resumed_records, "val/loss")))
    for view in engine_case.views:
        rows = csv_rows(folder / view)
        assert rows == csv_rows(engine_case.run_folder(straight) / view)
        assert [int(row["step"]) for row in rows] == sorted({int(row["step"]) for row in rows})


def test_tensorboard_of_a_resumed_run_shows_each_step_once(engine_case: EngineCase, tmp_path: Path) -> None:
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    out = tmp_path / "run"
    with pytest.raises(Killed):
        engine_case.train(out, [kill_after(engine_case.kill_at)], False)
    engine_case.train(out, [], False)
    events = event_accumulator.EventAccumulator(str(engine_case.run_folder(out) / "tensorboard"))
    events.Reload()
    steps = [event.step for event in events.Scalars("train/loss")]
    assert steps == list(range(1, len(steps) + 1))
    records = read_metrics(engine_case.run_folder(out))
    losses = {int(r["iteration"]): r["train/loss"] for r in records if "train/loss" in r}
    for event in events.Scalars("train/loss"):
        assert event.value == pytest.approx(losses[event.step], rel=1e-6)
