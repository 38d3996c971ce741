"""Under FSDP2 the student is the root unit: its outputs are whole tensors, so FSDP2 has no view to warn of.

torchrun printed "FSDP2-wrapped module (FSDPSSLNetwork) returned a view tensor … wrong gradients" on every
rank: the network returned the CLS column of its token sequence and one crop size's rows of the head's
logits, views whose in-place change would skip FSDP2's pre-backward all-gather.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from raddino.models import DINOHead, Encoder
from raddino.pretrain.meta_arch import SSLNetwork, call_named
from raddino.training.parallel import shard


def _network(ibot_head: bool) -> SSLNetwork:
    encoder = Encoder.from_preset("test", seed=0)
    separate = DINOHead(32, 48, hidden_dim=32, bottleneck_dim=16) if ibot_head else None
    return SSLNetwork(encoder, DINOHead(32, 64, hidden_dim=32, bottleneck_dim=16), separate)


def _crops() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    global_crops = torch.rand(4, 3, 56, 56, generator=generator)  # 2 crops × B = 2
    local_crops = torch.rand(6, 3, 28, 28, generator=generator)
    masks = torch.zeros(4, 16, dtype=torch.bool)
    masks[:2, :5] = True
    return global_crops, local_crops, masks, masks.flatten().nonzero().squeeze(1)


@pytest.fixture
def one_rank_group(tmp_path: Path) -> Iterator[None]:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("ibot_head", [False, True], ids=["shared-head", "separate-ibot-head"])
def test_sharded_student_returns_no_view_and_names_the_same_outputs(one_rank_group, ibot_head: bool) -> None:
    reference, sharded = _network(ibot_head), _network(ibot_head)
    sharded.load_state_dict(reference.state_dict())
    shard(sharded)
    crops = _crops()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        raw = sharded(*crops)
        named = SSLNetwork.named_outputs(raw, n_local=6, patches=True)
        sum(value.float().square().sum() for value in named.values()).backward()
    assert [str(w.message) for w in caught if "view tensor" in str(w.message)] == []
    assert all(tensor._base is None for tensor in raw.values())
    expected = call_named(reference, *crops)
    assert set(named) == {"global_cls", "global_patches", "global_logits", "local_logits", "patch_logits"}
    shapes = {"global_cls": (4, 32), "global_patches": (4, 16, 32), "global_logits": (4, 64)}
    shapes |= {"local_logits": (6, 64), "patch_logits": (10, 48 if ibot_head else 64)}
    for name, tensor in named.items():
        assert tuple(tensor.shape) == shapes[name]
        torch.testing.assert_close(tensor, expected[name], atol=1e-6, rtol=0)
