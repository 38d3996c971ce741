"""Test metrics of a fine-tuned model with 95% bootstrap intervals over the test images.

Classification: AUPRC and AUROC per finding (missing labels left out) and their macro averages;
segmentation: Dice per structure and the mean over images (a correct empty prediction scores 1). Each
number is the point estimate on the whole test set with the 2.5 and 97.5 percentiles of ``resamples``
resamples of the test images drawn with replacement (the same resamples for every metric).

Written here rather than reusing ``reportgen.score.bootstrap``: a resample of a small test set can miss a
finding's positives, where AUPRC is undefined, so the percentiles skip undefined values (``nanpercentile``)
and one set of resampled indices is shared by all findings.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from raddino.evaluate.metrics import auprc_per_label, auroc_per_label, dice_per_image, macro


def interval(
    statistic: Callable[[np.ndarray], dict[str, float]], count: int, resamples: int, seed: int
) -> dict[str, tuple[float, float]]:
    """2.5 and 97.5 percentiles of each value ``statistic(indices)`` returns over bootstrap resamples."""
    if resamples == 0 or count == 0:
        return {}
    rng = np.random.default_rng(seed)
    draws = [statistic(rng.integers(0, count, count)) for _ in range(resamples)]
    result = {}
    for key in draws[0]:
        values = np.array([draw[key] for draw in draws], np.float64)
        if np.isfinite(values).any():
            low, high = np.nanpercentile(values, [2.5, 97.5])
            result[key] = (float(low), float(high))
        else:
            result[key] = (float("nan"), float("nan"))
    return result


def _classification_values(scores: np.ndarray, labels: np.ndarray, names: Sequence[str]) -> dict[str, float]:
    auprc = auprc_per_label(scores, labels, names)
    auroc = auroc_per_label(scores, labels, names)
    return {
        "macro_auprc": macro(auprc),
        "macro_auroc": macro(auroc),
        **{f"auprc/{name}": value for name, value in auprc.items()},
        **{f"auroc/{name}": value for name, value in auroc.items()},
    }


def classification_metrics(
    scores: np.ndarray, labels: np.ndarray, names: Sequence[str], resamples: int = 500, seed: int = 0
) -> dict[str, dict[str, Any]]:
    """``{metric: {"value", "low", "high"}}`` for macro and per-finding AUPRC / AUROC.

    Args:
        scores: (N, C) logits or probabilities.
        labels: (N, C) 0/1, NaN where missing.
        names: C finding names.
    """
    point = _classification_values(scores, labels, names)
    bounds = interval(
        lambda idx: _classification_values(scores[idx], labels[idx], names), len(scores), resamples, seed
    )
    return _combine(point, bounds)


def segmentation_metrics(
    predicted: torch.Tensor,
    masks: torch.Tensor,
    known: torch.Tensor,
    names: Sequence[str],
    resamples: int = 500,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """``{metric: {"value", "low", "high"}}`` for ``dice`` (mean over images of their annotated
    structures' mean) and ``dice/<structure>`` (mean over images where it is annotated).

    Args:
        predicted: (N, C, H, W) bool.
        masks: (N, C, H, W) bool.
        known: (N, C) bool.
    """
    dice = dice_per_image(predicted, masks).double().numpy()  # (N, C)
    annotated = known.numpy()

    def values(idx: np.ndarray) -> dict[str, float]:
        chosen, seen = dice[idx], annotated[idx]
        per_image = [float(row[mask].mean()) for row, mask in zip(chosen, seen, strict=True) if mask.any()]
        result = {"dice": float(np.mean(per_image)) if per_image else float("nan")}
        for column, name in enumerate(names):
            column_values = chosen[seen[:, column], column]
            result[f"dice/{name}"] = float(column_values.mean()) if column_values.size else float("nan")
        return result

    point = values(np.arange(len(dice)))
    return _combine(point, interval(values, len(dice), resamples, seed))


def _combine(point: dict[str, float], bounds: dict[str, tuple[float, float]]) -> dict[str, dict[str, Any]]:
    nan = (float("nan"), float("nan"))
    return {
        key: {"value": value, "low": bounds.get(key, nan)[0], "high": bounds.get(key, nan)[1]}
        for key, value in point.items()
    }


def format_interval(metric: dict[str, Any] | None, digits: int = 3) -> str:
    """``0.812 [0.760, 0.861]`` (``—`` when undefined; the point alone without an interval)."""
    if metric is None or metric.get("value") is None or not np.isfinite(metric["value"]):
        return "—"
    text = f"{metric['value']:.{digits}f}"
    low, high = metric.get("low"), metric.get("high")
    if low is not None and high is not None and np.isfinite(low) and np.isfinite(high):
        text += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return text
