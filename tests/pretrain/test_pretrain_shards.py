"""Pre-training fed from ``raddino shard``'s tar shards: the folder path's batches, exact resume with the data
position (shard + offset) in the checkpoint, the shard-order rule, bad images and changed shards."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from pretrain_helpers import TEST_CONFIG, Interrupt, assert_same_states, make_phantoms, stop_after

from raddino.config import ConfigError
from raddino.data.prepare import prepare_images
from raddino.data.shards import ShardSettings, open_shards, write_shards
from raddino.io.manifest import read_manifest
from raddino.pretrain.checkpoint import latest_checkpoint, read_checkpoint
from raddino.pretrain.config import load_pretrain_config
from raddino.pretrain.dataset import PretrainDataset
from raddino.pretrain.loader import Collator, build_augmentation
from raddino.pretrain.sampler import StreamSampler
from raddino.pretrain.train import pretrain
from raddino.training import read_metrics


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """12 phantoms prepared at 64 px into a folder, and the same into shards of 5 images."""
    root = tmp_path_factory.mktemp("shards")
    phantoms = make_phantoms(root / "phantoms", n=12)
    prepared = prepare_images(phantoms, root / "prepared", size=64, workers=1, progress=False)
    write_shards(
        phantoms, root / "shards", ShardSettings(images_per_shard=5, size=64), workers=1, progress=False
    )
    return {"folder": prepared.manifest_path, "shards": root / "shards"}


def _config(data: dict[str, Path], source: str, *overrides: str):  # type: ignore[no-untyped-def]
    key = "train.shards" if source == "shards" else "train.dataset_path"
    return load_pretrain_config(
        TEST_CONFIG, [f"{key}={data[source]}", "train.checkpoint_period=2", *overrides]
    )


@pytest.fixture(scope="module")
def full_run(data: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 uninterrupted iterations from the shards (batch 4 over 12 images: passes 0-2)."""
    run = tmp_path_factory.mktemp("full") / "run"
    pretrain(_config(data, "shards"), run, progress=False)
    return run


def test_shard_batches_equal_the_folder_batches(data: dict[str, Path]) -> None:
    config = _config(data, "folder")
    augmentation = build_augmentation(config)
    folder = PretrainDataset(read_manifest(data["folder"]), augmentation, seed=0)
    shards = PretrainDataset(open_shards(data["shards"]), augmentation, seed=0)
    assert len(folder) == len(shards) == 12
    sampler = StreamSampler(12, 4, seed=0)
    collate = Collator(config, 14, sampler.micro_batch_images)
    for iteration in range(5):  # over a pass boundary
        keys = sampler.batch(iteration)
        from_folder, from_shards = (collate([dataset[key] for key in keys]) for dataset in (folder, shards))
        for name in ("global_crops", "local_crops", "masks", "positions"):
            assert torch.equal(from_folder[name], from_shards[name]), name


def test_resume_from_shards_is_exact_and_saves_shard_and_offset(
    data: dict[str, Path], full_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    config = _config(data, "shards")
    with pytest.raises(Interrupt):  # killed one step after the checkpoint at iteration 4
        pretrain(config, run, progress=False, on_step=stop_after(5))
    checkpoint = read_checkpoint(latest_checkpoint(run))  # type: ignore[arg-type]
    sampler = checkpoint["sampler"]
    assert (sampler["next_iteration"], sampler["position"], sampler["order"]) == (4, 16, "global")
    index = StreamSampler(12, 4, seed=0).index_at(16)  # pass 1, offset 4
    assert (sampler["shard"], sampler["offset"]) == (f"shard-{index // 5:06d}.tar", index % 5)
    pretrain(config, run, progress=False)
    resumed, whole = (read_checkpoint(latest_checkpoint(r)) for r in (run, full_run))  # type: ignore[arg-type]
    for part in ("student", "teacher", "objective"):
        assert_same_states(resumed[part], whole[part])
    assert read_metrics(run) == read_metrics(full_run)  # every logged value, bit for bit


def test_pretraining_on_shards_equals_the_prepared_folder(
    data: dict[str, Path], full_run: Path, tmp_path: Path
) -> None:
    pretrain(_config(data, "folder", "train.max_iterations=3"), tmp_path / "folder", progress=False)
    assert read_metrics(tmp_path / "folder") == read_metrics(full_run)[:3]


def test_shard_order_reads_one_shard_after_another() -> None:
    blocks = [3, 2, 4]
    sampler = StreamSampler(9, 3, seed=5, blocks=blocks, end_iteration=6)
    stream = [index for batch in sampler for _, index in batch]  # 18 positions = 2 passes
    shard_of = np.repeat(np.arange(3), blocks)
    for data_pass in range(2):
        indices = stream[9 * data_pass : 9 * (data_pass + 1)]
        assert sorted(indices) == list(range(9))
        shards = shard_of[indices]
        assert (np.diff(shards) != 0).sum() == 2  # each shard's images together: two changes per pass
    assert stream[:9] != stream[9:]
    resumed = StreamSampler(9, 3, seed=5, blocks=blocks, start_iteration=4, end_iteration=6)
    assert [index for batch in resumed for _, index in batch] == stream[12:]
    with pytest.raises(ValueError, match="the blocks hold 8 images, the dataset 9"):
        StreamSampler(9, 3, blocks=[4, 4])


def test_resume_on_changed_shards_is_one_line(data: dict[str, Path], tmp_path: Path) -> None:
    run = tmp_path / "run"
    shards = tmp_path / "shards"
    shutil.copytree(data["shards"], shards)
    config = load_pretrain_config(TEST_CONFIG, [f"train.shards={shards}", "train.checkpoint_period=2"])
    with pytest.raises(Interrupt):
        pretrain(config, run, progress=False, on_step=stop_after(3))
    (shards / "shard-000000.tar").unlink()  # the same folder, one shard fewer
    (shards / "shardindex.json").unlink()
    with pytest.raises(ValueError, match=r"^the shards changed since the checkpoint: stream position 8 was"):
        pretrain(config, run, progress=False)


def test_a_corrupt_image_in_a_shard_is_replaced_and_named(data: dict[str, Path], tmp_path: Path) -> None:
    shards = tmp_path / "shards"
    shutil.copytree(data["shards"], shards)
    images = open_shards(shards)
    tar = shards / "shard-000000.tar"
    payload = bytearray(tar.read_bytes())
    start = int(images.offsets[1])
    payload[start + 40 : start + 200] = bytes(160)  # the PNG's data zeroed, the shard's size unchanged
    tar.write_bytes(bytes(payload))
    dataset = PretrainDataset(open_shards(shards), build_augmentation(_config(data, "shards")), seed=0)
    sample = dataset[(0, 1)]
    assert len(sample["failures"]) == 1
    name, reason = sample["failures"][0]
    assert name == f"{tar}:000000001"
    assert reason.startswith("corrupt image in shard")
    assert sample["global_crops"][0].shape == (3, 56, 56)  # the next image's crops


def test_shards_and_a_folder_or_a_split_together_are_refused(data: dict[str, Path]) -> None:
    with pytest.raises(
        ConfigError, match=r"train\.shards: set train\.shards or train\.dataset_path, not both"
    ):
        load_pretrain_config(
            TEST_CONFIG, [f"train.shards={data['shards']}", f"train.dataset_path={data['folder']}"]
        )
    with pytest.raises(ConfigError, match=r"train\.split: not available with train\.shards"):
        load_pretrain_config(TEST_CONFIG, [f"train.shards={data['shards']}", "train.split=train"])


def test_dataloader_workers_read_the_shards_the_same(
    data: dict[str, Path], full_run: Path, tmp_path: Path
) -> None:
    config = _config(data, "shards", "train.num_workers=2", "train.max_iterations=2")
    pretrain(config, tmp_path / "workers", progress=False)
    assert read_metrics(tmp_path / "workers") == read_metrics(full_run)[:2]
