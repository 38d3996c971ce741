"""Loss reductions under gloo: a group of 1 changes nothing; 2 ranks equal one process on the whole batch."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from raddino.pretrain.losses import DINOLoss, iBOTPatchLoss

BATCH, PROTOTYPES = 12, 10


def _inputs() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    cls_logits = torch.randn(BATCH, PROTOTYPES, generator=generator)
    patch_logits = torch.randn(BATCH + 4, PROTOTYPES, generator=generator)
    return cls_logits, patch_logits


def _compute(cls_logits: torch.Tensor, patch_logits: torch.Tensor) -> dict[str, torch.Tensor]:
    dino, ibot = DINOLoss(PROTOTYPES), iBOTPatchLoss(PROTOTYPES)
    dino.update_center(cls_logits)
    ibot.update_center(patch_logits)
    return {
        "dino_sk": dino.sinkhorn_knopp_teacher(cls_logits, 0.5),
        "ibot_sk": ibot.sinkhorn_knopp_teacher(patch_logits, 0.5, torch.tensor([patch_logits.shape[0]])),
        "dino_center": dino.center.clone(),
        "ibot_center": ibot.center.clone(),
    }


def test_a_process_group_of_one_changes_nothing(tmp_path: Path):
    cls_logits, patch_logits = _inputs()
    alone = _compute(cls_logits, patch_logits)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        grouped = _compute(cls_logits, patch_logits)
    finally:
        dist.destroy_process_group()
    for key, value in alone.items():
        torch.testing.assert_close(grouped[key], value, msg=key)


def _rank_main(rank: int, world_size: int, store: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world_size)
    cls_logits, patch_logits = _inputs()
    # Uneven patch shards: each rank has its own number of masked patches.
    patch_split = [6, patch_logits.shape[0] - 6]
    cls_shard = cls_logits.chunk(world_size)[rank]
    patch_shard = patch_logits.split(patch_split)[rank]
    results = _compute(cls_shard, patch_shard)
    # A rank without any masked patch still joins the reductions.
    empty_split = patch_logits.split([0, patch_logits.shape[0]])[rank]
    results["ibot_sk_empty_rank"] = iBOTPatchLoss(PROTOTYPES).sinkhorn_knopp_teacher(
        empty_split, 0.5, torch.tensor([empty_split.shape[0]])
    )
    torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_equal_one_process_on_the_concatenated_batch(tmp_path: Path):
    cls_logits, patch_logits = _inputs()
    whole = _compute(cls_logits, patch_logits)

    mp.spawn(_rank_main, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)

    ranks = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    for key in ("dino_sk", "ibot_sk"):
        torch.testing.assert_close(torch.cat([r[key] for r in ranks]), whole[key], msg=key)
    assert tuple(ranks[0]["ibot_sk_empty_rank"].shape) == (0, PROTOTYPES)
    torch.testing.assert_close(ranks[1]["ibot_sk_empty_rank"], whole["ibot_sk"])
    for key in ("dino_center", "ibot_center"):
        for rank in ranks:
            torch.testing.assert_close(rank[key], whole[key], msg=key)
