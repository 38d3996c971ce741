"""The embeddings store at scale: resume by ids alone, a streamed merge, and vectors other tools query."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from raddino.features.store import (
    EmbeddingStore,
    ShardWriter,
    iter_vector_batches,
    pending_rows,
    read_embeddings,
)

DIM = 8


def _store(tmp_path: Path, batches: list[list[str]], seed: int = 0) -> EmbeddingStore:
    """One part per batch of ids, random vectors."""
    rng = np.random.default_rng(seed)
    store = EmbeddingStore(tmp_path / "emb.parquet")
    store.shards_dir.mkdir(parents=True, exist_ok=True)
    for ids in batches:
        writer = ShardWriter(store, max_rows=10_000)
        vectors = rng.normal(size=(len(ids), DIM)).astype(np.float32)
        writer.add(ids, [f"{row_id}.png" for row_id in ids], {"cls": torch.from_numpy(vectors)})
        writer.flush()
    return store


def test_merge_keeps_each_ids_first_row_and_the_vectors_as_fixed_size_lists(tmp_path: Path) -> None:
    store = _store(tmp_path, [["a", "b", "c"], ["c", "d"], ["a", "e"]])
    first: dict[str, np.ndarray] = {}
    for part in store.part_files():  # parts are merged in name order; the first one holding an id wins
        for row_id, vector in zip(*read_embeddings(part), strict=True):
            first.setdefault(row_id, vector)
    assert store.merge() == 5
    ids, cls = read_embeddings(store.out)
    assert sorted(ids) == ["a", "b", "c", "d", "e"]
    for row_id, vector in zip(ids, cls, strict=True):
        np.testing.assert_array_equal(vector, first[row_id])
    assert pq.read_schema(store.out).field("cls").type == pa.list_(pa.float32(), DIM)


def test_resume_finds_pending_rows_from_the_parts_ids(tmp_path: Path) -> None:
    store = _store(tmp_path, [["a", "b"], ["d"]])
    done = store.done_id_array()
    assert sorted(done.to_pylist()) == ["a", "b", "d"]  # in part order
    manifest_ids = pa.array(["a", "b", "c", "d", "e"])
    assert pending_rows(manifest_ids, done).tolist() == [2, 4]
    assert pending_rows(manifest_ids, pa.array([], pa.string())).tolist() == [0, 1, 2, 3, 4]


def test_variable_lists_from_other_writers_still_read(tmp_path: Path) -> None:
    # pandas and older files hold list<float>, not fixed-size lists: the same numbers come back.
    vectors = np.arange(12, dtype=np.float32).reshape(4, 3)
    path = tmp_path / "pandas.parquet"
    pq.write_table(
        pa.table({"id": list("abcd"), "cls": pa.array(vectors.tolist(), pa.list_(pa.float32()))}), path
    )
    np.testing.assert_array_equal(read_embeddings(path)[1], vectors)
    batches = list(iter_vector_batches(path, "cls", batch_rows=3))
    np.testing.assert_array_equal(np.concatenate(batches), vectors)
    ragged = tmp_path / "ragged.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "cls": pa.array([[1.0], [1.0, 2.0]])}), ragged)
    with pytest.raises(ValueError, match="column 'cls' holds lists of 1 to 2 numbers; expected one length"):
        read_embeddings(ragged)


def _expected_neighbours(store: EmbeddingStore, query_id: str, k: int) -> list[str]:
    ids, cls = read_embeddings(store.out)
    unit = cls / np.linalg.norm(cls, axis=1, keepdims=True)
    cosine = unit @ unit[ids.index(query_id)]
    order = [index for index in np.argsort(-cosine, kind="stable") if ids[index] != query_id]
    return [ids[index] for index in order[:k]]


def test_duckdb_finds_nearest_neighbours_by_cosine_straight_from_the_file(tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    store = _store(tmp_path, [[f"img{index:02d}" for index in range(40)]])
    store.merge()
    # DuckDB reads a Parquet fixed-size list as FLOAT[] (a list): list_cosine_similarity takes it as it
    # is; the array_* functions need the cast cls::FLOAT[8] (the vector width).
    query = f"""
        SELECT e.id, list_cosine_similarity(e.cls, q.cls) AS cosine
        FROM '{store.out}' AS e, (SELECT cls FROM '{store.out}' WHERE id = 'img07') AS q
        WHERE e.id <> 'img07' ORDER BY cosine DESC LIMIT 5
    """
    found = [row[0] for row in duckdb.sql(query).fetchall()]
    assert found == _expected_neighbours(store, "img07", 5)
    cast = query.replace(
        "list_cosine_similarity(e.cls, q.cls)",
        f"array_cosine_similarity(e.cls::FLOAT[{DIM}], q.cls::FLOAT[{DIM}])",
    )
    assert [row[0] for row in duckdb.sql(cast).fetchall()] == found


def test_polars_finds_nearest_neighbours_by_cosine_straight_from_the_file(tmp_path: Path) -> None:
    pl = pytest.importorskip("polars")
    store = _store(tmp_path, [[f"img{index:02d}" for index in range(40)]])
    store.merge()
    frame = pl.scan_parquet(store.out)  # cls is Array(Float32, 8): no cast
    query = frame.filter(pl.col("id") == "img07").select("cls").collect().item().to_list()
    vector = pl.lit(query, dtype=pl.Array(pl.Float32, DIM))
    cosine = (pl.col("cls") * vector).arr.sum() / (
        (pl.col("cls") * pl.col("cls")).arr.sum().sqrt() * float(np.linalg.norm(query))
    )
    nearest = (
        frame.filter(pl.col("id") != "img07")
        .select("id", cosine=cosine)
        .sort("cosine", descending=True)
        .head(5)
        .collect()
    )
    assert nearest["id"].to_list() == _expected_neighbours(store, "img07", 5)
