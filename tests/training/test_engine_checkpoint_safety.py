"""Checkpoints of every task on the engine cannot run code: a planted ``__reduce__`` payload is refused
with one line (library and command line) and never runs; older files of ours load or say what to do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from engine_tasks import EngineCase, Killed, Payload, kill_after
from typer.testing import CliRunner

from raddino.cli import app
from raddino.io.state_file import StateFileError


def _one_error_line(result: Any) -> str:
    """The command failed with exit status 2 and ends with one ``error: ...`` line; no traceback."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert lines[-1] == errors[0], result.stderr
    return errors[0]


def _plant_training_checkpoint(folder: Path, marker: Path) -> Path:
    """Replace the newest checkpoint with one whose loading would create ``marker``."""
    latest = folder / "checkpoints" / (folder / "checkpoints" / "latest.txt").read_text().strip()
    torch.save({"format": "raddino.training", "step": 4, "task": {"state": Payload(marker)}}, latest)
    return latest


def test_planted_training_checkpoint_is_refused_by_the_library_and_the_command(
    engine_case: EngineCase, tmp_path: Path
) -> None:
    out, marker = tmp_path / "out", tmp_path / "ran"
    with pytest.raises(Killed):
        engine_case.train(out, [kill_after(engine_case.kill_at)], False)
    planted = _plant_training_checkpoint(engine_case.run_folder(out), marker)

    with pytest.raises(StateFileError) as caught:
        engine_case.train(out, [], False)
    message = str(caught.value)
    assert "\n" not in message
    assert str(planted) in message
    assert "refused" in message
    assert "--overwrite" in message
    assert not marker.exists()

    line = _one_error_line(CliRunner().invoke(app, engine_case.cli(out)))
    assert str(planted) in line
    assert not marker.exists()

    engine_case.train(out, [], True)  # --overwrite starts afresh
    assert not marker.exists()


def test_planted_segmentation_head_is_refused(segmentation_engine_case: EngineCase, tmp_path: Path) -> None:
    engine_case = segmentation_engine_case
    out, marker = tmp_path / "out", tmp_path / "ran"
    (out / "checkpoints").mkdir(parents=True)
    torch.save({"key": "x", "state": Payload(marker), "history": {}}, out / "checkpoints" / "linear.pt")
    refused = r"linear\.pt: segmentation head checkpoint refused.*--overwrite"
    with pytest.raises(StateFileError, match=refused):
        engine_case.train(out, [], False)
    line = _one_error_line(CliRunner().invoke(app, engine_case.cli(out)))
    assert "linear.pt" in line
    assert not marker.exists()


def test_segmentation_head_written_by_the_previous_code_is_reused(
    segmentation_engine_case: EngineCase, tmp_path: Path
) -> None:
    engine_case = segmentation_engine_case
    out = tmp_path / "out"
    engine_case.train(out, [], False)
    path = out / "checkpoints" / "linear.pt"
    saved = torch.load(path, weights_only=True)
    # the earlier writer: a bare torch.save of the same dict (an OrderedDict state, lists, an int)
    torch.save({"key": saved["key"], "state": saved["state"], "history": saved["history"]}, path)
    stamp, dice = path.stat().st_mtime_ns, json.loads((out / "segment.json").read_text())["summary"]
    engine_case.train(out, [], False)
    assert path.stat().st_mtime_ns == stamp  # loaded and reused, not retrained
    assert json.loads((out / "segment.json").read_text())["summary"] == dice


def test_report_checkpoint_of_the_previous_code_is_not_read(
    report_engine_case: EngineCase, tmp_path: Path
) -> None:
    engine_case = report_engine_case
    out, marker = tmp_path / "out", tmp_path / "ran"
    (out / "checkpoint").mkdir(parents=True)
    torch.save({"step": 2, "optimizer": Payload(marker)}, out / "checkpoint" / "trainer.pt")
    with pytest.raises(StateFileError, match=r"checkpoint: a report-training checkpoint of an earlier"):
        engine_case.train(out, [], False)
    line = _one_error_line(CliRunner().invoke(app, engine_case.cli(out)))
    assert "rerun with --overwrite to start afresh" in line
    assert not marker.exists()
    engine_case.train(out, [], True)
    assert not (out / "checkpoint").exists()
    assert not marker.exists()
