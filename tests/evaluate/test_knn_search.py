from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_sets import SyntheticSet, write_embeddings

from raddino.evaluate.knn import KnnConfig, knn_scores, nearest, precision_at_k, run_knn
from raddino.evaluate.search import SearchConfig, SearchError, search
from raddino.features.cache import FeatureConfig


def test_weighted_vote_by_hand_with_a_missing_label() -> None:
    similarities = torch.tensor([[0.9, 0.5, 0.1]])
    neighbours = torch.tensor([[0, 1, 2]])
    memory_labels = np.array([[1.0], [0.0], [np.nan]])
    weights = np.exp(np.array([0.9, 0.5]) / 0.1)  # the third neighbour's label is unknown
    scores = knn_scores(similarities, neighbours, memory_labels, k=3, temperature=0.1)
    assert scores[0, 0] == pytest.approx(weights[0] / weights.sum())
    only_first = knn_scores(similarities, neighbours, memory_labels, k=1, temperature=0.1)
    assert only_first[0, 0] == pytest.approx(1.0)


def test_nearest_finds_the_most_similar_rows_in_order() -> None:
    memory = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), dim=1)
    query = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2]]), dim=1)
    similarities, indices = nearest(query, memory, k=2, chunk=1)
    assert indices.tolist() == [[0, 2]]
    assert similarities[0, 0].item() == pytest.approx(1 / math.sqrt(1.04))


def test_precision_at_k_counts_positive_neighbours_of_positive_findings() -> None:
    neighbours = torch.tensor([[0, 1], [2, 0]])
    memory = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, np.nan]])
    queries = np.array([[1.0, 0.0], [0.0, 1.0]])  # query 0 positive for finding 0; query 1 for finding 1
    # query 0, finding 0: neighbours 0 (1) and 1 (0) -> 0.5; query 1, finding 1: neighbour 2 unknown, 0 -> 0.0
    assert precision_at_k(neighbours, queries, memory, 2) == pytest.approx(0.25)


def test_knn_tells_informative_from_random_features(synthetic_set: SyntheticSet, tmp_path: Path) -> None:
    def run(embeddings: Path, out: str):  # type: ignore[no-untyped-def]
        config = KnnConfig(
            input=str(synthetic_set.manifest),
            out=str(tmp_path / out),
            features=FeatureConfig(embeddings=str(embeddings)),
            ks=[5, 20],
        )
        return run_knn(config)

    good, bad = run(synthetic_set.informative, "good"), run(synthetic_set.random, "bad")
    assert good.k in (5, 20)
    assert good.summary["macro_auprc"].mean > bad.summary["macro_auprc"].mean + 0.2
    assert good.summary["precision_at_k"].mean > bad.summary["precision_at_k"].mean
    payload = json.loads((tmp_path / "good" / "knn.json").read_text())
    assert set(payload["test"]) == {"5", "20"}
    assert (tmp_path / "good" / "knn.md").read_text().count("(chosen)") == 1
    assert (tmp_path / "good" / "knn.png").stat().st_size > 0


def test_search_by_id_excludes_the_query_and_ranks_by_cosine(tmp_path: Path) -> None:
    vectors = np.array([[1, 0, 0], [0.9, 0.1, 0], [0, 1, 0], [0.5, 0.5, 0]], np.float32)
    embeddings = write_embeddings(tmp_path / "e.parquet", ["a", "b", "c", "d"], {"cls": vectors})
    result = search(SearchConfig(embeddings=str(embeddings), query="a", k=2, out=str(tmp_path / "out")))
    assert [n.id for n in result.neighbours] == ["b", "d"]
    assert result.neighbours[0].similarity == pytest.approx(0.9 / math.sqrt(0.82), rel=1e-5)
    assert json.loads((tmp_path / "out" / "search.json").read_text())["neighbours"][1]["id"] == "d"
    assert (tmp_path / "out" / "search.png").stat().st_size > 0
    assert "query: a" in (tmp_path / "out" / "search_config.yaml").read_text()
    with pytest.raises(SearchError, match="neither an id"):
        search(SearchConfig(embeddings=str(embeddings), query="zzz"))


def test_search_with_an_image_query_embeds_it_with_the_recorded_model(
    xray_folder: Path, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    from raddino.features.embed import EmbedConfig, embed

    out = tmp_path / "emb.parquet"
    embed(EmbedConfig(input=str(xray_folder), model=str(tiny_encoder_dir), out=str(out), num_workers=0))
    query = xray_folder / "sub" / "image1.png"
    # A random-init encoder's CLS barely depends on the image (LayerScale starts at 1e-5); the mean patch
    # token carries the linear patch embedding of the pixels, so images differ there.
    result = search(SearchConfig(embeddings=str(out), query=str(query), k=3, column="patch_mean"))
    assert result.neighbours[0].id == "sub/image1"  # the image itself is in the file: cosine 1
    assert result.neighbours[0].similarity == pytest.approx(1.0, abs=1e-4)
    assert result.neighbours[1].similarity < result.neighbours[0].similarity
