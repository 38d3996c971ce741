"""``raddino knn``: k-nearest-neighbour classification and retrieval on L2-normalised frozen features.

The classifier is DINO's weighted kNN (Caron et al. 2021, §4.1; ``eval_knn.py``): cosine similarities to the
training images, the k most similar vote with weight ``exp(similarity / T)`` (T = 0.07), here per finding
and over known labels only, giving a score per finding for AUPRC / AUROC. k is picked on validation (the
training images are the memory bank) and the test split is reported at that k and at every k.

Retrieval precision@k: for each test image and each of its positive findings, the share of its k nearest
training images whose label for that finding is positive too (unknown labels left out).

The similarities are computed exactly by blocks (:mod:`raddino.evaluate.neighbours`) over the feature
cache's memory-mapped vectors, on ``features.device``, and the votes by blocks of queries: memory stays
about one copy of the vectors read (in the page cache) plus a constant, however many images there are.
``backend: faiss`` uses a FAISS index instead where the package is installed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from raddino.config import save_config
from raddino.evaluate.labelled import LabelledFeatures, load_labelled
from raddino.evaluate.labels import UncertainPolicy
from raddino.evaluate.metrics import MeanStd, auprc_per_label, auroc_per_label, macro, mean_std
from raddino.evaluate.neighbours import Backend, NeighbourError, best_ordered, nearest_neighbours
from raddino.evaluate.results import encoder_name, format_mean_std, markdown_table, write_results
from raddino.features.cache import FeatureConfig
from raddino.training.distributed import pick_device

logger = logging.getLogger(__name__)


@dataclass
class KnnConfig:
    """Settings of ``raddino knn``."""

    input: str = ""
    """Manifest CSV with label columns."""
    out: str = "knn"
    """Output folder."""
    features: FeatureConfig = field(default_factory=FeatureConfig)
    labels: list[str] = field(default_factory=list)
    """Label columns to classify; default: every column holding only 0 / 1 / -1 / empty."""
    uncertain: UncertainPolicy = "missing"
    """How a -1 (uncertain) label counts."""
    feature: str = "cls"
    """Feature choice (``cls`` by default, as in DINO's kNN evaluation)."""
    ks: list[int] = field(default_factory=lambda: [10, 20, 100, 200])
    """Neighbour counts (DINO's)."""
    temperature: float = 0.07
    """Vote temperature T of ``exp(similarity / T)`` (DINO's)."""
    split_ratios: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    """Train / val / test shares when the manifest has no ``split`` column (made by subject)."""
    split_seed: int = 0
    """Seed of the split by subject when the manifest has no ``split`` column."""
    figure: bool = True
    """Write ``knn.png`` (test metrics against k)."""
    backend: Backend = "exact"
    """exact: every similarity, by blocks of matrix products; faiss: a FAISS index (needs the faiss
    package), approximate unless ``faiss_index`` is Flat."""
    faiss_index: str = "HNSW32"
    """FAISS index factory string for ``backend: faiss`` (Flat, HNSW32, IVF4096,Flat, ...)."""

    def __post_init__(self) -> None:
        if not self.ks or min(self.ks) < 1:
            raise ValueError(f"ks must be positive integers, got {self.ks}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")


def l2_normalize(features: np.ndarray) -> torch.Tensor:
    """(N, D) rows scaled to unit length (cosine similarity becomes a dot product)."""
    return torch.nn.functional.normalize(torch.from_numpy(features).float(), dim=1)


def nearest(
    queries: torch.Tensor, memory: torch.Tensor, k: int, chunk: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """Similarities and indices of the ``k`` most similar memory rows for each query, best first.

    Args:
        queries: (Q, D) unit vectors.
        memory: (M, D) unit vectors.
        k: Neighbours (at most M).
        chunk: Queries per matrix product, so memory use stays (chunk, M).

    Returns:
        (Q, k) similarities and (Q, k) memory indices.
    """
    k = min(k, memory.shape[0])
    values, indices = [], []
    for start in range(0, queries.shape[0], chunk):
        similarity = queries[start : start + chunk] @ memory.T  # (q, M)
        top = best_ordered(*similarity.topk(k, dim=1))  # ties by memory index, as the blocked search
        values.append(top[0])
        indices.append(top[1])
    return torch.cat(values), torch.cat(indices)


def knn_scores(
    similarities: torch.Tensor,
    neighbours: torch.Tensor,
    memory_labels: np.ndarray,
    k: int,
    temperature: float,
    block: int = 1024,
) -> np.ndarray:
    """Temperature-weighted vote of the first ``k`` neighbours, per finding over known labels.

    Args:
        similarities: (Q, K) sorted similarities, K >= k.
        neighbours: (Q, K) memory indices.
        memory_labels: (M, C) 0/1 with NaN where missing.
        block: Queries voted at a time (memory stays (block, k, C)).

    Returns:
        (Q, C) scores in [0, 1]; the training prevalence where no neighbour has a known label.
    """
    memory = torch.from_numpy(memory_labels).double()  # (M, C)
    prevalence = torch.from_numpy(np.nan_to_num(np.nanmean(memory_labels, axis=0), nan=0.5))
    scores = np.empty((len(neighbours), memory_labels.shape[1]), np.float64)
    for start in range(0, len(neighbours), block):
        stop = start + block
        labels = memory[neighbours[start:stop, :k]]  # (q, k, C)
        weights = torch.exp(similarities[start:stop, :k].double() / temperature).unsqueeze(-1)  # (q, k, 1)
        known = ~torch.isnan(labels)
        votes = (weights * torch.nan_to_num(labels) * known).sum(dim=1)  # (q, C)
        total = (weights * known).sum(dim=1)  # (q, C)
        scores[start:stop] = torch.where(total > 0, votes / total.clamp(min=1e-300), prevalence).numpy()
    return scores


def precision_at_k(
    neighbours: torch.Tensor, query_labels: np.ndarray, memory_labels: np.ndarray, k: int, block: int = 1024
) -> float:
    """Mean over (query, positive finding) pairs of the share of the k neighbours positive for it.

    Neighbours whose label for the finding is unknown are left out of its share; a pair with none known
    is left out of the mean.
    """
    total, pairs = 0.0, 0
    for start in range(0, len(neighbours), block):
        stop = start + block
        labels = memory_labels[neighbours[start:stop, :k].numpy()]  # (q, k, C)
        known = ~np.isnan(labels)
        counted = known.sum(axis=1)  # (q, C)
        positive = np.where(known, labels, 0.0).sum(axis=1)  # (q, C)
        wanted = (query_labels[start:stop] == 1) & (counted > 0)
        total += float((positive[wanted] / counted[wanted]).sum())
        pairs += int(wanted.sum())
    return total / pairs if pairs else float("nan")


def split_metrics(
    similarities: torch.Tensor,
    neighbours: torch.Tensor,
    truth: np.ndarray,
    memory_labels: np.ndarray,
    ks: Sequence[int],
    temperature: float,
    names: list[str],
) -> dict[int, dict[str, Any]]:
    """AUPRC, AUROC and precision@k of one split's queries at every k, from their neighbours."""
    results = {}
    for k in sorted(set(ks)):
        scores = knn_scores(similarities, neighbours, memory_labels, k, temperature)
        auprc = auprc_per_label(scores, truth, names)
        auroc = auroc_per_label(scores, truth, names)
        results[k] = {
            "auprc": auprc,
            "auroc": auroc,
            "macro_auprc": macro(auprc),
            "macro_auroc": macro(auroc),
            "precision": precision_at_k(neighbours, truth, memory_labels, k),
        }
    return results


def _evaluate_split(
    data: LabelledFeatures, config: KnnConfig, split: str, device: torch.device
) -> dict[int, dict[str, Any]]:
    similarities, neighbours = nearest_neighbours(
        data.view(config.feature, split),
        data.view(config.feature, "train"),  # the memory bank
        max(config.ks),
        config.backend,
        device,
        config.faiss_index,
    )
    return split_metrics(
        similarities,
        neighbours,
        data.split_labels(split),
        data.split_labels("train"),
        config.ks,
        config.temperature,
        data.names,
    )


@dataclass
class KnnResult:
    """Test metrics at the k chosen on validation, and at every k."""

    k: int
    summary: dict[str, MeanStd]
    per_k: dict[int, dict[str, Any]]
    outputs: dict[str, Path]
    seconds: float

    def __str__(self) -> str:
        return (
            f"kNN (k={self.k}, chosen on validation): macro AUPRC {self.summary['macro_auprc'].mean:.4f}, "
            f"macro AUROC {self.summary['macro_auroc'].mean:.4f}, precision@{self.k} "
            f"{self.summary['precision_at_k'].mean:.4f} -> {self.outputs['json']}"
        )


def run_knn(config: KnnConfig) -> KnnResult:
    """kNN classification and retrieval on a labelled manifest; writes ``knn.{json,md,csv}``."""
    started = time.perf_counter()
    data = load_labelled(
        config.input,
        config.features,
        [config.feature],
        config.labels,
        config.uncertain,
        config.split_ratios,
        config.split_seed,
    )
    try:
        device = pick_device(config.features.device, 0)
    except RuntimeError as error:
        raise NeighbourError(f"features.device: {error}") from error
    validation = _evaluate_split(data, config, "val", device)
    best_k = max(validation, key=lambda k: np.nan_to_num(validation[k]["macro_auprc"], nan=-1.0))
    test = _evaluate_split(data, config, "test", device)
    chosen = test[best_k]
    summary = {
        "macro_auprc": mean_std([chosen["macro_auprc"]]),
        "macro_auroc": mean_std([chosen["macro_auroc"]]),
        "precision_at_k": mean_std([chosen["precision"]]),
        **{f"auprc/{name}": mean_std([value]) for name, value in chosen["auprc"].items()},
    }
    rows = [
        [
            str(k) + (" (chosen)" if k == best_k else ""),
            format_mean_std(mean_std([test[k]["macro_auprc"]])),
            format_mean_std(mean_std([test[k]["macro_auroc"]])),
            format_mean_std(mean_std([test[k]["precision"]])),
        ]
        for k in test
    ]
    name = encoder_name(config.features.model, config.features.embeddings)
    sizes = data.splits.sizes()
    markdown = (
        f"# kNN: {name}\n\nFeature `{config.feature}`, T = {config.temperature}; memory bank: "
        f"{sizes['train']} training images; test: {sizes['test']} images; k chosen on validation "
        f"macro AUPRC.\n\n" + markdown_table(["k", "macro AUPRC", "macro AUROC", "precision@k"], rows)
    )
    details = {
        "k": best_k,
        "feature": config.feature,
        "temperature": config.temperature,
        "findings": data.names,
        "splits": sizes,
        "validation": {str(k): value for k, value in validation.items()},
        "test": {str(k): value for k, value in test.items()},
    }
    outputs = write_results(Path(config.out), "knn", name, summary, details, markdown)
    outputs["config"] = save_config(config, Path(config.out) / "knn_config.yaml")
    if config.figure:
        from raddino.evaluate.figures import line_chart

        curves = {
            metric: [mean_std([test[k][key]]) for k in test]
            for metric, key in (
                ("macro AUPRC", "macro_auprc"),
                ("macro AUROC", "macro_auroc"),
                ("precision@k", "precision"),
            )
        }
        outputs["figure"] = line_chart(
            Path(config.out) / "knn.png", list(test), curves, f"kNN: {name}", "k", "test"
        )
    return KnnResult(best_k, summary, test, outputs, time.perf_counter() - started)
