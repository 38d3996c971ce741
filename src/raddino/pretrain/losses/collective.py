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


@torch.no_grad()
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
    # The (N, K) layout throughout (no transposed view, so every sum reads memory in order), in place,
    # and each normalisation one multiplication by a reciprocal vector instead of two divisions: with
    # 65,536 prototypes the passes over the whole matrix, not the sums, are the cost. The temperature
    # stays a division: it costs what a multiplication does here (memory-bound; measured on CPU), and
    # x · (1 / T) would round 1 / T in float32 and move every target by up to ~1e-6.
    assignments = torch.div(teacher_logits.float(), teacher_temp)  # (N, K), a new tensor
    # Subtracting one shared maximum avoids exp overflow; every later normalisation divides it out.
    # A process may hold no rows (no masked patch on this rank) and must still join the reductions.
    local_max = (
        assignments.max().reshape(1) if assignments.numel() else assignments.new_full((1,), -torch.inf)
    )
    shift = all_reduce_max(local_max.clone())
    assignments.sub_(shift).exp_()
    n_prototypes = assignments.shape[1]
    total = all_reduce_sum(assignments.sum().reshape(1))
    assignments.mul_(total.reciprocal())
    # A prototype (or sample) whose every entry underflowed stays at 0 instead of becoming 0 / 0.
    tiny = torch.finfo(assignments.dtype).tiny
    for iteration in range(n_iterations):
        prototype_sums = all_reduce_sum(assignments.sum(dim=0, keepdim=True))  # (1, K)
        assignments.mul_((prototype_sums.clamp_min(tiny) * n_prototypes).reciprocal())
        sample_sums = assignments.sum(dim=1, keepdim=True)  # (N, 1): each sample lives on one process
        if iteration < n_iterations - 1:
            assignments.mul_((sample_sums.clamp_min(tiny) * n_samples).reciprocal())
        else:  # the last column step's 1 / n_samples and the final × n_samples cancel
            assignments.mul_(sample_sums.clamp_min(tiny).reciprocal())
    if n_iterations == 0:
        assignments.mul_(n_samples)
    return assignments  # (N, K), rows sum to 1
