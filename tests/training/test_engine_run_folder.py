"""The run folder (pointer, keep-N, stale temporaries, full disks) and the metrics log (resume, CSV views)."""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import pytest
import torch

from raddino.io.state_file import StateFileError
from raddino.training.metrics import CsvColumn, CsvView, MetricsLog, read_metrics
from raddino.training.run_folder import CHECKPOINT_FORMAT, LegacyLayout, RunFolder

VIEW = CsvView("train_log.csv", [CsvColumn("step", "iteration", "d"), CsvColumn("loss", "train/loss", ".3f")])


def test_only_the_newest_checkpoints_are_kept_and_the_pointer_names_the_latest(tmp_path: Path) -> None:
    run = RunFolder(tmp_path / "run")
    for step in (2, 4, 6):
        run.save_checkpoint(step, {"task": {"w": torch.full((2,), float(step))}}, keep=2)
    names = sorted(p.name for p in run.checkpoints.iterdir())
    assert names == ["latest.txt", "step_0000004.pt", "step_0000006.pt"]
    latest = run.latest()
    assert latest is not None
    assert run.load_checkpoint(latest)["task"]["w"].tolist() == [6.0, 6.0]
    (run.checkpoints / "latest.txt").unlink()  # a kill between the file and the pointer
    assert run.latest() == run.checkpoints / "step_0000006.pt"


def test_temporaries_left_by_a_kill_are_removed(tmp_path: Path) -> None:
    run = RunFolder(tmp_path)
    run.save_checkpoint(1, {})
    stale = [run.checkpoints / ".step_0000002.pt.k3j2.tmp", tmp_path / ".metrics.jsonl.x1.tmp"]
    for path in stale:
        path.write_bytes(b"half a file")
    kept = tmp_path / ".report_model.json.x1.tmp"  # not the run's file: someone else's
    kept.write_text("{}")
    assert sorted(run.remove_stale_temporaries(["metrics.jsonl"])) == sorted(stale)
    assert not any(path.exists() for path in stale)
    assert kept.exists()


def test_a_full_disk_names_the_file_and_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = RunFolder(tmp_path)
    run.save_checkpoint(1, {"task": {}})

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(StateFileError, match=r"step_0000002\.pt: cannot write: No space left on device"):
        run.save_checkpoint(2, {"task": {}})
    assert run.latest() == run.checkpoints / "step_0000001.pt"
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["latest.txt", "step_0000001.pt"]


def test_files_that_are_not_engine_checkpoints_get_one_line_with_the_hint(tmp_path: Path) -> None:
    run = RunFolder(tmp_path, "segmentation training checkpoint", "rerun with --overwrite")
    run.checkpoints.mkdir()
    torch.save({"iteration": 3}, run.checkpoints / "step_0000003.pt")
    with pytest.raises(StateFileError) as caught:
        run.load_checkpoint(run.checkpoints / "step_0000003.pt")
    assert str(caught.value).endswith(
        "not a segmentation training checkpoint of this raddino version; rerun with --overwrite"
    )
    (run.checkpoints / "step_0000003.pt").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(StateFileError, match=r"cannot read .*; rerun with --overwrite$") as caught:
        run.load_checkpoint(run.checkpoints / "step_0000003.pt")
    assert "\n" not in str(caught.value)


def test_a_resumed_log_drops_the_steps_after_the_checkpoint_and_rebuilds_the_csv(tmp_path: Path) -> None:
    log = MetricsLog(tmp_path, views=[VIEW])
    for step in range(1, 6):  # checkpoint at 3, killed after 5
        log.log(step, {"train/loss": step / 10})
    log.log(4, {"val/loss": 0.5})  # not a train row: not in the view
    log.close()
    resumed = MetricsLog(tmp_path, resume_from=3, views=[VIEW])
    for step in range(4, 7):
        resumed.log(step, {"train/loss": step / 10})
    resumed.close()
    assert [record["iteration"] for record in read_metrics(tmp_path)] == [1, 2, 3, 4, 5, 6]
    lines = (tmp_path / "train_log.csv").read_text().splitlines()
    assert lines == ["step,loss", *(f"{step},{step / 10:.3f}" for step in range(1, 7))]
    fresh = MetricsLog(tmp_path, views=[VIEW])  # no checkpoint: a new log
    fresh.close()
    assert read_metrics(tmp_path) == []
    assert (tmp_path / "train_log.csv").read_text() == "step,loss\n"


def test_a_record_cut_short_by_a_kill_is_skipped(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text(
        json.dumps({"iteration": 1, "train/loss": 0.5}) + '\n{"iteration": 2, "tra'
    )
    assert read_metrics(tmp_path) == [{"iteration": 1, "train/loss": 0.5}]
    MetricsLog(tmp_path, resume_from=2).close()
    assert (tmp_path / "metrics.jsonl").read_text() == '{"iteration": 1, "train/loss": 0.5}\n'


def _earlier_layout() -> LegacyLayout:
    """A task's own checkpoints before the engine: ``epoch_N.pt`` + ``last.txt``, ``{"epoch", "weights"}``."""

    def upgrade(payload: dict, path: Path) -> dict:
        if "epoch" not in payload:
            raise StateFileError(f"{path}: not a toy checkpoint (no 'epoch')")
        return {"format": CHECKPOINT_FORMAT, "step": 10 * payload["epoch"], "task": {"w": payload["weights"]}}

    return LegacyLayout(re.compile(r"^epoch_(\d+)\.pt$"), "last.txt", upgrade)


def test_a_run_of_the_earlier_layout_resumes_from_its_newest_file_until_the_engine_saves(
    tmp_path: Path,
) -> None:
    run = RunFolder(tmp_path, "toy checkpoint", legacy=_earlier_layout())
    run.checkpoints.mkdir()
    for epoch in (1, 2, 3):
        torch.save(
            {"epoch": epoch, "weights": torch.full((2,), float(epoch))}, run.checkpoints / f"epoch_{epoch}.pt"
        )
    (run.checkpoints / "last.txt").write_text("epoch_2.pt\n")  # the pointer wins over the highest number
    latest = run.latest()
    assert latest == run.checkpoints / "epoch_2.pt"
    assert run.is_legacy(latest)
    state = run.load_checkpoint(latest)
    assert state["step"] == 20
    assert state["task"]["w"].tolist() == [2.0, 2.0]
    torch.save({"weights": torch.zeros(2)}, run.checkpoints / "epoch_9.pt")
    with pytest.raises(StateFileError, match=r"epoch_9\.pt: not a toy checkpoint \(no 'epoch'\)"):
        run.load_checkpoint(run.checkpoints / "epoch_9.pt")

    run.save_checkpoint(21, {"task": {"w": torch.ones(2)}})
    assert run.latest() == run.checkpoint_path(21)  # the engine's files come first once there is one
    assert not run.is_legacy(run.checkpoint_path(21))
    assert (run.checkpoints / "epoch_3.pt").is_file()  # the earlier files are left as they were
