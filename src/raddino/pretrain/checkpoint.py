"""Pre-training checkpoints: everything needed to continue a run exactly where it stopped.

``RUN/checkpoints/iteration_XXXXXXX.pt`` holds the student and teacher (full, unsharded state dicts, so a
run can be resumed or exported on any number of processes), the optimiser, the loss centres, the grad
scaler, every rank's RNG states, the sampler's position and the config. Files are written atomically by
rank 0, and ``RUN/checkpoints/last.txt`` names the newest complete one; older ones beyond
``train.keep_checkpoints`` are removed.
"""

from __future__ import annotations

import re
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

from raddino.distributed import DistributedContext
from raddino.io.atomic import atomic_path, atomic_write_text

_NAME = re.compile(r"^iteration_(\d+)\.pt$")
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


def _rng_state(context: DistributedContext) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if context.device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(context.device)
    return state


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
    rng = _all_ranks(_rng_state(context), context)
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
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            torch.save(payload, temporary)
        atomic_write_text(path.parent / "last.txt", path.name + "\n")
        _prune(path.parent, keep)
    context.barrier()
    return path


def _prune(folder: Path, keep: int) -> None:
    found = sorted((int(m.group(1)), p) for p in folder.glob("iteration_*.pt") if (m := _NAME.match(p.name)))
    for _, old in found[: max(0, len(found) - max(keep, 1))]:
        old.unlink(missing_ok=True)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint file onto the CPU.

    Raises:
        CheckpointError: unreadable file.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, RuntimeError, EOFError) as error:
        raise CheckpointError(f"{path}: cannot read checkpoint: {error}") from error


def load_checkpoint(path: Path, state: TrainingState, context: DistributedContext) -> dict[str, Any]:
    """Restore ``state`` from a checkpoint (every rank reads the file); returns the payload.

    RNG states are restored per rank when the world size is the one the checkpoint was written with
    (the exact-resume case); otherwise each rank keeps its freshly seeded state.
    """
    payload = read_checkpoint(path)
    try:
        set_model_state_dict(state.student, payload["student"], options=_LOAD_OPTIONS)
        set_model_state_dict(state.teacher, payload["teacher"], options=_LOAD_OPTIONS)
        set_optimizer_state_dict(state.student, state.optimizer, payload["optimizer"], options=_LOAD_OPTIONS)
        state.objective.load_state_dict(payload["objective"])
    except (KeyError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"{path}: does not fit this run's model: {error}") from error
    if state.scaler is not None and payload.get("scaler") is not None:
        state.scaler.load_state_dict(payload["scaler"])
    rng = payload.get("rng") or []
    if payload.get("world_size") == context.world_size and len(rng) == context.world_size:
        mine = rng[context.rank]
        torch.set_rng_state(mine["torch"])
        if "cuda" in mine and context.device.type == "cuda":
            torch.cuda.set_rng_state(mine["cuda"], context.device)
    return payload
