from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from raddino.evaluate.metrics import (
    auprc_per_label,
    auroc_per_label,
    dice_per_image,
    macro,
    mean_std,
)


def test_auprc_and_auroc_agree_with_scikit_learn_on_known_labels_only() -> None:
    rng = np.random.default_rng(0)
    labels = (rng.random((50, 2)) < 0.3).astype(np.float64)
    scores = rng.random((50, 2)) + labels * 0.3
    labels_with_missing = labels.copy()
    labels_with_missing[::5, 0] = np.nan  # every fifth label of the first finding is missing
    # A missing label set to the "wrong" class must not change anything: make its score extreme.
    scores[::5, 0] = 10.0
    auprc = auprc_per_label(scores, labels_with_missing, ["a", "b"])
    auroc = auroc_per_label(scores, labels_with_missing, ["a", "b"])
    known = ~np.isnan(labels_with_missing[:, 0])
    assert auprc["a"] == pytest.approx(average_precision_score(labels[known, 0], scores[known, 0]))
    assert auroc["a"] == pytest.approx(roc_auc_score(labels[known, 0], scores[known, 0]))
    assert auprc["b"] == pytest.approx(average_precision_score(labels[:, 1], scores[:, 1]))
    assert macro(auprc) == pytest.approx((auprc["a"] + auprc["b"]) / 2)


def test_a_finding_with_one_class_is_undefined_and_left_out_of_the_macro_average() -> None:
    labels = np.array([[1, 0], [0, 0], [1, 0], [0, 0]], np.float64)
    scores = np.array([[0.9, 0.1], [0.1, 0.2], [0.8, 0.3], [0.2, 0.4]])
    auprc = auprc_per_label(scores, labels, ["present", "never"])
    assert auprc["present"] == pytest.approx(1.0)
    assert math.isnan(auprc["never"])
    assert macro(auprc) == pytest.approx(1.0)


def test_hand_computed_auprc() -> None:
    # Ranking: 0.9 (pos), 0.8 (neg), 0.7 (pos): precision at the positives 1 and 2/3 -> AP = (1 + 2/3) / 2.
    auprc = auprc_per_label(np.array([[0.9], [0.8], [0.7]]), np.array([[1.0], [0.0], [1.0]]), ["x"])
    assert auprc["x"] == pytest.approx((1 + 2 / 3) / 2)


def test_dice_on_fixed_masks_and_the_empty_mask_rule() -> None:
    target = torch.zeros(3, 2, 4, 4, dtype=torch.bool)
    predicted = torch.zeros_like(target)
    target[0, 0, :2, :2] = True  # 4 pixels
    predicted[0, 0, :2, :1] = True  # 2 pixels, both inside -> 2*2 / (2+4) = 2/3
    predicted[1, 0, 0, 0] = True  # empty target, non-empty prediction -> 0
    # image 2 class 0, and every class 1: both empty -> 1
    dice = dice_per_image(predicted, target)
    assert dice[0, 0].item() == pytest.approx(2 / 3)
    assert dice[1, 0].item() == 0.0
    assert dice[2, 0].item() == 1.0
    assert torch.equal(dice[:, 1], torch.ones(3))


def test_mean_std_ignores_undefined_values() -> None:
    summary = mean_std([0.5, float("nan"), 0.7])
    assert summary.mean == pytest.approx(0.6)
    assert summary.std == pytest.approx(0.1)
    assert summary.count == 2
