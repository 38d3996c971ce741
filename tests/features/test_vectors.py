"""The memory-mapped vector copies the evaluations read: same values as the embeddings file, float16
within its rounding, written once and again only when the file changes, never an error for an older
cache, and one line for what cannot be served."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from raddino.features.cache import FeatureError, FeatureTable
from raddino.features.store import EmbeddingStore, ShardWriter, read_embeddings
from raddino.features.vectors import FeatureView, TextColumn, VectorFileError

# float16 keeps 11 significant bits: a value's rounding error is at most 2^-11 of it (normal range).
FLOAT16_RELATIVE = 2.0**-11


def _embeddings(
    path: Path, count: int = 50, dim: int = 8, seed: int = 0, tokens: bool = False, scale: float = 1.0
) -> tuple[Path, dict[str, np.ndarray]]:
    """An embeddings file as ``raddino embed`` writes it (shards of 16 rows), and the vectors in it."""
    rng = np.random.default_rng(seed)
    vectors = {
        "cls": (rng.normal(size=(count, dim)) * scale).astype(np.float32),
        "patch_mean": rng.normal(size=(count, dim)).astype(np.float32),
    }
    layer_patches = rng.normal(size=(count, 4, dim)).astype(np.float16)  # (N, h*w, D)
    store = EmbeddingStore(path)
    store.shards_dir.mkdir(parents=True, exist_ok=True)
    writer = ShardWriter(store, max_rows=16)
    ids = [f"img{index:03d}" for index in range(count)]
    for start in range(0, count, 16):
        part = slice(start, start + 16)
        writer.add(
            ids[part],
            [f"{row_id}.png" for row_id in ids[part]],
            {name: torch.from_numpy(values[part]) for name, values in vectors.items()},
            {
                "layer1_cls": torch.from_numpy(vectors["cls"][part]).half(),
                "layer1_patch_tokens": torch.from_numpy(layer_patches[part]),
            }
            if tokens
            else None,
        )
    writer.flush()
    store.merge()
    if tokens:
        vectors["layer1_cls"] = vectors["cls"].astype(np.float16).astype(np.float32)
        vectors["layer1_patch_mean"] = layer_patches.astype(np.float32).mean(axis=1)
    return path, vectors


def _copies(path: Path) -> list[Path]:
    return sorted(path.with_name(path.stem + "_vectors").glob("*.npy"))


def test_the_copies_hold_the_file_values_and_are_written_once(tmp_path: Path) -> None:
    path, vectors = _embeddings(tmp_path / "emb.parquet")
    table = FeatureTable.load(path, ["cls+patch_mean"])
    assert isinstance(table.vectors["cls"], np.memmap)  # read from disk, not copied into memory
    assert np.array_equal(
        table.matrix("cls+patch_mean"), np.concatenate([vectors["cls"], vectors["patch_mean"]], 1)
    )
    assert np.array_equal(table.matrix("cls", ["img007", "img003"]), vectors["cls"][[7, 3]])
    assert table.ids[3] == "img003"
    assert "img049" in table.ids
    assert "nope" not in table.ids
    written = {copy: copy.stat().st_mtime_ns for copy in _copies(path)}
    assert len(written) == 2
    FeatureTable.load(path, ["cls+patch_mean"])
    assert {copy: copy.stat().st_mtime_ns for copy in _copies(path)} == written  # reused, not rewritten


def test_a_cache_of_the_earlier_format_is_read_and_a_changed_file_gets_new_copies(tmp_path: Path) -> None:
    # An embeddings file without copies beside it is what every earlier cache looks like.
    path, vectors = _embeddings(tmp_path / "emb.parquet", count=20)
    assert np.array_equal(FeatureTable.load(path, ["cls"]).matrix("cls"), vectors["cls"])
    (old_copy,) = _copies(path)
    # A grown manifest: embed adds shards and merges the file again; the earlier copy is not read.
    _embeddings(tmp_path / "emb.parquet", count=40, seed=1)
    os.utime(path, ns=(1, 1))  # a distinct stamp even on a coarse clock
    grown = FeatureTable.load(path, ["cls"]).matrix("cls")
    assert np.array_equal(grown, read_embeddings(path)[1])
    assert grown.shape == (40, 8)
    assert old_copy not in _copies(path)  # removed
    assert len(_copies(path)) == 1
    EmbeddingStore(path).clear()  # embed --overwrite: the copies go with the rest
    assert not path.with_name("emb_vectors").exists()


def test_a_truncated_copy_is_written_again(tmp_path: Path) -> None:
    path, vectors = _embeddings(tmp_path / "emb.parquet")
    FeatureTable.load(path, ["cls"])
    (copy,) = _copies(path)
    copy.write_bytes(copy.read_bytes()[:100])
    assert np.array_equal(FeatureTable.load(path, ["cls"]).matrix("cls"), vectors["cls"])


def test_float16_storage_is_within_its_rounding_and_refuses_values_it_cannot_hold(tmp_path: Path) -> None:
    path, vectors = _embeddings(tmp_path / "emb.parquet", scale=30.0)
    table = FeatureTable.load(path, ["cls+patch_mean"], storage="float16")
    assert table.vectors["cls"].dtype == np.float16
    exact = np.concatenate([vectors["cls"], vectors["patch_mean"]], 1)
    served = table.matrix("cls+patch_mean")
    assert served.dtype == np.float32
    assert np.all(np.abs(served - exact) <= FLOAT16_RELATIVE * np.abs(exact) + 1e-7)
    big, _ = _embeddings(tmp_path / "big.parquet", scale=1e5)
    with pytest.raises(
        VectorFileError, match=r"big.parquet column 'cls'.*do not fit float16.*storage float32"
    ):
        FeatureTable.load(big, ["cls"], storage="float16")
    assert not _copies(big)  # nothing partial kept


def test_a_full_disk_names_the_copy_and_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, _ = _embeddings(tmp_path / "emb.parquet")

    def full(_: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("raddino.features.vectors.os.fsync", full)
    with pytest.raises(
        VectorFileError, match=r"emb_vectors/cls-.*\.npy: cannot write.*No space left"
    ) as error:
        FeatureTable.load(path, ["cls"])
    assert "\n" not in str(error.value)
    assert list(path.with_name("emb_vectors").iterdir()) == []  # no copy, no temporary


def test_a_read_only_folder_puts_the_copies_in_the_fallback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path, vectors = _embeddings(tmp_path / "archive" / "emb.parquet")
    monkeypatch.setattr("raddino.features.vectors.os.access", lambda *_: False)  # a read-only mount
    table = FeatureTable.load(path, ["cls"], fallback_dir=tmp_path / "cache")
    assert np.array_equal(table.matrix("cls"), vectors["cls"])
    assert len(list((tmp_path / "cache").glob("emb-*_vectors/cls-*.npy"))) == 1
    assert not path.with_name("emb_vectors").exists()


def test_layer_features_come_from_the_token_files(tmp_path: Path) -> None:
    path, vectors = _embeddings(tmp_path / "emb.parquet", tokens=True)
    table = FeatureTable.load(path, ["layer1_cls+layer1_patch_mean"])
    np.testing.assert_allclose(table.matrix("layer1_cls"), vectors["layer1_cls"], rtol=0, atol=0)
    np.testing.assert_allclose(table.matrix("layer1_patch_mean"), vectors["layer1_patch_mean"], atol=1e-6)
    with pytest.raises(FeatureError, match="layer 7 was not extracted"):
        FeatureTable.load(path, ["layer7_cls"])


def test_the_file_readers_agree_with_the_views(tmp_path: Path) -> None:
    path, _ = _embeddings(tmp_path / "emb.parquet")
    ids, cls = read_embeddings(path)
    table = FeatureTable.load(path, ["cls"])
    assert list(table.ids) == ids == pq.read_table(path, columns=["id"]).column("id").to_pylist()
    view = table.view("cls", np.array([5, 1, 9]))
    assert np.array_equal(view.take([2, 0]), cls[[9, 5]])
    assert np.array_equal(np.concatenate([chunk for _, chunk in view.chunks(2)]), cls[[5, 1, 9]])
    mean, std = FeatureView([cls]).mean_std()
    np.testing.assert_allclose(mean, cls.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(std, cls.std(axis=0, ddof=1), atol=1e-6)


def test_text_columns_look_up_many_values_at_once() -> None:
    column = TextColumn(["b", "a", "c", "a"])
    assert column.positions_of(["a", "z", "c"]).tolist() == [1, -1, 2]
    assert column.index_of("c") == 2
    assert column.index_of("z") == -1
    assert list(column.take([2, 0])) == ["c", "b"]
    assert column[1:3][0] == "a"
