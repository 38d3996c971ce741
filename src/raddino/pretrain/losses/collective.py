"""Sums and maxima across training processes that degrade to no-ops in a single process.

DINOv2's iBOT Sinkhorn-Knopp calls ``torch.distributed.all_reduce`` unconditionally, so a run without a
process group crashes; every reduction in these losses goes through here instead.
"""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True when a process group is initialised (any size, 1 included)."""
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    """Processes in the default group, 1 without one."""
    return dist.get_world_size() if is_distributed() else 1


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over processes in place (nothing happens without a process group) and return it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_reduce_max(tensor: torch.Tensor) -> torch.Tensor:
    """Element-wise maximum of ``tensor`` over processes, in place, and return it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return tensor


def sinkhorn_knopp(
    teacher_logits: torch.Tensor, teacher_temp: float, n_samples: torch.Tensor | int, n_iterations: int
) -> torch.Tensor:
    """Balanced soft assignments of samples to prototypes (SwAV's Sinkhorn-Knopp, as in DINOv2).

    Starting from ``exp(logits / temp)``, alternately normalises prototype rows to mass ``1 / K`` and
    sample columns to mass ``1 / n_samples`` (over every process), then rescales so each sample's row
    sums to 1. After the final column step every sample sums to exactly 1 and every prototype receives
    about ``n_samples / K`` in total.

    Args:
        teacher_logits: (N, K) logits of this process's samples.
        teacher_temp: Softmax temperature.
        n_samples: Samples over all processes (N × world size for equal shards).
        n_iterations: Row/column normalisation rounds (DINOv2: 3).

    Returns:
        (N, K) assignments, float32.
    """
    logits = teacher_logits.float() / teacher_temp  # (N, K)
    # Subtracting one shared maximum avoids exp overflow; every later normalisation divides it out.
    # A process may hold no rows (no masked patch on this rank) and must still join the reductions.
    local_max = logits.detach().max().reshape(1) if logits.numel() else logits.new_full((1,), -torch.inf)
    shift = all_reduce_max(local_max.clone())
    assignments = torch.exp(logits - shift).t()  # (K, N)
    n_prototypes = assignments.shape[0]
    total = all_reduce_sum(assignments.sum().reshape(1))
    assignments = assignments / total
    # A prototype (or sample) whose every entry underflowed stays at 0 instead of becoming 0 / 0.
    tiny = torch.finfo(assignments.dtype).tiny
    for _ in range(n_iterations):
        row_sums = all_reduce_sum(assignments.sum(dim=1, keepdim=True))  # (K, 1)
        assignments = assignments / row_sums.clamp_min(tiny) / n_prototypes
        column_sums = assignments.sum(dim=0, keepdim=True)  # (1, N): each sample lives on one process
        assignments = assignments / column_sums.clamp_min(tiny) / n_samples
    return (assignments * n_samples).t()  # (N, K), rows sum to 1
