"""Wrapping the student and teacher for many processes: FSDP2 per transformer block, or DDP.

FSDP2 (``torch.distributed.fsdp.fully_shard``), as DINOv2 shards its student and teacher: every
transformer block of the encoder is its own unit, then the whole network (embeddings, final norm, heads).
Student and teacher are sharded the same way so their local shards line up for the EMA. With DDP only the
student is wrapped; every process keeps a full teacher, kept identical by identical EMA updates.
A single process wraps nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from raddino.distributed import DistributedContext
from raddino.pretrain.config import Strategy
from raddino.pretrain.meta_arch import SSLMetaArch, SSLNetwork


def _shard(network: SSLNetwork, context: DistributedContext) -> None:
    from torch.distributed.fsdp import fully_shard

    for block in network.backbone.backbone.encoder.layer:
        fully_shard(block)
    fully_shard(network)


def wrap_for_training(model: SSLMetaArch, context: DistributedContext, strategy: Strategy) -> nn.Module:
    """The student module to call in the training step (wrapped when distributed).

    Under FSDP2 the student and the teacher are sharded in place (their parameters become DTensors)
    and the returned module is ``model.student`` itself; under DDP it is a ``DistributedDataParallel``
    around ``model.student``.
    """
    if not context.is_distributed:
        return model.student
    if strategy == "fsdp":
        _shard(model.student, context)
        _shard(model.teacher, context)
        return model.student
    device_ids = [context.device.index] if context.device.type == "cuda" else None
    return DistributedDataParallel(model.student, device_ids=device_ids)


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


def clip_gradients(network: SSLNetwork, max_norm: float) -> dict[str, float]:
    """Clip the gradient norm of the backbone and of each head separately (DINOv2 clips each student
    module); returns the norms before clipping."""
    norms: dict[str, float] = {}
    modules: dict[str, nn.Module] = {"backbone": network.backbone, **network.heads()}
    for name, module in modules.items():
        params = [param for param in module.parameters() if param.grad is not None]
        if not params:
            continue
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm > 0 else float("inf"))
        full = getattr(norm, "full_tensor", None)
        norms[name] = float(full() if callable(full) else norm)
    return norms
