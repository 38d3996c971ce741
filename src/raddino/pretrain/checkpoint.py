"""Pre-training's checkpoints: the engine's run folder, what the task stores in it, and earlier files.

A run's checkpoints are the engine's (:class:`~raddino.training.RunFolder`): ``RUN/checkpoints/
step_XXXXXXX.pt`` (``XXXXXXX`` = iterations done) and ``latest.txt``, read with ``weights_only=True``.
Besides the optimiser (full, by parameter name), the grad scaler and every rank's RNG, the task's part
holds the student and the teacher (full, unsharded state dicts, so a run resumes or exports on any number
of processes), the loss centres (``objective``), the sampler's position, the config and the encoder's
transformers config.

Before pre-training ran on the engine it wrote ``iteration_XXXXXXX.pt`` and ``last.txt``: one flat dict
with the same states (``iteration``, ``student``, ``teacher``, ``objective``, ``optimizer``, ``rng``,
``sampler``, ``config``, …; the oldest with ``backbone.*`` names and without Python's RNG). Such a run
resumes from its newest file exactly, and ``export-run`` reads them too; its ``metrics.jsonl`` records get
today's keys (:func:`upgrade_metrics`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from raddino.io.atomic import atomic_write_text
from raddino.io.state_file import StateFileError
from raddino.pretrain.meta_arch import rename_legacy_parts
from raddino.training import read_metrics
from raddino.training.run_folder import CHECKPOINT_FORMAT, LegacyLayout, RunFolder

WHAT = "pre-training checkpoint"
HINT = "rerun with --overwrite to start afresh, or pick a new --out"
# Entries every file of the earlier layout has; resume and export need them.
_LEGACY_REQUIRED = ("iteration", "student", "teacher", "objective", "optimizer", "config")
_TASK_PARTS = ("student", "teacher", "objective", "sampler", "config", "encoder_config")
# metrics.jsonl keys of the earlier loop → the engine's (``images_per_s`` was a timing, not a result).
_METRIC_KEYS = {
    "loss": "train/loss",
    "dino": "train/dino",
    "ibot": "train/ibot",
    "koleo": "train/koleo",
    "lr": "train/learning_rate",
    "wd": "train/weight_decay",
    "momentum": "train/momentum",
    "teacher_temp": "train/teacher_temperature",
    "last_layer_lr": "train/last_layer_learning_rate",
}


class CheckpointError(StateFileError):
    """A pre-training checkpoint is missing, unreadable, or not one a run or an export can use; one line."""


def upgrade_legacy(payload: dict[str, Any], path: Path) -> dict[str, Any]:
    """A file of the earlier layout as the engine's payload (the states unchanged).

    Raises:
        CheckpointError: it lacks one of the entries every such file has.
    """
    missing = [key for key in _LEGACY_REQUIRED if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: not a raddino {WHAT} (no {', '.join(map(repr, missing))})")
    payload = rename_legacy_parts(payload)  # runs from before SSLNetwork.encoder
    return {
        "format": CHECKPOINT_FORMAT,
        "step": int(payload["iteration"]),
        "fingerprint": "",
        "optimization": {"optimizer": payload["optimizer"]},
        "scaler": payload.get("scaler"),
        "rng": payload.get("rng") or [],
        "world_size": payload.get("world_size"),
        "task": {part: payload[part] for part in _TASK_PARTS if part in payload},
    }


LEGACY_LAYOUT = LegacyLayout(re.compile(r"^iteration_(\d+)\.pt$"), "last.txt", upgrade_legacy)


def run_folder(run: str | Path) -> RunFolder:
    """The engine's run folder of a pre-training run (reads the earlier layout's files too)."""
    return RunFolder(run, WHAT, HINT, legacy=LEGACY_LAYOUT)


def latest_checkpoint(run: str | Path) -> Path | None:
    """The newest complete checkpoint of a run (``latest.txt``'s; else an earlier layout's), or None."""
    return run_folder(run).latest()


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The states of a checkpoint file of either layout, in one dict.

    Returns:
        ``step``, ``student``, ``teacher``, ``objective``, ``config``, ``encoder_config``, ``sampler``,
        ``optimizer``, ``rng`` and ``world_size`` (those the file holds).

    Raises:
        StateFileError: missing, truncated or corrupt, holding Python objects (refused, never run), or
            not a pre-training checkpoint; one line naming the file.
    """
    path = Path(path)
    state = run_folder(path.parent.parent).load_checkpoint(path)
    task = state.get("task")
    if not isinstance(task, dict) or not all(part in task for part in ("student", "teacher", "config")):
        raise CheckpointError(f"{path}: not a {WHAT} (no student, teacher and config in it)")
    optimization = state.get("optimization") or {}
    return {
        **task,
        "step": state["step"],
        "optimizer": optimization.get("optimizer"),
        "rng": state.get("rng") or [],
        "world_size": state.get("world_size"),
    }


def upgrade_metrics(run: Path) -> bool:
    """Give the records of the earlier loop in ``RUN/metrics.jsonl`` the engine's keys (``loss`` →
    ``train/loss``, ``lr`` → ``train/learning_rate``, ``grad_norm_backbone`` → ``train/grad_norm_backbone``;
    ``images_per_s`` dropped), so a resumed run's log reads as one; returns whether any changed."""
    records = read_metrics(run)
    if not any(key in _METRIC_KEYS or key.startswith("grad_norm_") for r in records for key in r):
        return False
    upgraded = []
    for record in records:
        renamed: dict[str, Any] = {}
        for key, value in record.items():
            if key == "images_per_s":
                continue
            new = _METRIC_KEYS.get(key, f"train/{key}" if key.startswith("grad_norm_") else key)
            renamed[new] = value
        upgraded.append(renamed)
    atomic_write_text(run / "metrics.jsonl", "".join(json.dumps(record) + "\n" for record in upgraded))
    return True


__all__ = [
    "HINT",
    "LEGACY_LAYOUT",
    "WHAT",
    "CheckpointError",
    "latest_checkpoint",
    "read_checkpoint",
    "run_folder",
    "upgrade_legacy",
    "upgrade_metrics",
]
