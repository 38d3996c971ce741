"""kNN and search over the memory-mapped cache by blocks: the same neighbours (exactly) and numbers as
the in-memory products, float16 storage within a stated tolerance, FAISS where it is installed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_sets import SyntheticSet, write_embeddings

from raddino.evaluate.knn import (
    KnnConfig,
    knn_scores,
    l2_normalize,
    nearest,
    precision_at_k,
    run_knn,
    split_metrics,
)
from raddino.evaluate.labelled import load_labelled
from raddino.evaluate.neighbours import NeighbourError, exact_nearest, faiss_nearest
from raddino.evaluate.search import SearchConfig, search
from raddino.features.cache import FeatureConfig, FeatureTable
from raddino.features.vectors import FeatureView

HAS_FAISS = importlib.util.find_spec("faiss") is not None


def _vectors(rows: int, dim: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)


def test_blocks_give_the_neighbours_of_one_product_ties_by_index() -> None:
    memory, queries = _vectors(97), _vectors(23, seed=1)
    memory[40] = memory[3]  # an exact tie: both orders are right, the lower index comes first
    queries[0] = memory[3] * 2.0
    expected = nearest(l2_normalize(queries), l2_normalize(memory), k=10)
    view = FeatureView([memory[:, :5], memory[:, 5:]])  # two parts, as cls+patch_mean
    for query_block, memory_block in ((4, 7), (23, 97), (1, 1)):
        found = exact_nearest(queries, view, 10, query_block=query_block, memory_block=memory_block)
        assert torch.equal(found[1], expected[1])
        torch.testing.assert_close(found[0], expected[0], rtol=0, atol=1e-6)
    assert expected[1][0, :2].tolist() == [3, 40]


def test_votes_and_precision_by_blocks_equal_the_whole_computation() -> None:
    rng = np.random.default_rng(2)
    memory_labels = (rng.random((60, 3)) < 0.4).astype(np.float32)
    memory_labels[::5, 1] = np.nan
    query_labels = (rng.random((30, 3)) < 0.4).astype(np.float32)
    similarities, neighbours = nearest(l2_normalize(_vectors(30)), l2_normalize(_vectors(60, seed=3)), k=8)
    whole = knn_scores(similarities, neighbours, memory_labels, 8, 0.07, block=1000)
    np.testing.assert_array_equal(
        knn_scores(similarities, neighbours, memory_labels, 8, 0.07, block=7), whole
    )
    # The per-pair loop this replaced, as the reference (its shares were float32 means: rel 1e-6).
    labels = memory_labels[neighbours[:, :5].numpy()]
    shares = []
    for query, finding in zip(*np.nonzero(query_labels == 1), strict=True):
        known = labels[query, :, finding][~np.isnan(labels[query, :, finding])]
        if known.size:
            shares.append(known.mean())
    for block in (1, 4, 1000):
        assert precision_at_k(neighbours, query_labels, memory_labels, 5, block=block) == pytest.approx(
            np.mean(shares), rel=1e-6
        )


def test_knn_from_the_cache_equals_the_in_memory_path(synthetic_set: SyntheticSet, tmp_path: Path) -> None:
    features = FeatureConfig(embeddings=str(synthetic_set.informative), device="cpu")
    config = KnnConfig(
        input=str(synthetic_set.manifest),
        out=str(tmp_path / "knn"),
        features=features,
        ks=[3, 10],
        figure=False,
    )
    run_knn(config)
    saved = json.loads((tmp_path / "knn" / "knn.json").read_text())
    # In memory: every split's features as one array, one product per split (the earlier path).
    data = load_labelled(config.input, features, ["cls"])
    memory = l2_normalize(data.features("cls", "train"))
    for split in ("val", "test"):
        similarities, neighbours = nearest(l2_normalize(data.features("cls", split)), memory, 10)
        expected = split_metrics(
            similarities,
            neighbours,
            data.split_labels(split),
            data.split_labels("train"),
            [3, 10],
            0.07,
            data.names,
        )
        for k in (3, 10):
            assert _flat(saved["validation" if split == "val" else "test"][str(k)]) == pytest.approx(
                _flat(json.loads(json.dumps(expected[k]))), rel=1e-12, nan_ok=True
            )


def _flat(values: dict, prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}/"))
        else:
            flat[prefix + key] = float("nan") if value is None else value
    return flat


def test_float16_storage_keeps_knn_within_tolerance(synthetic_set: SyntheticSet, tmp_path: Path) -> None:
    """Stated tolerance: similarities within 2e-3 of float32's, macro AUPRC within 0.02."""
    results = {}
    for storage in ("float32", "float16"):
        features = FeatureConfig(embeddings=str(synthetic_set.informative), storage=storage)  # type: ignore[arg-type]
        results[storage] = run_knn(
            KnnConfig(
                input=str(synthetic_set.manifest),
                out=str(tmp_path / storage),
                features=features,
                figure=False,
            )
        )
        data = load_labelled(str(synthetic_set.manifest), features, ["cls"])
        results[storage + "_neighbours"] = exact_nearest(
            data.view("cls", "test"), data.view("cls", "train"), 20
        )
    exact_sims, exact_ids = results["float32_neighbours"]
    half_sims, half_ids = results["float16_neighbours"]
    torch.testing.assert_close(half_sims, exact_sims, rtol=0, atol=2e-3)
    overlap = np.mean(
        [len(set(a) & set(b)) / 20 for a, b in zip(exact_ids.tolist(), half_ids.tolist(), strict=True)]
    )
    assert overlap > 0.95
    assert results["float16"].summary["macro_auprc"].mean == pytest.approx(
        results["float32"].summary["macro_auprc"].mean, abs=0.02
    )


def test_search_reads_the_cache_and_float16_keeps_the_order(tmp_path: Path) -> None:
    vectors = _vectors(200, dim=16, seed=4)
    ids = [f"x{index:03d}" for index in range(200)]
    path = write_embeddings(tmp_path / "e.parquet", ids, {"cls": vectors})
    found = search(SearchConfig(embeddings=str(path), query="x007", k=5, device="cpu"))
    similarities, expected = nearest(l2_normalize(vectors[[7]]), l2_normalize(vectors), 6)
    assert [n.id for n in found.neighbours] == [ids[i] for i in expected[0, 1:].tolist()]  # x007 left out
    assert [n.path for n in found.neighbours] == [f"{ids[i]}.png" for i in expected[0, 1:].tolist()]
    assert found.neighbours[0].similarity == pytest.approx(float(similarities[0, 1]), abs=1e-6)
    half = search(SearchConfig(embeddings=str(path), query="x007", k=5, storage="float16", device="cpu"))
    assert [n.id for n in half.neighbours][:3] == [n.id for n in found.neighbours][:3]
    assert half.neighbours[0].similarity == pytest.approx(found.neighbours[0].similarity, abs=2e-3)


@pytest.mark.skipif(not HAS_FAISS, reason="faiss is not installed (an optional backend)")
def test_faiss_flat_finds_the_exact_neighbours(tmp_path: Path) -> None:
    memory, queries = _vectors(300, seed=5), _vectors(20, seed=6)
    expected = exact_nearest(queries, memory, 7)
    found = faiss_nearest(queries, FeatureView([memory]), 7, index="Flat")
    assert torch.equal(found[1], expected[1])
    torch.testing.assert_close(found[0], expected[0], rtol=0, atol=1e-5)
    approximate = faiss_nearest(queries, memory, 7, index="HNSW32")
    overlap = np.mean(
        [len(set(a) & set(b)) / 7 for a, b in zip(approximate[1].tolist(), expected[1].tolist(), strict=True)]
    )
    assert overlap > 0.9
    with pytest.raises(NeighbourError, match="not a FAISS index factory string"):
        faiss_nearest(queries, memory, 7, index="NoSuchIndex")


@pytest.mark.skipif(HAS_FAISS, reason="checks the message shown where faiss is absent")
def test_asking_for_faiss_without_it_is_one_line(synthetic_set: SyntheticSet, tmp_path: Path) -> None:
    table = FeatureTable.load(synthetic_set.informative, ["cls"])
    with pytest.raises(NeighbourError, match=r"faiss package is not installed.*backend exact") as error:
        faiss_nearest(table.view("cls"), table.view("cls"), 3)
    assert "\n" not in str(error.value)


def test_the_commands_take_the_storage_and_name_a_bad_one(
    synthetic_set: SyntheticSet, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from raddino.cli import app

    runner = CliRunner()
    common = [str(synthetic_set.manifest), "--embeddings", str(synthetic_set.informative), "--k", "5"]
    done = runner.invoke(app, ["knn", *common, "--out", str(tmp_path / "k"), "features.storage=float16"])
    assert done.exit_code == 0, done.output
    assert list(synthetic_set.informative.with_name("informative_vectors").glob("cls-*-float16.npy"))
    bad = runner.invoke(app, ["knn", *common, "--out", str(tmp_path / "bad"), "features.storage=float8"])
    assert bad.exit_code != 0
    assert "features.storage" in bad.output
    assert "float8" in bad.output
    assert "Traceback" not in bad.output
    search_done = runner.invoke(
        app, ["search", str(synthetic_set.informative), "img0003", "-k", "2", "--storage", "float16"]
    )
    assert search_done.exit_code == 0, search_done.output
    assert "nearest to img0003" in search_done.output
