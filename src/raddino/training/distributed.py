"""Process-group set-up shared by every command that can run under ``torchrun``.

One process per device; ``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``. Without them
everything here degrades to a single process, so the same code runs on a laptop and on 64 GPUs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

import torch
import torch.distributed as dist

DeviceName = Literal["auto", "cpu", "cuda", "mps"]


@dataclass(frozen=True)
class DistributedContext:
    """Where this process sits in the job."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """True on the process that writes shared outputs and shows progress."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        """Wait for every rank (no-op in a single process)."""
        if self.is_distributed and dist.is_initialized():
            dist.barrier()


def pick_device(name: DeviceName = "auto", local_rank: int = 0) -> torch.device:
    """The device to run on: ``auto`` prefers CUDA, then Apple's MPS, then the CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA device")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device(name)


def init_distributed(device: DeviceName = "auto") -> DistributedContext:
    """Join the ``torchrun`` process group if there is one (NCCL on CUDA, gloo otherwise).

    Safe to call more than once and in a plain ``python`` process (then rank 0 of 1).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = pick_device(device, local_rank)
    if world_size > 1 and not dist.is_initialized():
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
        dist.init_process_group(backend="nccl" if chosen.type == "cuda" else "gloo")
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank, device=chosen)
