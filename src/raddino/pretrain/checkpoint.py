"""Pre-training checkpoints: everything needed to continue a run exactly where it stopped.

``RUN/checkpoints/iteration_XXXXXXX.pt`` holds the student and teacher (full, unsharded state dicts, so a
run can be resumed or exported on any number of processes), the optimiser, the loss centres, the grad
scaler, every rank's RNG states, the sampler's position and the config. Files are written atomically by
rank 0, and ``RUN/checkpoints/last.txt`` names the newest complete one; older ones beyond
``train.keep_checkpoints`` are removed.

A checkpoint holds tensors and plain values only (RNG states as tensors, the config as a dict, the sampler
position as ints) and is read with ``torch.load(weights_only=True)`` through :mod:`raddino.io.state_file`,
so a file planted in a run folder cannot run code when a run resumes or is exported. Files written before
this (the same layout, without Python's RNG state) load the same way.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from raddino.io.atomic import atomic_write_text
from raddino.io.state_file import StateFileError, capture_rng, load_state, restore_rng, save_state
from raddino.pretrain.meta_arch import rename_legacy_parts
from raddino.training.distributed import DistributedContext

_NAME = re.compile(r"^iteration_(\d+)\.pt$")
# What io.atomic's mkstemp leaves when a process is killed while writing a checkpoint or last.txt.
_TEMPORARY = re.compile(r"^\.(iteration_\d+\.pt|last\.txt)\..+\.tmp$")
_WHAT = "pre-training checkpoint"
_REFUSED_HINT = (
    "raddino pretrain writes only tensors and plain values, so this file was not written by it or was "
    "altered; do not load it, resume from another checkpoint or start a new run"
)
# Keys every version of save_checkpoint wrote; resume and export need them.
_REQUIRED = ("iteration", "student", "teacher", "objective", "optimizer", "config")
_OPTIONS = StateDictOptions(full_state_dict=True, cpu_offload=True)
_LOAD_OPTIONS = StateDictOptions(full_state_dict=True)


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or does not fit the run."""


@dataclass
class TrainingState:
    """The objects a checkpoint saves and restores."""

    student: nn.Module  # the wrapped or sharded student the optimiser steps
    teacher: nn.Module
    objective: nn.Module  # holds the loss centres
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None


def checkpoint_dir(run: Path) -> Path:
    """``RUN/checkpoints``."""
    return Path(run) / "checkpoints"


def latest_checkpoint(run: Path) -> Path | None:
    """The newest complete checkpoint of a run, or None."""
    folder = checkpoint_dir(run)
    pointer = folder / "last.txt"
    if pointer.is_file():
        candidate = folder / pointer.read_text(encoding="utf-8").strip()
        if candidate.is_file():
            return candidate
    found = sorted((int(m.group(1)), p) for p in folder.glob("iteration_*.pt") if (m := _NAME.match(p.name)))
    return found[-1][1] if found else None


def remove_stale_temporaries(run: Path) -> list[Path]:
    """Delete the temporary files a killed save left in ``RUN/checkpoints``; returns what was removed.

    A resumed run does this on rank 0 when it loads its checkpoint, and every save does it after writing,
    so a run that was killed before its first checkpoint is cleaned up at its next one. Only the run
    itself may call it: it would delete the temporary of a save in progress.
    """
    return _remove_temporaries(checkpoint_dir(run))


def _remove_temporaries(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    stale = sorted(p for p in folder.iterdir() if _TEMPORARY.match(p.name) and p.is_file())
    for temporary in stale:
        temporary.unlink(missing_ok=True)
    return stale


def _all_ranks(value: Any, context: DistributedContext) -> list[Any]:
    if not (context.is_distributed and dist.is_initialized()):
        return [value]
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def save_checkpoint(
    run: Path,
    iteration: int,
    state: TrainingState,
    context: DistributedContext,
    extra: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write ``iteration_XXXXXXX.pt`` (``iteration`` = the next iteration to run); collective call.

    Args:
        run: The run folder.
        iteration: Iterations completed.
        state: What to save.
        context: This process's place in the job (every rank must call this).
        extra: Plain values to store beside the states (config, sampler position).
        keep: Checkpoints kept on disk.
    """
    student = get_model_state_dict(state.student, options=_OPTIONS)
    teacher = get_model_state_dict(state.teacher, options=_OPTIONS)
    optimizer = get_optimizer_state_dict(state.student, state.optimizer, options=_OPTIONS)
    rng = _all_ranks(capture_rng(context.device), context)
    path = checkpoint_dir(run) / f"iteration_{iteration:07d}.pt"
    if context.is_main:
        payload = {
            "iteration": iteration,
            "student": student,
            "teacher": teacher,
            "objective": {k: v.detach().cpu() for k, v in state.objective.state_dict().items()},
            "optimizer": optimizer,
            "scaler": state.scaler.state_dict() if state.scaler is not None else None,
            "rng": rng,
            "world_size": context.world_size,
            **extra,
        }
        try:
            save_state(payload, path)
        except StateFileError as error:
            raise CheckpointError(str(error)) from None
        atomic_write_text(path.parent / "last.txt", path.name + "\n")
        _prune(path.parent, keep)
        _remove_temporaries(path.parent)
    context.barrier()
    return path


def _prune(folder: Path, keep: int) -> None:
    found = sorted((int(m.group(1)), p) for p in folder.glob("iteration_*.pt") if (m := _NAME.match(p.name)))
    for _, old in found[: max(0, len(found) - max(keep, 1))]:
        old.unlink(missing_ok=True)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint file onto the CPU with ``torch.load(weights_only=True)``.

    Raises:
        CheckpointError: missing, truncated or corrupt file, one holding Python objects (refused, never
            run), or one that lacks a checkpoint's entries; one line naming the file.
    """
    try:
        with warnings.catch_warnings():
            # A bare pickle (not torch's zip format) makes PyTorch warn about its protocol, then refuse it.
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            payload = load_state(path, _WHAT, _REFUSED_HINT)
    except StateFileError as error:
        raise CheckpointError(str(error)) from None
    missing = [key for key in _REQUIRED if key not in payload]
    if missing:
        raise CheckpointError(f"{path}: not a raddino {_WHAT} (no {', '.join(map(repr, missing))})")
    return payload


def load_checkpoint(path: Path, state: TrainingState, context: DistributedContext) -> dict[str, Any]:
    """Restore ``state`` from a checkpoint (every rank reads the file); returns the payload.

    RNG states are restored per rank when the world size is the one the checkpoint was written with
    (the exact-resume case); otherwise each rank keeps its freshly seeded state.
    """
    payload = rename_legacy_parts(read_checkpoint(path))  # runs from before SSLNetwork.encoder resume too
    if context.is_main:  # this run has not started writing: temporaries beside its checkpoint are stale
        _remove_temporaries(path.parent)
    try:
        set_model_state_dict(state.student, payload["student"], options=_LOAD_OPTIONS)
        set_model_state_dict(state.teacher, payload["teacher"], options=_LOAD_OPTIONS)
        set_optimizer_state_dict(state.student, state.optimizer, payload["optimizer"], options=_LOAD_OPTIONS)
        state.objective.load_state_dict(payload["objective"])
    except (KeyError, RuntimeError, ValueError, TypeError, AttributeError) as error:
        detail = " ".join(str(error).split())[:400] or type(error).__name__  # PyTorch's lists span lines
        raise CheckpointError(f"{path}: does not fit this run's model: {detail}") from error
    if state.scaler is not None and payload.get("scaler") is not None:
        state.scaler.load_state_dict(payload["scaler"])
    rng = payload.get("rng") or []
    if payload.get("world_size") == context.world_size and len(rng) == context.world_size:
        restore_rng(rng[context.rank], context.device)  # older files hold only "torch" (and "cuda")
    return payload
