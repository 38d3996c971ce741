"""Tar shards of prepared chest X-rays (WebDataset layout) for pre-training: ``raddino shard`` writes them
(:func:`write_shards`), ``pretrain`` reads them by member offset (:func:`open_shards`, ``train.shards``)."""

from raddino.data.shards.reader import ShardError, ShardImages, decode_image, open_shards, shard_files
from raddino.data.shards.writer import ShardRun, ShardSettings, ShardSummary, write_shards

__all__ = [
    "ShardError",
    "ShardImages",
    "ShardRun",
    "ShardSettings",
    "ShardSummary",
    "decode_image",
    "open_shards",
    "shard_files",
    "write_shards",
]
