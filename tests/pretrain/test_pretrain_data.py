"""The image stream, the iBOT mask plan and the dataset: the same batches whatever the world size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pretrain_helpers import make_config, make_phantoms

from raddino.io.manifest import read_manifest, write_manifest
from raddino.pretrain.dataset import MaskPlanner, PretrainDataset
from raddino.pretrain.loader import Collator, build_augmentation
from raddino.pretrain.sampler import StreamSampler


def test_ranks_split_the_single_process_stream() -> None:
    single = StreamSampler(10, 4, seed=3)
    ranks = [StreamSampler(10, 2, world_size=2, rank=r, seed=3) for r in range(2)]
    for iteration in range(6):
        assert single.batch(iteration) == ranks[0].batch(iteration) + ranks[1].batch(iteration)
    # Accumulation over 2 micro-batches of 2 takes the same images as one batch of 4.
    accumulated = StreamSampler(10, 2, accumulation_steps=2, seed=3)
    for iteration in range(6):
        assert single.batch(iteration) == accumulated.batch(iteration, 0) + accumulated.batch(iteration, 1)


def test_every_pass_is_a_permutation_and_resume_continues_the_stream() -> None:
    sampler = StreamSampler(7, 3, seed=1, end_iteration=7)
    indices = [index for batch in sampler for _, index in batch]  # 21 positions = 3 passes
    for data_pass in range(3):
        assert sorted(indices[7 * data_pass : 7 * (data_pass + 1)]) == list(range(7))
    assert indices[:7] != indices[7:14]  # a new order each pass
    resumed = StreamSampler(7, 3, seed=1, start_iteration=4, end_iteration=7)
    assert [index for batch in resumed for _, index in batch] == indices[12:]
    assert len(resumed) == 3


def test_mask_plan_is_dinov2s_rule_and_independent_of_world_size() -> None:
    grid = (8, 8)
    planner = MaskPlanner(grid, (0.1, 0.5), 0.5, micro_batch_images=4, seed=0)
    for step in range(3):
        positions = list(range(4 * step, 4 * step + 4))
        whole = planner.masks(positions)  # (8, 64): crop 0 of 4 images, then crop 1
        halves = [planner.masks(positions[:2]), planner.masks(positions[2:])]
        assert torch.equal(whole[:4], torch.cat([halves[0][:2], halves[1][:2]]))
        assert torch.equal(whole[4:], torch.cat([halves[0][2:], halves[1][2:]]))
        ratios = whole.float().mean(dim=1)
        masked = ratios[ratios > 0]
        assert len(masked) == 4  # round(8 crops × 0.5)
        # Linspace slots over [0.1, 0.5]: the block generator may fall a few patches short of its target.
        assert masked.max() <= 0.5
        assert sorted(masked.tolist())[-1] > 0.3


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_phantoms(tmp_path_factory.mktemp("data") / "phantoms", n=4)


def test_dataset_crops_depend_only_on_the_stream_position(manifest: Path) -> None:
    config = make_config(manifest)
    dataset = PretrainDataset(read_manifest(manifest), build_augmentation(config), seed=0)
    first, again, other = dataset[(5, 1)], dataset[(5, 1)], dataset[(6, 1)]
    assert first["global_crops"][0].shape == (3, 56, 56)
    assert first["local_crops"][0].shape == (3, 28, 28)
    assert len(first["local_crops"]) == 2
    assert torch.equal(first["global_crops"][0], again["global_crops"][0])
    assert not torch.equal(first["global_crops"][0], other["global_crops"][0])
    batch = Collator(config, 14, micro_batch_images=2)([first, other])
    assert batch["global_crops"].shape == (4, 3, 56, 56)
    assert batch["masks"].shape == (4, 16)
    assert int(batch["n_masked_patches"]) == int(batch["masks"].sum()) > 0


def test_unreadable_image_is_replaced_and_reported(manifest: Path, tmp_path: Path) -> None:
    rows = read_manifest(manifest)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    listed = [{"path": str(broken), "id": "broken"}] + [
        {"path": str(rows.resolve(row)), "id": row["id"]} for row in rows.rows
    ]
    csv = write_manifest(listed, tmp_path / "manifest.csv", columns=["path", "id"])
    config = make_config(Path(csv))
    dataset = PretrainDataset(read_manifest(Path(csv)), build_augmentation(config), seed=0)
    sample = dataset[(0, 0)]
    assert [path for path, _ in sample["failures"]] == [str(broken)]
    replacement = dataset[(0, 1)]  # the next image, same position: the same random draws
    assert torch.equal(sample["global_crops"][0], replacement["global_crops"][0])
    assert np.isfinite(sample["global_crops"][0].numpy()).all()
