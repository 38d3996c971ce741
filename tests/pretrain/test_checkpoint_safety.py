"""Checkpoints that run no code: planted pickles, old layouts, broken files, kills mid-save, a full disk.

A checkpoint is read with ``torch.load(weights_only=True)``; a file holding Python objects is refused with
one line, whatever entry point reads it (resume in the library, ``raddino pretrain``, ``raddino export-run``),
in the engine's layout (``step_XXXXXXX.pt`` + ``latest.txt``) and in the one pre-training wrote before it
ran on the engine (``iteration_XXXXXXX.pt`` + ``last.txt``).
"""

from __future__ import annotations

import errno
import json
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
from raddino.io.state_file import StateFileError, check_plain
from raddino.pretrain.checkpoint import latest_checkpoint, read_checkpoint, run_folder
from raddino.pretrain.train import pretrain
from raddino.training import read_metrics

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


HINT = "rerun with --overwrite to start afresh, or pick a new --out"
# The earlier loop's metrics.jsonl keys (and its timing) for those of the engine.
OLD_KEYS = {"train/loss": "loss", "train/dino": "dino", "train/ibot": "ibot", "train/koleo": "koleo",
            "train/learning_rate": "lr", "train/weight_decay": "wd", "train/momentum": "momentum",
            "train/teacher_temperature": "teacher_temp",
            "train/last_layer_learning_rate": "last_layer_lr"}  # fmt: skip


def _plant(run: Path, kind: str, marker: Path, layout: str = "earlier") -> Path:
    """The newest checkpoint of ``run`` (named by its pointer), whose loading would create ``marker``:
    ``iteration_0000004.pt`` + ``last.txt`` (the earlier layout) or ``step_0000004.pt`` + ``latest.txt``."""
    folder = run / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    earlier = layout == "earlier"
    path = folder / ("iteration_0000004.pt" if earlier else "step_0000004.pt")
    payload: dict[str, Any] = {"iteration": 4, "student": {}, "teacher": {}, "config": {}}
    if not earlier:
        payload = {"format": "raddino.training", "step": 4, "task": {"student": {}, "config": {}}}
    if kind == "makedirs":
        payload["rng"] = [{"torch": _MakeDirectory(marker)}]
        torch.save(payload, path)
    elif kind == "exec":
        payload["optimizer"] = {"state": {0: {"step": _Exec(marker)}}}
        torch.save(payload, path)
    else:  # a bare pickle, not torch's zip format
        payload["teacher"] = _MakeDirectory(marker)
        path.write_bytes(pickle.dumps(payload))
    (folder / ("last.txt" if earlier else "latest.txt")).write_text(path.name + "\n", encoding="utf-8")
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
    assert path.name == "step_0000004.pt"
    payload = torch.load(path, map_location="cpu", weights_only=True)
    check_plain(payload)
    assert payload["step"] == 4
    assert payload["task"]["sampler"]["next_iteration"] == 4
    assert set(payload["rng"][0]) == {"python", "torch"}  # one entry per rank
    assert payload["task"]["config"]["optim"]["epochs"] == 2  # the config as a plain dict
    names = set(payload["optimization"]["optimizer"]["state"])  # the full state, by parameter name
    assert "encoder.backbone.embeddings.cls_token" in names
    assert names <= set(payload["task"]["student"])


def _earlier_layout(step_file: Path) -> dict[str, Any]:
    """What the loop before the engine wrote for the same state: one flat dict, the oldest names
    (``backbone.*`` before ``SSLNetwork.encoder``), RNG without Python's."""
    payload = torch.load(step_file, map_location="cpu", weights_only=True)
    task, optimizer = payload["task"], payload["optimization"]["optimizer"]

    def old(name: str) -> str:
        return "backbone." + name.removeprefix("encoder.") if name.startswith("encoder.") else name

    optimizer = {
        "state": {old(name): value for name, value in optimizer["state"].items()},
        "param_groups": [{**g, "params": [old(n) for n in g["params"]]} for g in optimizer["param_groups"]],
    }
    flat = {key: task[key] for key in ("objective", "config", "encoder_config", "sampler")}
    return {
        **flat,
        "iteration": payload["step"],
        "student": {old(name): value for name, value in task["student"].items()},
        "teacher": {old(name): value for name, value in task["teacher"].items()},
        "optimizer": optimizer,
        "scaler": None,
        "rng": [{"torch": rank["torch"]} for rank in payload["rng"]],
        "world_size": payload["world_size"],
    }


def test_old_layout_checkpoint_loads_and_resumes_exactly(
    reference: Path, manifest: Path, tmp_path: Path
) -> None:
    """A run folder of the loop before the engine (``iteration_XXXXXXX.pt``, ``last.txt``, the earlier
    metrics keys) exports, and resumes bit for bit with one log of the engine's keys."""
    run = tmp_path / "old"
    (run / "checkpoints").mkdir(parents=True)
    torch.save(
        _earlier_layout(reference / "checkpoints" / "step_0000002.pt"),
        run / "checkpoints" / "iteration_0000002.pt",
    )
    (run / "checkpoints" / "last.txt").write_text("iteration_0000002.pt\n", encoding="utf-8")
    records = read_metrics(reference)
    old_records = [{OLD_KEYS.get(k, k.removeprefix("train/")): v for k, v in r.items()} for r in records]
    lines = [{**record, "images_per_s": 123.0} for record in old_records[:3]]  # step 3: after the checkpoint
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")

    exported = CliRunner().invoke(app, ["export-run", str(run), str(tmp_path / "exported")])
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "exported" / "model.safetensors").is_file()

    result = pretrain(make_config(manifest, *FOUR_ITERATIONS), run, progress=False)

    assert result.iterations == 4
    resumed = read_checkpoint(run / "checkpoints" / "step_0000004.pt")
    uninterrupted = read_checkpoint(reference / "checkpoints" / "step_0000004.pt")
    _assert_same_training_state(resumed, uninterrupted)
    assert read_metrics(run) == records  # the earlier keys upgraded, step 3 once, the timing gone


def _assert_same_training_state(left: dict[str, Any], right: dict[str, Any]) -> None:
    for part in ("student", "teacher", "objective"):
        assert left[part].keys() == right[part].keys()
        assert all(torch.equal(left[part][k], right[part][k]) for k in left[part]), part
    assert left["optimizer"]["state"].keys() == right["optimizer"]["state"].keys()
    for index, state in right["optimizer"]["state"].items():
        assert all(torch.equal(left["optimizer"]["state"][index][k], v) for k, v in state.items())


@pytest.mark.slow
def test_two_process_resume_is_exact(manifest: Path, tmp_path: Path) -> None:
    """torchrun, 2 ranks with their own drop-path draws: stopped at 2 and resumed equals one run to 4."""
    options = (*FOUR_ITERATIONS, "train.batch_size_per_gpu=2")
    for run, extra in (("whole", ()), ("resumed", ("train.max_iterations=2",)), ("resumed", ())):
        done = run_torchrun(tmp_path / run, manifest, *options, *extra)
        assert done.returncode == 0, done.stderr[-3000:]
    resumed = read_checkpoint(tmp_path / "resumed" / "checkpoints" / "step_0000004.pt")
    whole = read_checkpoint(tmp_path / "whole" / "checkpoints" / "step_0000004.pt")
    _assert_same_training_state(resumed, whole)
    assert len(resumed["rng"]) == 2
    assert not torch.equal(resumed["rng"][0]["torch"], resumed["rng"][1]["torch"])  # one state per rank
    assert read_metrics(tmp_path / "resumed") == read_metrics(tmp_path / "whole")


@pytest.mark.parametrize("layout", ["earlier", "engine"])
@pytest.mark.parametrize("kind", ["makedirs", "exec", "bare_pickle"])
def test_planted_checkpoint_never_runs_on_resume(
    kind: str, layout: str, manifest: Path, tmp_path: Path
) -> None:
    run, marker = tmp_path / "run", tmp_path / "marker"
    planted = _plant(run, kind, marker, layout)
    with pytest.raises(StateFileError) as caught:
        pretrain(make_config(manifest, *FOUR_ITERATIONS), run, progress=False)
    message = str(caught.value)
    assert not marker.exists()
    assert "\n" not in message
    assert message.startswith(f"{planted}: pre-training checkpoint refused")
    assert message.endswith(HINT)
    assert not (run / "checkpoints" / "step_0000002.pt").exists()  # no training happened


@pytest.mark.parametrize(
    ("command", "kind", "layout"),
    [
        ("pretrain", "makedirs", "earlier"),
        ("pretrain", "bare_pickle", "earlier"),
        ("pretrain", "exec", "engine"),
        ("export-run", "makedirs", "earlier"),
        ("export-run", "makedirs", "engine"),
        ("export-run --checkpoint", "makedirs", "earlier"),
        ("export-run --checkpoint", "exec", "earlier"),
        ("export-run --checkpoint", "bare_pickle", "earlier"),
        ("export-run --checkpoint", "exec", "engine"),
        ("export-run --checkpoint", "bare_pickle", "engine"),
    ],
)
def test_planted_checkpoint_never_runs_from_the_command_line(
    command: str, kind: str, layout: str, manifest: Path, tmp_path: Path
) -> None:
    run, marker, out = tmp_path / "run", tmp_path / "marker", tmp_path / "exported"
    planted = _plant(run, kind, marker, layout)
    if command == "pretrain":
        arguments = ["pretrain", "--config", str(TEST_CONFIG), "--out", str(run), "--data", str(manifest)]
    else:
        arguments = ["export-run", str(run), str(out)]
        if command.endswith("--checkpoint"):
            arguments += ["--checkpoint", str(planted)]
    line = _one_error_line(CliRunner().invoke(app, arguments))
    assert not marker.exists()
    assert line.startswith(f"error: {planted}: pre-training checkpoint refused")
    assert line.endswith(HINT)
    assert not out.exists()


def test_overwrite_starts_a_run_with_a_planted_checkpoint_afresh(manifest: Path, tmp_path: Path) -> None:
    run, marker = tmp_path / "run", tmp_path / "marker"
    _plant(run, "makedirs", marker)
    (run / "errors.csv").write_text("path,stage,reason\nx.png,read,gone\n", encoding="utf-8")
    arguments = ["pretrain", "--config", str(TEST_CONFIG), "--out", str(run), "--data", str(manifest)]
    arguments += ["--set", "optim.epochs=1", "--overwrite"]
    done = CliRunner().invoke(app, arguments)
    assert done.exit_code == 0, done.output
    assert not marker.exists()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["latest.txt", "step_0000002.pt"]
    assert (run / "errors.csv").read_text() == "path,stage,reason\n"  # the earlier failures went with it


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
    whole = (reference / "checkpoints" / "step_0000004.pt").read_bytes()
    if kind == "truncated":
        path.write_bytes(whole[: len(whole) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not_a_checkpoint":
        torch.save({"student": {}, "teacher": {}}, path)
    elif kind == "a_tensor":
        torch.save(torch.zeros(3), path)
    elif kind == "another_task":  # an engine checkpoint of a segmentation head
        torch.save({"format": "raddino.training", "step": 3, "task": {"head": {}}}, path)
    return path  # "missing": never written


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("truncated", "cannot read pre-training checkpoint (truncated or corrupt?)"),
        ("empty", "cannot read pre-training checkpoint (truncated or corrupt?)"),
        ("missing", "no such pre-training checkpoint"),
        ("not_a_checkpoint", "not a raddino pre-training checkpoint (no 'iteration', 'objective',"),
        ("a_tensor", "not a pre-training checkpoint (holds Tensor, expected a dict)"),
        ("another_task", "not a pre-training checkpoint (no student, teacher and config in it)"),
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
    stale = [
        _leave_temporary(folder, name) for name in ("step_0000006.pt", "latest.txt", "iteration_0000006.pt")
    ]
    stale.append(_leave_temporary(run, "metrics.jsonl"))
    others = [folder / "notes.tmp", folder / ".step_0000006.pt", run / ".config.yaml.abc.tmp"]
    for other in others:
        other.write_text("not ours", encoding="utf-8")

    result = pretrain(make_config(manifest, *FOUR_ITERATIONS), run, progress=False)  # nothing left to run

    assert result.iterations == 4
    assert not any(path.exists() for path in stale)
    assert all(path.exists() for path in others)
    assert sorted(p.name for p in folder.glob("step_*.pt")) == ["step_0000002.pt", "step_0000004.pt"]


def test_stale_temporary_removed_when_a_killed_first_run_saves(manifest: Path, tmp_path: Path) -> None:
    """Killed during its first save: no checkpoint to resume, only the temporary; gone when it reruns."""
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    stale = _leave_temporary(folder, "step_0000002.pt")
    config = make_config(manifest, "optim.epochs=1", "train.checkpoint_period=2")
    pretrain(config, folder.parent, progress=False)
    assert not stale.exists()
    assert sorted(p.name for p in folder.iterdir()) == ["latest.txt", "step_0000002.pt"]


def test_remove_stale_temporaries_on_a_run_without_checkpoints(tmp_path: Path) -> None:
    assert run_folder(tmp_path / "never_started").remove_stale_temporaries() == []


def test_disk_full_while_saving_a_checkpoint(
    manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write fails: one line naming the file, nothing half-written left, latest.txt not advanced."""

    def full_disk(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", full_disk)
    run = tmp_path / "run"
    arguments = ["pretrain", "--config", str(TEST_CONFIG), "--out", str(run), "--data", str(manifest)]
    arguments += ["--set", "optim.epochs=1", "--set", "train.checkpoint_period=2"]
    line = _one_error_line(CliRunner().invoke(app, arguments), only=False)
    target = run / "checkpoints" / "step_0000002.pt"
    assert line == f"error: {target}: cannot write: {os.strerror(errno.ENOSPC)}"
    assert not (run / "checkpoints").exists() or list((run / "checkpoints").iterdir()) == []
