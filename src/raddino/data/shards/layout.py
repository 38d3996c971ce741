"""What a shard folder holds: WebDataset-style tar files and, beside each, the index of its members.

A shard is a plain POSIX tar file (``shard-000000.tar``, WebDataset's ``ShardWriter`` naming) holding, per
image, ``KEY.png`` (the prepared 8- or 16-bit grey PNG) and ``KEY.json`` (the input row: ``row``, ``id``,
``source`` and the manifest's other columns), in that order. ``KEY`` is the input row number with nine
digits: WebDataset splits a member name at its first dot, so DICOM UIDs cannot be keys.

Beside it, ``shard-000000.index.json`` is written once the tar file is complete: the tar file's size in
bytes, the input rows it covers, each image member's ``(key, data offset, data size)`` and the rows that
failed. A reader seeks straight to an image without scanning the tar headers (a million 512-byte header
reads on network storage), and a tar file whose size differs from its index's is known to be truncated.
``shardindex.json`` lists the shards in WIDS's format (``wids-shard-index-v1``: ``url``, ``nsamples``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SHARD_NAME = "shard-{:06d}.tar"
INDEX_FORMAT = "raddino-shard-index-1"
KEY_DIGITS = 9
SETTINGS_NAME = "shard.yaml"
WIDS_INDEX_NAME = "shardindex.json"


def shard_path(folder: Path, number: int) -> Path:
    """The tar file of shard ``number`` in ``folder``."""
    return folder / SHARD_NAME.format(number)


def index_path(tar_path: Path) -> Path:
    """The index file beside a shard: ``shard-000000.tar`` → ``shard-000000.index.json``."""
    return tar_path.with_name(tar_path.name.removesuffix(".tar") + ".index.json")


def sample_key(row: int) -> str:
    """The WebDataset key of input row ``row`` (no dot: WebDataset splits names at the first one)."""
    return f"{row:0{KEY_DIGITS}d}"


@dataclass
class ShardIndex:
    """Where each image of one shard lies in its tar file.

    Attributes:
        tar_bytes: Size of the complete tar file.
        first_row: First input row the shard covers.
        end_row: One past its last input row.
        keys: Sample keys, in tar order.
        offsets: Byte offset of each image member's data.
        sizes: Byte size of each image member's data.
        failures: ``(path, stage, reason)`` of the rows of this shard that could not be prepared.
    """

    tar_bytes: int
    first_row: int
    end_row: int
    keys: list[str] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    failures: list[tuple[str, str, str]] = field(default_factory=list)

    def to_json(self) -> str:
        """The index file's text."""
        payload: dict[str, Any] = {
            "format": INDEX_FORMAT,
            "tar_bytes": self.tar_bytes,
            "rows": [self.first_row, self.end_row],
            "samples": [list(item) for item in zip(self.keys, self.offsets, self.sizes, strict=True)],
            "failures": [list(item) for item in self.failures],
        }
        return json.dumps(payload, separators=(",", ":")) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ShardIndex:
        """Parse an index file's text.

        Raises:
            ValueError: not a raddino shard index (the caller names the file).
        """
        payload = json.loads(text)
        if not isinstance(payload, dict) or payload.get("format") != INDEX_FORMAT:
            raise ValueError(f"not a shard index (expected format {INDEX_FORMAT})")
        first, end = (int(value) for value in payload["rows"])
        samples = payload["samples"]
        return cls(
            tar_bytes=int(payload["tar_bytes"]),
            first_row=first,
            end_row=end,
            keys=[str(key) for key, _, _ in samples],
            offsets=[int(offset) for _, offset, _ in samples],
            sizes=[int(size) for _, _, size in samples],
            failures=[(str(p), str(s), str(r)) for p, s, r in payload.get("failures", [])],
        )


def read_finished_index(tar_path: Path) -> ShardIndex | None:
    """The index of a finished shard, or ``None`` when the shard is missing, partial or its index unreadable.

    A shard is finished when its index exists and names the tar file's current size: the index is written
    after the tar file is renamed into place, so a run killed in between leaves a shard that is rewritten.
    """
    sidecar = index_path(tar_path)
    try:
        index = ShardIndex.from_json(sidecar.read_text(encoding="utf-8"))
        size = tar_path.stat().st_size
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return index if index.tar_bytes == size else None
