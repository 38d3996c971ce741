"""Wrapping for many processes and per-module gradient clipping (two-rank parity: tests/pretrain)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from raddino.models import DINOHead, Encoder
from raddino.training.distributed import DistributedContext
from raddino.training.parallel import (
    GatheredOptimization,
    clip_gradients,
    full_state_dict,
    gradient_sync,
    load_full_state_dict,
    shard,
    shard_units,
    unwrap,
    wrap_for_training,
)
from raddino.training.schedules import Schedules

SINGLE = DistributedContext(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


class _Network(nn.Module):
    """An encoder and a head, as the pre-training student."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder.from_preset("test", seed=0, num_hidden_layers=3)
        self.head = DINOHead(32, 16, hidden_dim=32, bottleneck_dim=8)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(pixels).cls)  # (B, 16)


def test_shard_units_are_every_encoder_block_in_order():
    network = _Network()
    encoder = network.encoder
    units = shard_units(network)
    assert len(units) == 3
    assert all(unit is block for unit, block in zip(units, encoder.blocks, strict=True))
    assert shard_units(nn.Linear(2, 2)) == []


def test_a_single_process_wraps_nothing():
    network = _Network()
    assert wrap_for_training(network, SINGLE, "fsdp") is network
    assert wrap_for_training(network, SINGLE, "ddp") is network
    assert unwrap(network) is network


@pytest.fixture
def one_rank_group(tmp_path: Path) -> Iterator[None]:
    """A gloo process group of one rank (what torchrun gives each process, here without a launcher)."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_fsdp2_shards_each_block_then_the_network_and_computes_the_same(one_rank_group):
    from torch.distributed.fsdp import FSDPModule

    network, reference = _Network(), _Network()
    reference.load_state_dict(network.state_dict())
    pixels = torch.rand(2, 3, 56, 56, generator=torch.Generator().manual_seed(0))
    shard(network)
    encoder = network.encoder
    assert isinstance(network, FSDPModule)
    assert all(isinstance(block, FSDPModule) for block in encoder.blocks)
    assert not isinstance(encoder, FSDPModule)  # embeddings and final norm belong to the root unit
    assert all(type(parameter).__name__ == "DTensor" for parameter in network.parameters())
    torch.testing.assert_close(network(pixels), reference(pixels), atol=1e-6, rtol=0)


def test_clip_gradients_clips_each_module_on_its_own_and_reports_the_norm_before():
    first, second, idle = nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False), nn.Linear(2, 2)
    first.weight.grad = torch.full((2, 2), 3.0)  # norm 6
    second.weight.grad = torch.full((2, 2), 0.5)  # norm 1, below the limit
    norms = clip_gradients({"backbone": first, "dino_head": second, "idle": idle}, max_norm=3.0)
    assert norms == pytest.approx({"backbone": 6.0, "dino_head": 1.0})  # no gradients: not reported
    assert float(first.weight.grad.norm()) == pytest.approx(3.0, rel=1e-5)
    assert torch.equal(second.weight.grad, torch.full((2, 2), 0.5))
    first.weight.grad = torch.full((2, 2), 3.0)
    assert clip_gradients({"backbone": first}, max_norm=0.0) == pytest.approx({"backbone": 6.0})
    assert torch.equal(first.weight.grad, torch.full((2, 2), 3.0))  # 0 measures without clipping


class _Sharded(nn.Module):
    """Stands for an FSDP2 module: records what gradient_sync asks of it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[bool] = []

    def set_requires_gradient_sync(self, enabled: bool) -> None:
        self.calls.append(enabled)


def test_gradient_sync_is_skipped_on_micro_steps_and_restored_after_an_error():
    module = _Sharded()
    with gradient_sync(module, enabled=True):
        pass
    assert module.calls == []

    def failing_micro_step() -> None:
        with gradient_sync(module, enabled=False):
            assert module.calls == [False]
            raise RuntimeError("backward failed")

    with pytest.raises(RuntimeError, match="backward failed"):
        failing_micro_step()
    assert module.calls == [False, True]
    with gradient_sync(nn.Linear(2, 2), enabled=False):  # a plain module: nothing to skip
        pass


def test_gathered_optimization_checkpoints_full_states_by_parameter_name() -> None:
    """What a checkpoint holds of a (DDP-wrapped or sharded) student: names, not positions, so it loads into
    a network built afresh on any number of processes."""
    torch.manual_seed(0)
    network = _Network()
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-2)
    network(torch.rand(2, 3, 28, 28)).square().mean().backward()
    optimizer.step()
    optimization = GatheredOptimization(network, optimizer, Schedules({}, 0), trained=network)
    state, weights = optimization.state_dict(), full_state_dict(network)
    stepped = {name for name, parameter in network.named_parameters() if parameter.grad is not None}
    assert set(state["optimizer"]["state"]) == stepped  # the mask token, unused, has no moments
    assert set(weights) == set(network.state_dict())

    fresh = _Network()
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=1e-2)
    load_full_state_dict(fresh, weights)
    GatheredOptimization(fresh, fresh_optimizer, Schedules({}, 0)).load_state_dict(state)
    for (name, left), right in zip(network.named_parameters(), fresh.parameters(), strict=True):
        assert torch.equal(left, right), name
        if name in stepped:
            moments = optimizer.state[left]["exp_avg"], fresh_optimizer.state[right]["exp_avg"]
            assert torch.equal(*moments), name
        else:  # never stepped, as in the optimiser that was saved
            assert not fresh_optimizer.state[right], name
