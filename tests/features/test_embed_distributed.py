"""Two ranks on CPU (gloo), as under ``torchrun --nproc_per_node=2``: each embeds its share, rank 0 merges."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch.multiprocessing as mp

from raddino.features.embed import EmbedConfig, embed
from raddino.features.store import read_embeddings


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _rank_main(rank: int, world_size: int, port: int, config: EmbedConfig) -> None:
    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world_size),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    import torch.distributed as dist

    summary = embed(config)
    assert summary.embedded == 5
    assert summary.failed == 1
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_ranks_give_the_single_process_result(tmp_path: Path, xray_folder: Path, tiny_encoder_dir: Path):
    (xray_folder / "bad.png").write_text("not an image")
    common = {
        "input": str(xray_folder),
        "model": str(tiny_encoder_dir),
        "batch_size": 2,
        "num_workers": 0,
        "device": "cpu",
    }
    single = embed(EmbedConfig(out=str(tmp_path / "single.parquet"), **common))  # type: ignore[arg-type]
    config = EmbedConfig(out=str(tmp_path / "ranks.parquet"), **common)  # type: ignore[arg-type]

    mp.spawn(_rank_main, args=(2, _free_port(), config), nprocs=2, join=True)

    single_ids, single_cls = read_embeddings(single.out)
    ids, cls = read_embeddings(tmp_path / "ranks.parquet")
    assert sorted(ids) == sorted(single_ids)
    order = [ids.index(row_id) for row_id in single_ids]
    np.testing.assert_allclose(cls[order], single_cls, atol=1e-5)
    assert len(list((tmp_path / "ranks_shards").glob("part-*.parquet"))) == 2  # one shard per rank
    errors = (tmp_path / "ranks_errors.csv").read_text().splitlines()
    assert len(errors) == 2
    assert "bad.png" in errors[1]
