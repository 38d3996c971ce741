"""Gram anchoring loss: hand-computed values on 2-D unit vectors at known angles."""

from __future__ import annotations

import math

import pytest
import torch

from raddino.pretrain.losses import GramLoss


def _at_angles(*degrees: float) -> torch.Tensor:
    """(1, N, 2) unit vectors at the given angles: their cosine similarities are cos(difference)."""
    radians = torch.tensor(degrees, dtype=torch.float64) * math.pi / 180
    return torch.stack([radians.cos(), radians.sin()], dim=-1).unsqueeze(0).float()


def test_identical_features_give_zero() -> None:
    features = torch.randn(3, 5, 8)
    assert GramLoss()(features, features.clone()).item() == pytest.approx(0.0, abs=1e-7)


def test_a_rotation_of_all_features_leaves_the_gram_matrix_unchanged() -> None:
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(2, 6, 4, generator=generator)
    rotation, _ = torch.linalg.qr(torch.randn(4, 4, generator=generator))  # orthogonal
    assert GramLoss()(features @ rotation, features).item() == pytest.approx(0.0, abs=1e-6)


def test_two_patches_at_known_angles() -> None:
    # Student patches 60° apart (cos 0.5), teacher's parallel (cos 1): two off-diagonal entries differ by
    # 0.5 among four, so the MSE is 2 · 0.25 / 4 = 0.125.
    loss = GramLoss()(_at_angles(0, 60), _at_angles(0, 0))
    assert loss.item() == pytest.approx(0.125, abs=1e-6)


def test_unnormalised_features_use_dot_products() -> None:
    student, teacher = 2 * _at_angles(0, 0), _at_angles(0, 0)  # Gram 4·ones vs ones: MSE 9
    assert GramLoss(normalized=False)(student, teacher).item() == pytest.approx(9.0, abs=1e-5)
    assert GramLoss(normalized=True)(student, teacher).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    ("student_angle", "teacher_angle", "rule", "expected"),
    [
        # teacher cos −0.5, student cos 0
        (90, 120, "none", 0.125),  # (0 + 0.5)² · 2 / 4
        (90, 120, "remove_neg", 0.0),  # teacher clipped to 0
        (90, 120, "remove_only_teacher_neg", 0.0),
        # teacher cos −0.5, student cos −1
        (180, 120, "none", 0.125),  # (−1 + 0.5)² · 2 / 4
        (180, 120, "remove_neg", 0.0),  # both clipped to 0
        (180, 120, "remove_only_teacher_neg", 0.5),  # (−1 − 0)² · 2 / 4: the student's stays
        # teacher cos 0, student cos −1: only the student is negative
        (180, 90, "remove_neg", 0.0),
        (180, 90, "remove_only_teacher_neg", 0.5),
    ],
)
def test_negative_similarity_clipping(
    student_angle: float, teacher_angle: float, rule: str, expected: float
) -> None:
    loss = GramLoss(
        remove_neg=rule == "remove_neg", remove_only_teacher_neg=rule == "remove_only_teacher_neg"
    )
    value = loss(_at_angles(0, student_angle), _at_angles(0, teacher_angle))
    assert value.item() == pytest.approx(expected, abs=1e-6)


def test_batch_level_compares_patches_across_images() -> None:
    # Two images of one patch each: per image the Gram matrix is [[1]] for both (loss 0); over the batch the
    # cross-image entries are cos 90° = 0 (student) against cos 0° = 1 (teacher): 2 · 1 / 4 = 0.5.
    student = torch.cat([_at_angles(0), _at_angles(90)])  # (2, 1, 2)
    teacher = torch.cat([_at_angles(0), _at_angles(0)])
    assert GramLoss(img_level=True)(student, teacher).item() == pytest.approx(0.0, abs=1e-6)
    assert GramLoss(img_level=False)(student, teacher).item() == pytest.approx(0.5, abs=1e-6)
    selected = GramLoss(img_level=False)(student.flatten(0, 1), teacher.flatten(0, 1))  # (P, D) patches
    assert selected.item() == pytest.approx(0.5, abs=1e-6)


def test_gradient_reaches_the_student_only() -> None:
    student = torch.randn(2, 4, 8, requires_grad=True)
    teacher = torch.randn(2, 4, 8, requires_grad=True)
    GramLoss()(student, teacher).backward()
    assert student.grad is not None
    assert student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_both_clipping_rules_and_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"remove_neg and gram\.remove_only_teacher_neg"):
        GramLoss(remove_neg=True, remove_only_teacher_neg=True)
    with pytest.raises(ValueError, match="differ"):
        GramLoss()(torch.randn(1, 4, 8), torch.randn(1, 5, 8))
    with pytest.raises(ValueError, match="img_level"):
        GramLoss(img_level=True)(torch.randn(4, 8), torch.randn(4, 8))
