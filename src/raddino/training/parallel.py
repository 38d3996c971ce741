"""Wrapping a network for many processes (FSDP2 per transformer block, or DDP) and clipping its gradients.

FSDP2 (``torch.distributed.fsdp.fully_shard``), as DINOv2 shards its student and teacher: every
transformer block of every :class:`~raddino.models.Encoder` inside the network is its own unit
(``encoder.blocks``), then the whole network (embeddings, final norm, heads). Modules that must follow the
trained one shard for shard (an EMA teacher) are sharded the same way, so their local shards line up. With
DDP only the trained network is wrapped; every process keeps a full copy of the others, kept identical by
identical updates. A single process wraps nothing. The process group itself is set up by
:func:`raddino.training.distributed.init_distributed`.

Checkpoints hold full states by parameter name (:func:`full_state_dict`, :class:`GatheredOptimization`),
gathered from the shards under FSDP2 and without DDP's ``module.`` prefix, so a run saved on 8 processes
resumes or exports on 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.nn.parallel import DistributedDataParallel

from raddino.models import Encoder
from raddino.training.distributed import DistributedContext
from raddino.training.step import Optimization

ParallelStrategy = Literal["fsdp", "ddp"]
_GATHER = StateDictOptions(full_state_dict=True, cpu_offload=True)  # the whole state, on rank 0's CPU
_SCATTER = StateDictOptions(full_state_dict=True)
# A parameter that never had a gradient (a head whose loss is off) has no optimiser state to restore.
_SCATTER_OPTIMIZER = StateDictOptions(full_state_dict=True, strict=False)


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


def full_state_dict(module: nn.Module) -> dict[str, Any]:
    """The whole state of a (wrapped or sharded) module by parameter name, on the CPU.

    Collective under FSDP2: every rank calls it; rank 0 receives the gathered state, the others an empty
    dict. DDP's ``module.`` prefix is not part of the names.
    """
    return get_model_state_dict(module, options=_GATHER)


def load_full_state_dict(module: nn.Module, state: Mapping[str, Any]) -> None:
    """Load a :func:`full_state_dict` into a module (each rank keeps its shard under FSDP2).

    Raises:
        RuntimeError: missing or unexpected names, or a shape that does not fit.
    """
    set_model_state_dict(module, dict(state), options=_SCATTER)


@dataclass
class GatheredOptimization(Optimization):
    """An :class:`~raddino.training.step.Optimization` whose checkpointed optimiser state is the full one,
    keyed by parameter name (gathered from every rank under FSDP2), so it loads on any number of processes.

    Attributes:
        trained: The module the optimiser's parameters belong to, as the step calls it (DDP- or
            FSDP2-wrapped); ``model`` when None.
    """

    trained: nn.Module | None = None

    @property
    def _trained(self) -> nn.Module:
        return self.trained if self.trained is not None else self.model

    def state_dict(self) -> dict[str, Any]:
        """Collective under FSDP2: every rank calls it."""
        return {"optimizer": get_optimizer_state_dict(self._trained, self.optimizer, options=_GATHER)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Parameters without a state in ``state`` keep none, as in an optimiser that never stepped them."""
        saved = state["optimizer"]
        set_optimizer_state_dict(self._trained, self.optimizer, saved, options=_SCATTER_OPTIMIZER)
        for name, parameter in unwrap(self._trained).named_parameters():
            if name not in saved["state"]:  # torch gives it a zero state of one step: drop it
                self.optimizer.state.pop(parameter, None)
