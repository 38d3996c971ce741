"""Metrics of the paper's evaluation protocol: AUPRC / AUROC per finding with missing labels left out,
Dice per class with the empty-mask rule, and mean ± std over seeds or folds.

Missing labels are NaN in every label matrix here: a finding that was not recorded for an image says
nothing about the model and never counts (paper §4.2, linear probing on partially labelled datasets).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score


@dataclass(frozen=True)
class MeanStd:
    """A mean and standard deviation (population, ``ddof=0``) over seeds, folds or images."""

    mean: float
    std: float
    count: int

    def to_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "std": self.std, "count": self.count}

    def __str__(self) -> str:
        return f"{self.mean:.4f} ± {self.std:.4f}"


def mean_std(values: Iterable[float]) -> MeanStd:
    """Mean ± std of the finite values (NaNs, e.g. a finding without positives, are left out)."""
    finite = np.asarray([value for value in values if value is not None and math.isfinite(value)], np.float64)
    if finite.size == 0:
        return MeanStd(float("nan"), float("nan"), 0)
    return MeanStd(float(finite.mean()), float(finite.std()), int(finite.size))


def _per_label(metric: str, scores: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    scores = np.asarray(scores, np.float64)
    labels = np.asarray(labels, np.float64)
    if scores.shape != labels.shape or scores.ndim != 2:
        raise ValueError(f"scores {scores.shape} and labels {labels.shape} must both be (N, C)")
    if len(names) != labels.shape[1]:
        raise ValueError(f"{len(names)} label names for {labels.shape[1]} label columns")
    function = average_precision_score if metric == "auprc" else roc_auc_score
    result: dict[str, float] = {}
    for column, name in enumerate(names):
        known = ~np.isnan(labels[:, column])  # missing labels do not count
        truth = labels[known, column]
        if truth.size == 0 or truth.min() == truth.max():
            result[name] = float("nan")  # undefined without both classes among the known labels
            continue
        result[name] = float(function(truth, scores[known, column]))
    return result


def auprc_per_label(scores: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Average precision (area under the precision-recall curve) of each label column.

    Args:
        scores: (N, C) model outputs, any monotone score (logits or probabilities).
        labels: (N, C) 0/1 with NaN where the label is missing.
        names: C label names.

    Returns:
        ``{name: AUPRC}``; NaN for a label whose known values are all one class.
    """
    return _per_label("auprc", scores, labels, names)


def auroc_per_label(scores: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    """Area under the ROC curve of each label column (same conventions as :func:`auprc_per_label`)."""
    return _per_label("auroc", scores, labels, names)


def macro(values: Mapping[str, float]) -> float:
    """Unweighted mean over labels of the defined (finite) values; NaN if none is defined."""
    finite = [value for value in values.values() if math.isfinite(value)]
    return float(np.mean(finite)) if finite else float("nan")


def dice_per_image(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Dice of each image and class for binary masks.

    An image where both the prediction and the target of a class are empty scores 1 (the paper counts a
    correct empty prediction as perfect); an empty target with a non-empty prediction scores 0.

    Args:
        predicted: (N, C, H, W) boolean or 0/1 masks.
        target: (N, C, H, W) boolean or 0/1 masks.

    Returns:
        (N, C) float Dice scores in [0, 1].
    """
    if predicted.shape != target.shape or predicted.dim() != 4:
        raise ValueError(
            f"predicted {tuple(predicted.shape)} and target {tuple(target.shape)} must be (N, C, H, W)"
        )
    predicted = predicted.bool()
    target = target.bool()
    intersection = (predicted & target).sum(dim=(2, 3)).double()  # (N, C)
    total = predicted.sum(dim=(2, 3)).double() + target.sum(dim=(2, 3)).double()  # (N, C)
    dice = torch.where(total > 0, 2 * intersection / total.clamp(min=1), torch.ones_like(total))
    return dice.float()
