"""Checkpoints that run no code: planted pickles, old layouts, broken files, kills mid-save, a full disk.

A checkpoint is read with ``torch.load(weights_only=True)``; a file holding Python objects is refused with
one line, whatever entry point reads it (resume in the library, ``raddino pretrain``, ``raddino export-run``).
"""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from pretrain_helpers import TEST_CONFIG, make_config, make_phantoms, run_torchrun
from typer.testing import CliRunner

from raddino.cli import app
from raddino.io.state_file import check_plain
from raddino.pretrain.checkpoint import (
    CheckpointError,
    latest_checkpoint,
    read_checkpoint,
    remove_stale_temporaries,
)
from raddino.pretrain.train import pretrain

FOUR_ITERATIONS = ("optim.epochs=2", "train.checkpoint_period=2")  # checkpoints at 2 and 4, both kept


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_phantoms(tmp_path_factory.mktemp("safety") / "phantoms")


@pytest.fixture(scope="module")
def reference(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 4-iteration run."""
    run = tmp_path_factory.mktemp("reference") / "run"
    pretrain(make_config(manifest, *FOUR_ITERATIONS), run, progress=False)
    return run


class _MakeDirectory:
    """Unpickling this calls ``os.makedirs(marker)``: proof that loading ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.makedirs, (self.marker,))


class _Exec:
    """Unpickling this runs Python source through ``exec``."""

    def __init__(self, marker: Path) -> None:
        self.source = f"import os; os.makedirs({str(marker)!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (self.source,))


def _plant(run: Path, kind: str, marker: Path) -> Path:
    """``RUN/checkpoints/iteration_0000004.pt`` (named by last.txt) whose loading would create ``marker``."""
    folder = run / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "iteration_0000004.pt"
    payload: dict[str, Any] = {"iteration": 4, "student": {}, "teacher": {}, "config": {}}
    if kind == "makedirs":
        payload["rng"] = [{"torch": _MakeDirectory(marker)}]
        torch.save(payload, path)
    elif kind == "exec":
        payload["optimizer"] = {"state": {0: {"step": _Exec(marker)}}}
        torch.save(payload, path)
    else:  # a bare pickle, not torch's zip format
        payload["student"] = _MakeDirectory(marker)
        path.write_bytes(pickle.dumps(payload))
    (folder / "last.txt").write_text(path.name + "\n", encoding="utf-8")
    return path


def _one_error_line(result: Any, only: bool = True) -> str:
    """The CLI failed with exit status 2 and one line ``error: ...`` (the only stderr line), no traceback.

    With ``only`` False the progress bar may come before it (an error during training).
    """
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.replace("\r", "\n").splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert lines[-1] == errors[0], result.stderr
    assert len(lines) == 1 or not only, result.stderr
    return errors[0]


def test_checkpoint_holds_only_tensors_and_plain_values(reference: Path) -> None:
    path = latest_checkpoint(reference)
    assert path is not None
    payload = torch.load(path, map_location="cpu", weights_only=True)
    check_plain(payload)
    assert payload["iteration"] == 4
    assert payload["sampler"]["next_iteration"] == 4
    assert set(payload["rng"][0]) == {"python", "torch"}  # one entry per rank
    assert payload["config"]["optim"]["epochs"] == 2  # the config as a plain dict


def test_old_layout_checkpoint_loads_and_resumes_exactly(
    reference: Path, manifest: Path, tmp_path: Path
) -> None:
    """A file written by the earlier ``torch.save`` code (RNG without Python's) resumes bit for bit."""
    payload = torch.load(
        reference / "checkpoints" / "iteration_0000002.pt", map_location="cpu", weights_only=True
    )
    payload["rng"] = [{"torch": rank["torch"]} for rank in payload["rng"]]
    run = tmp_path / "old"
    (run / "checkpoints").mkdir(parents=True)
    torch.save(payload, run / "checkpoints" / "iteration_0000002.pt")
    (run / "checkpoints" / "last.txt").write_text("iteration_0000002.pt\n", encoding="utf-8")

    result = pretrain(make_config(manifest, *FOUR_ITERATIONS), run, progress=False)

    assert result.iterations == 4
    resumed = read_checkpoint(run / "checkpoints" / "iteration_0000004.pt")
    uninterrupted = read_checkpoint(reference / "checkpoints" / "iteration_0000004.pt")
    _assert_same_training_state(resumed, uninterrupted)


def _assert_same_training_state(left: dict[str, Any], right: dict[str, Any]) -> None:
    for part in ("student", "teacher", "objective"):
        assert left[part].keys() == right[part].keys()
        assert all(torch.equal(left[part][k], right[part][k]) for k in left[part]), part
    for index, state in right["optimizer"]["state"].items():
        assert all(torch.equal(left["optimizer"]["state"][index][k], v) for k, v in state.items())


@pytest.mark.slow
def test_two_process_resume_is_exact(manifest: Path, tmp_path: Path) -> None:
    """torchrun, 2 ranks with their own drop-path draws: stopped at 2 and resumed equals one run to 4."""
    options = (*FOUR_ITERATIONS, "train.batch_size_per_gpu=2")
    for run, extra in (("whole", ()), ("resumed", ("train.max_iterations=2",)), ("resumed", ())):
        done = run_torchrun(tmp_path / run, manifest, *options, *extra)
        assert done.returncode == 0, done.stderr[-3000:]
    resumed = read_checkpoint(tmp_path / "resumed" / "checkpoints" / "iteration_0000004.pt")
    whole = read_checkpoint(tmp_path / "whole" / "checkpoints" / "iteration_0000004.pt")
    _assert_same_training_state(resumed, whole)
    assert len(resumed["rng"]) == 2
    assert not torch.equal(resumed["rng"][0]["torch"], resumed["rng"][1]["torch"])  # one state per rank


@pytest.mark.parametrize("kind", ["makedirs", "exec", "bare_pickle"])
def test_planted_checkpoint_never_runs_on_resume(kind: str, manifest: Path, tmp_path: Path) -> None:
    run, marker = tmp_path / "run", tmp_path / "marker"
    planted = _plant(run, kind, marker)
    with pytest.raises(CheckpointError) as caught:
        pretrain(make_config(manifest, *FOUR_ITERATIONS), run, progress=False)
    message = str(caught.value)
    assert not marker.exists()
    assert "\n" not in message
    assert message.startswith(f"{planted}: pre-training checkpoint refused")
    assert message.endswith("do not load it, resume from another checkpoint or start a new run")
    assert not (run / "checkpoints" / "iteration_0000002.pt").exists()  # no training happened


@pytest.mark.parametrize(
    ("command", "kind"),
    [
        ("pretrain", "makedirs"),
        ("pretrain", "bare_pickle"),
        ("export-run", "makedirs"),
        ("export-run --checkpoint", "makedirs"),
        ("export-run --checkpoint", "exec"),
        ("export-run --checkpoint", "bare_pickle"),
    ],
)
def test_planted_checkpoint_never_runs_from_the_command_line(
    command: str, kind: str, manifest: Path, tmp_path: Path
) -> None:
    run, marker, out = tmp_path / "run", tmp_path / "marker", tmp_path / "exported"
    planted = _plant(run, kind, marker)
    if command == "pretrain":
        arguments = ["pretrain", "--config", str(TEST_CONFIG), "--out", str(run), "--data", str(manifest)]
    else:
        arguments = ["export-run", str(run), str(out)]
        if command.endswith("--checkpoint"):
            arguments += ["--checkpoint", str(planted)]
    line = _one_error_line(CliRunner().invoke(app, arguments))
    assert not marker.exists()
    assert line.startswith(f"error: {planted}: pre-training checkpoint refused")
    assert not out.exists()


@pytest.mark.slow
def test_planted_checkpoint_in_a_real_process(tmp_path: Path) -> None:
    """``python -m raddino export-run`` as a user runs it: stderr is the one line, exit status 2."""
    run, marker = tmp_path / "run", tmp_path / "marker"
    planted = _plant(run, "exec", marker)
    command = [sys.executable, "-m", "raddino", "export-run", str(run), str(tmp_path / "out")]
    command += ["--checkpoint", str(planted)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert not marker.exists()
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith(f"error: {planted}: pre-training checkpoint refused")


def _broken(kind: str, folder: Path, reference: Path) -> Path:
    path = folder / f"{kind}.pt"
    whole = (reference / "checkpoints" / "iteration_0000004.pt").read_bytes()
    if kind == "truncated":
        path.write_bytes(whole[: len(whole) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not_a_checkpoint":
        torch.save({"student": {}, "teacher": {}}, path)
    elif kind == "a_tensor":
        torch.save(torch.zeros(3), path)
    return path  # "missing": never written


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("truncated", "cannot read pre-training checkpoint (truncated or corrupt?)"),
        ("empty", "cannot read pre-training checkpoint (truncated or corrupt?)"),
        ("missing", "no such pre-training checkpoint"),
        ("not_a_checkpoint", "not a raddino pre-training checkpoint (no 'iteration', 'objective',"),
        ("a_tensor", "not a pre-training checkpoint (holds Tensor, expected a dict)"),
    ],
)
def test_broken_checkpoint_is_one_line(kind: str, expected: str, reference: Path, tmp_path: Path) -> None:
    path = _broken(kind, tmp_path, reference)
    arguments = ["export-run", str(reference), str(tmp_path / "out"), "--checkpoint", str(path)]
    line = _one_error_line(CliRunner().invoke(app, arguments))
    assert line.startswith(f"error: {path}: {expected}")


def _leave_temporary(folder: Path, target: str) -> Path:
    """What io.atomic's mkstemp leaves behind when the process is killed mid-write."""
    handle, name = tempfile.mkstemp(prefix=f".{target}.", suffix=".tmp", dir=folder)
    os.write(handle, b"half a checkpoint")
    os.close(handle)
    return Path(name)


def test_stale_temporaries_removed_when_a_run_resumes(
    reference: Path, manifest: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(reference, run)
    folder = run / "checkpoints"
    stale = [_leave_temporary(folder, "iteration_0000006.pt"), _leave_temporary(folder, "last.txt")]
    others = [folder / "notes.tmp", folder / ".iteration_0000006.pt", folder / ".config.yaml.abc.tmp"]
    for other in others:
        other.write_text("not ours", encoding="utf-8")

    result = pretrain(make_config(manifest, *FOUR_ITERATIONS), run, progress=False)  # nothing left to run

    assert result.iterations == 4
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in others)
    assert sorted(p.name for p in folder.glob("iteration_*.pt")) == [
        "iteration_0000002.pt",
        "iteration_0000004.pt",
    ]


def test_stale_temporary_removed_when_a_killed_first_run_saves(manifest: Path, tmp_path: Path) -> None:
    """Killed during its first save: no checkpoint to resume, only the temporary; gone at the next save."""
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    stale = _leave_temporary(folder, "iteration_0000002.pt")
    config = make_config(manifest, "optim.epochs=1", "train.checkpoint_period=2")
    pretrain(config, folder.parent, progress=False)
    assert not stale.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["iteration_0000002.pt", "last.txt"]


def test_remove_stale_temporaries_on_a_run_without_checkpoints(tmp_path: Path) -> None:
    assert remove_stale_temporaries(tmp_path / "never_started") == []


def test_disk_full_while_saving_a_checkpoint(
    manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write fails: one line naming the file, nothing half-written left, last.txt not advanced."""

    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    run = tmp_path / "run"
    arguments = ["pretrain", "--config", str(TEST_CONFIG), "--out", str(run), "--data", str(manifest)]
    arguments += ["--set", "optim.epochs=1", "--set", "train.checkpoint_period=2"]
    line = _one_error_line(CliRunner().invoke(app, arguments), only=False)
    target = run / "checkpoints" / "iteration_0000002.pt"
    assert line == f"error: {target}: cannot write: {os.strerror(errno.ENOSPC)}"
    assert not (run / "checkpoints").exists() or list((run / "checkpoints").iterdir()) == []
