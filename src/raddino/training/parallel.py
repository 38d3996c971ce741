"""Wrapping a network for many processes (FSDP2 per transformer block, or DDP) and clipping its gradients.

FSDP2 (``torch.distributed.fsdp.fully_shard``), as DINOv2 shards its student and teacher: every
transformer block of every :class:`~raddino.models.Encoder` inside the network is its own unit
(``encoder.blocks``), then the whole network (embeddings, final norm, heads). Modules that must follow the
trained one shard for shard (an EMA teacher) are sharded the same way, so their local shards line up. With
DDP only the trained network is wrapped; every process keeps a full copy of the others, kept identical by
identical updates. A single process wraps nothing. The process group itself is set up by
:func:`raddino.training.distributed.init_distributed`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from raddino.models import Encoder
from raddino.training.distributed import DistributedContext

ParallelStrategy = Literal["fsdp", "ddp"]


def shard_units(network: nn.Module) -> list[nn.Module]:
    """The modules FSDP2 shards on their own before the whole network: every encoder block, in order."""
    return [block for module in network.modules() if isinstance(module, Encoder) for block in module.blocks]


def shard(network: nn.Module) -> None:
    """Shard ``network`` in place with FSDP2: each of :func:`shard_units`, then the network itself."""
    from torch.distributed.fsdp import fully_shard

    for unit in shard_units(network):
        fully_shard(unit)
    fully_shard(network)


def wrap_for_training(
    network: nn.Module,
    context: DistributedContext,
    strategy: ParallelStrategy,
    *,
    followers: Sequence[nn.Module] = (),
) -> nn.Module:
    """The module to call in the training step (wrapped when distributed).

    Args:
        network: The network the optimiser trains (the student).
        context: This process's place in the job.
        strategy: ``fsdp`` (FSDP2, sharded per block) or ``ddp``.
        followers: Networks updated from ``network`` rather than by the optimiser (the EMA teacher); under
            FSDP2 they are sharded like ``network``, under DDP left whole.

    Returns:
        Under FSDP2, ``network`` itself (sharded in place: its parameters become DTensors); under DDP a
        ``DistributedDataParallel`` around it; in a single process ``network`` unchanged.
    """
    if not context.is_distributed:
        return network
    if strategy == "fsdp":
        shard(network)
        for follower in followers:
            shard(follower)
        return network
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(network, device_ids=device_ids)


def unwrap(module: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper (FSDP2 modules are not wrapped)."""
    return module.module if isinstance(module, DistributedDataParallel) else module


@contextlib.contextmanager
def gradient_sync(module: nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on accumulation micro-steps other than the last."""
    if enabled:
        yield
        return
    if isinstance(module, DistributedDataParallel):
        with module.no_sync():
            yield
        return
    setter: Any = getattr(module, "set_requires_gradient_sync", None)
    if callable(setter):  # an FSDP2 module
        setter(False)
        try:
            yield
        finally:
            setter(True)
        return
    yield


def clip_gradients(modules: Mapping[str, nn.Module], max_norm: float) -> dict[str, float]:
    """Clip the gradient norm of each module separately (DINOv2 clips each student module).

    Args:
        modules: Modules by name, e.g. ``{"backbone": encoder, "dino_head": head}``; one without
            gradients is skipped.
        max_norm: The largest norm kept; 0 or less measures without clipping.

    Returns:
        Each module's total gradient norm before clipping (the full norm under FSDP2, not a shard's).
    """
    norms: dict[str, float] = {}
    for name, module in modules.items():
        params = [param for param in module.parameters() if param.grad is not None]
        if not params:
            continue
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
        full = getattr(norm, "full_tensor", None)
        norms[name] = float(full() if callable(full) else norm)
    return norms
