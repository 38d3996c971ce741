"""Synthetic labelled datasets for the evaluation tests: embeddings files whose features carry (or do not
carry) the labels, and manifests over them, so probes, kNN and metadata run without an encoder."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from raddino.features.store import EmbeddingStore, ShardWriter

FINDINGS = ("effusion", "nodule", "cardiomegaly")


def write_embeddings(
    path: Path, ids: list[str], vectors: dict[str, np.ndarray], shard_size: int = 64
) -> Path:
    """An embeddings Parquet as ``raddino embed`` writes it, from given vectors."""
    store = EmbeddingStore(path)
    store.shards_dir.mkdir(parents=True, exist_ok=True)
    writer = ShardWriter(store, max_rows=shard_size)
    for start in range(0, len(ids), shard_size):
        chunk = slice(start, start + shard_size)
        writer.add(
            ids[chunk],
            [f"{row_id}.png" for row_id in ids[chunk]],
            {name: torch.from_numpy(values[chunk]) for name, values in vectors.items()},
        )
    writer.flush()
    store.merge()
    return path


def write_csv(path: Path, rows: list[dict[str, object]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


@dataclass
class SyntheticSet:
    manifest: Path
    informative: Path
    """Embeddings whose first dimensions are noisy copies of the labels."""
    random: Path
    """Embeddings of pure noise."""
    labels: np.ndarray
    rows: list[dict[str, object]]


def make_synthetic_set(folder: Path, count: int = 160, dim: int = 16, seed: int = 0) -> SyntheticSet:
    """``count`` images of ``count // 2`` subjects with three findings (10% of cells missing)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    labels = (rng.random((count, len(FINDINGS))) < 0.4).astype(np.float32)  # (N, C)
    ids = [f"img{index:04d}" for index in range(count)]
    rows: list[dict[str, object]] = []
    for index, row_id in enumerate(ids):
        row: dict[str, object] = {"path": f"{row_id}.png", "id": row_id, "subject_id": f"s{index // 2:03d}"}
        for column, name in enumerate(FINDINGS):
            missing = rng.random() < 0.1
            row[name] = "" if missing else str(int(labels[index, column]))
        rows.append(row)
    signal = np.zeros((count, dim), np.float32)
    signal[:, : len(FINDINGS)] = labels * 2.0
    informative = signal + rng.normal(0, 0.7, (count, dim)).astype(np.float32)
    noise = rng.normal(0, 1.0, (count, dim)).astype(np.float32)
    patch = rng.normal(0, 1.0, (count, dim)).astype(np.float32)
    return SyntheticSet(
        manifest=write_csv(folder / "manifest.csv", rows),
        informative=write_embeddings(
            folder / "informative.parquet", ids, {"cls": informative, "patch_mean": patch}
        ),
        random=write_embeddings(folder / "random.parquet", ids, {"cls": noise, "patch_mean": patch}),
        labels=labels,
        rows=rows,
    )
