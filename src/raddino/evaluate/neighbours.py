"""Nearest neighbours by cosine similarity over memory-mapped features: exact by chunks, or FAISS.

``exact`` (the default) computes every similarity, a block of queries against a block of the memory bank
at a time (one matrix product each, on the device asked for), and keeps a running top-k per query; memory
stays (query block × memory block) whatever the bank's size, and the answer is the same as one product of
every query with every row. Vectors are L2-normalised block by block, in float32.

``faiss`` (only where the ``faiss`` package is installed; raddino does not depend on it) builds a FAISS
index from an index-factory string over the normalised bank: ``Flat`` is exact, ``HNSW32`` or
``IVF4096,Flat`` are approximate and answer many queries over millions of rows faster. The index holds its
own float32 copy of the bank in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np
import torch

from raddino.features.vectors import FeatureView

Backend = Literal["exact", "faiss"]
Vectors = torch.Tensor | np.ndarray | FeatureView
# Rows per block. A CPU block of similarities is 1024 x 16384 x 4 B = 64 MiB; the memory block is wide
# because CPU top-k costs 2.2 ns per similarity over 16384 columns against 4 ns over 8192 (k = 200).
_QUERY_BLOCK = {"cpu": 1024, "other": 16384}
_MEMORY_BLOCK = {"cpu": 16384, "other": 65536}
_FAISS_TRAINING_ROWS = 100_000


class NeighbourError(ValueError):
    """The neighbour search cannot run as asked; the message names the setting."""


def _blocks(values: Vectors, rows: int) -> Iterator[tuple[int, torch.Tensor, bool]]:
    """(first row, (n, D) float32 rows, whether the rows are a fresh copy) of ``values``, by blocks."""
    if isinstance(values, FeatureView):
        for start, chunk in values.chunks(rows):
            yield start, torch.from_numpy(chunk), True
        return
    for start in range(0, len(values), rows):
        block = values[start : start + rows]
        if isinstance(block, torch.Tensor):
            yield start, block.float(), False
        else:
            yield start, torch.from_numpy(np.asarray(block, np.float32)), False


def _prepared(rows: torch.Tensor, device: torch.device, normalize: bool, fresh: bool = False) -> torch.Tensor:
    """Rows as float32 on ``device``, L2-normalised (in place where they are a copy of our own)."""
    moved = rows.to(device, torch.float32)
    if not normalize:
        return moved
    if fresh or moved is not rows:  # the same arithmetic as torch.nn.functional.normalize, in place
        return moved.div_(moved.norm(2, dim=1, keepdim=True).clamp_min(1e-12))
    return torch.nn.functional.normalize(moved, dim=1)


def _bank_fits(memory: Vectors, device: torch.device) -> bool:
    """Whether the whole normalised bank may stay on an accelerator (at most half of its free memory)."""
    if device.type == "cpu":
        return False
    size = len(memory) * (memory.shape[1] if not isinstance(memory, FeatureView) else memory.dim) * 4
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return size <= free // 2
    return size <= 2 * 2**30


def exact_nearest(
    queries: Vectors,
    memory: Vectors,
    k: int,
    device: str | torch.device = "cpu",
    normalize: bool = True,
    query_block: int | None = None,
    memory_block: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` most similar memory rows of every query, best first, computed exactly by blocks.

    Args:
        queries: (Q, D) query vectors (a tensor, an array or a memory-mapped :class:`FeatureView`).
        memory: (M, D) memory bank.
        k: Neighbours per query (at most M).
        device: Where the products run.
        normalize: L2-normalise the rows first (cosine similarity); False when they are unit vectors.
        query_block: Queries per block (default: 1024 on the CPU, 16384 elsewhere).
        memory_block: Memory rows per block (default: 16384 on the CPU, 65536 elsewhere).

    Returns:
        (Q, k) float32 similarities and (Q, k) int64 memory indices, on the CPU.
    """
    device = torch.device(device)
    kind = "cpu" if device.type == "cpu" else "other"
    query_rows = query_block or _QUERY_BLOCK[kind]
    memory_rows = memory_block or _MEMORY_BLOCK[kind]
    count, k = len(queries), min(k, len(memory))
    similarities = torch.empty((count, k), dtype=torch.float32)
    indices = torch.empty((count, k), dtype=torch.int64)
    resident = _bank_fits(memory, device)
    cached: list[tuple[int, torch.Tensor]] = []

    def bank() -> Iterator[tuple[int, torch.Tensor]]:
        """Normalised memory blocks on the device: read each time, or once where the bank fits there."""
        if cached:
            yield from cached
            return
        for start, chunk, fresh in _blocks(memory, memory_rows):
            rows = _prepared(chunk, device, normalize, fresh)  # (m, D)
            if resident:
                cached.append((start, rows))
            yield start, rows

    scores = torch.empty(0, device=device)  # reused between blocks of the same shape
    for query_start, query_chunk, fresh in _blocks(queries, query_rows):
        query = _prepared(query_chunk, device, normalize, fresh)  # (q, D)
        best_values = torch.empty((len(query), 0), device=device)
        best_indices = torch.empty((len(query), 0), dtype=torch.int64, device=device)
        for memory_start, rows in bank():
            if scores.shape != (len(query), len(rows)):
                scores = torch.empty((len(query), len(rows)), device=device)
            torch.mm(query, rows.T, out=scores)  # (q, m)
            top = scores.topk(min(k, rows.shape[0]), dim=1, sorted=False)
            values = torch.cat([best_values, top.values], dim=1)  # (q, <= 2k)
            candidates = torch.cat([best_indices, top.indices + memory_start], dim=1)
            if values.shape[1] > k:
                merged = values.topk(k, dim=1, sorted=False)
                values, candidates = merged.values, candidates.gather(1, merged.indices)
            best_values, best_indices = values, candidates
        stop = query_start + len(query)
        ordered = best_ordered(best_values.cpu(), best_indices.cpu())
        similarities[query_start:stop], indices[query_start:stop] = ordered
    return similarities, indices


def best_ordered(similarities: torch.Tensor, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each row's neighbours most similar first, equal similarities by memory index: one answer for ties
    (float32 similarities tie often in large banks), whatever the blocks were.

    Args:
        similarities: (Q, k) similarities in any order.
        indices: (Q, k) their memory indices.
    """
    by_index = indices.sort(dim=1, stable=True).indices
    similarities, indices = similarities.gather(1, by_index), indices.gather(1, by_index)
    by_similarity = similarities.sort(dim=1, descending=True, stable=True).indices
    return similarities.gather(1, by_similarity), indices.gather(1, by_similarity)


def faiss_nearest(
    queries: Vectors, memory: Vectors, k: int, index: str = "HNSW32", normalize: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """As :func:`exact_nearest`, through a FAISS index built from the factory string ``index``.

    Raises:
        NeighbourError: faiss is not installed, the factory string is not FAISS's, or the index found
            fewer than ``k`` neighbours for a query.
    """
    try:
        import faiss
    except ImportError as error:
        raise NeighbourError(
            "backend faiss: the faiss package is not installed (pip install faiss-cpu); or use backend exact"
        ) from error
    dim = memory.dim if isinstance(memory, FeatureView) else int(memory.shape[1])
    try:
        searcher = faiss.index_factory(dim, index, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as error:
        raise NeighbourError(f"faiss_index {index!r}: not a FAISS index factory string") from error
    cpu = torch.device("cpu")
    if not searcher.is_trained:  # IVF and PQ indexes learn their cells from a sample of the bank
        picked = np.linspace(0, len(memory) - 1, min(len(memory), _FAISS_TRAINING_ROWS)).astype(np.int64)
        sample = memory.take(picked) if isinstance(memory, FeatureView) else np.asarray(memory)[picked]
        searcher.train(_prepared(torch.as_tensor(sample), cpu, normalize).numpy())
    for _, chunk, fresh in _blocks(memory, _MEMORY_BLOCK["cpu"]):
        searcher.add(_prepared(chunk, cpu, normalize, fresh).numpy())
    k = min(k, len(memory))
    similarities = torch.empty((len(queries), k), dtype=torch.float32)
    indices = torch.empty((len(queries), k), dtype=torch.int64)
    for start, chunk, fresh in _blocks(queries, _QUERY_BLOCK["cpu"]):
        values, found = searcher.search(_prepared(chunk, cpu, normalize, fresh).numpy(), k)
        if (found < 0).any():
            raise NeighbourError(
                f"faiss_index {index!r} found fewer than {k} neighbours for some queries (an IVF index "
                "searches one cell); use HNSW32 or Flat, or backend exact"
            )
        ordered = best_ordered(torch.from_numpy(values), torch.from_numpy(found.astype(np.int64)))
        similarities[start : start + len(chunk)], indices[start : start + len(chunk)] = ordered
    return similarities, indices


def nearest_neighbours(
    queries: Vectors,
    memory: Vectors,
    k: int,
    backend: Backend = "exact",
    device: str | torch.device = "cpu",
    faiss_index: str = "HNSW32",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine nearest neighbours with the chosen backend: (Q, k) similarities and memory indices."""
    if backend == "faiss":
        return faiss_nearest(queries, memory, k, faiss_index)
    return exact_nearest(queries, memory, k, device)
