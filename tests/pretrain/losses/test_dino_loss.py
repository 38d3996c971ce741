"""DINO CLS loss: hand-computed values, its minimum, EMA centring and Sinkhorn-Knopp marginals."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from raddino.pretrain.losses import DINOLoss


def _cross_entropy(targets: list[float], logits: list[float], temperature: float) -> float:
    """-sum_k t_k log softmax(s / T)_k, written out with math for a hand check."""
    scaled = [value / temperature for value in logits]
    log_normaliser = math.log(sum(math.exp(value) for value in scaled))
    return -sum(t * (value - log_normaliser) for t, value in zip(targets, scaled, strict=True))


def test_loss_matches_a_hand_computation_over_the_pairs():
    # 2 global crops + 1 local crop, batch 2, 3 prototypes.
    students = [
        torch.tensor([[0.1, 0.2, -0.3], [0.5, -0.5, 0.0]]),
        torch.tensor([[-0.2, 0.4, 0.1], [0.0, 0.3, 0.3]]),
        torch.tensor([[0.3, 0.3, -0.1], [-0.4, 0.2, 0.6]]),
    ]
    teachers = [
        torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]),
        torch.tensor([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]]),
    ]
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2)]  # (teacher crop, student crop); never a crop with itself
    expected = 0.0
    for teacher_index, student_index in pairs:
        per_image = [
            _cross_entropy(teachers[teacher_index][b].tolist(), students[student_index][b].tolist(), 0.1)
            for b in range(2)
        ]
        expected += sum(per_image) / 2
    expected /= len(pairs)

    loss = DINOLoss(out_dim=3, student_temp=0.1)(students, teachers)

    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_loss_is_smallest_when_the_student_predicts_the_teacher():
    torch.manual_seed(0)
    teacher_logits = torch.randn(4, 16) * 3  # sharp targets
    targets = F.softmax(teacher_logits / 0.1, dim=-1)
    loss_fn = DINOLoss(out_dim=16, student_temp=0.1)
    at_teacher = loss_fn([teacher_logits] * 3, [targets, targets])
    entropy = -(targets * targets.clamp_min(1e-30).log()).sum(-1).mean()

    assert at_teacher.item() == pytest.approx(entropy.item(), abs=1e-5)  # CE = entropy at the optimum
    for _ in range(20):
        moved = teacher_logits + 0.3 * torch.randn_like(teacher_logits)
        assert loss_fn([moved] * 3, [targets, targets]).item() > at_teacher.item()


def test_softmax_centring_subtracts_the_ema_centre():
    loss_fn = DINOLoss(out_dim=3, center_momentum=0.9)
    batch = torch.tensor([[1.0, 2.0, 3.0], [3.0, 2.0, 1.0], [2.0, 2.0, 5.0]])
    loss_fn.update_center(batch)
    # centre = 0.9 * 0 + 0.1 * mean = 0.1 * [2, 2, 3]
    torch.testing.assert_close(loss_fn.center, torch.tensor([[0.2, 0.2, 0.3]]))
    loss_fn.update_center(batch)
    torch.testing.assert_close(loss_fn.center, torch.tensor([[0.38, 0.38, 0.57]]))

    probs = loss_fn.softmax_center_teacher(batch, teacher_temp=0.04)
    torch.testing.assert_close(probs, F.softmax((batch - loss_fn.center) / 0.04, dim=-1))
    torch.testing.assert_close(probs.sum(-1), torch.ones(3))


def _reference_sinkhorn(logits: torch.Tensor, temperature: float, iterations: int) -> torch.Tensor:
    """DINOv2's single-process formula in float64, without the max shift."""
    q = torch.exp(logits.double() / temperature).t()
    n_prototypes, n_samples = q.shape
    q /= q.sum()
    for _ in range(iterations):
        q /= q.sum(dim=1, keepdim=True)
        q /= n_prototypes
        q /= q.sum(dim=0, keepdim=True)
        q /= n_samples
    return (q * n_samples).t()


def test_sinkhorn_marginals_after_three_iterations():
    torch.manual_seed(1)
    logits = torch.randn(64, 8)
    assignments = DINOLoss(out_dim=8).sinkhorn_knopp_teacher(logits, teacher_temp=0.5, n_iterations=3)

    torch.testing.assert_close(assignments.sum(dim=1), torch.ones(64))  # each sample sums to 1
    column_sums = assignments.sum(dim=0)
    assert torch.allclose(column_sums, torch.full((8,), 64 / 8), rtol=0.05)  # prototypes about balanced
    softmax_columns = F.softmax(logits / 0.5, dim=-1).sum(dim=0)
    assert (column_sums - 8).abs().max() < 0.2 * (softmax_columns - 8).abs().max()  # far more balanced
    torch.testing.assert_close(
        assignments.double(), _reference_sinkhorn(logits, 0.5, 3), rtol=1e-5, atol=1e-7
    )


def test_sinkhorn_does_not_overflow_at_a_low_temperature():
    logits = torch.tensor([[10.0, -10.0, 0.0], [0.0, 10.0, -10.0]])
    assignments = DINOLoss(out_dim=3).sinkhorn_knopp_teacher(logits, teacher_temp=0.01)
    assert torch.isfinite(assignments).all()
    torch.testing.assert_close(assignments.sum(dim=1), torch.ones(2))


def test_too_few_crops_is_a_clear_error():
    loss_fn = DINOLoss(out_dim=3)
    with pytest.raises(ValueError, match="global"):
        loss_fn([torch.zeros(2, 3)], [torch.ones(2, 3) / 3] * 2)
    with pytest.raises(ValueError, match="two crops"):
        loss_fn([torch.zeros(2, 3)], [torch.ones(2, 3) / 3])


def test_equals_dinov2s_split_into_global_and_local_terms():
    """DINOv2's ssl_meta_arch: local pairs summed, the global term on swapped views × 2, both ÷ 18."""
    torch.manual_seed(4)
    batch, prototypes, n_local = 3, 7, 8
    student_globals = torch.randn(2 * batch, prototypes)  # crop-major, as the collate stacks them
    student_locals = torch.randn(n_local * batch, prototypes)
    teacher = F.softmax(torch.randn(2 * batch, prototypes) / 0.07, dim=-1)
    teacher_views = list(teacher.chunk(2))

    def dinov2_term(students: list[torch.Tensor], targets: list[torch.Tensor]) -> torch.Tensor:
        total = torch.zeros(())
        for student in students:
            log_probs = F.log_softmax(student / 0.1, dim=-1)
            for target in targets:
                total -= (target * log_probs).sum(dim=-1).mean()
        return total

    n_terms = 2 * 1 + 2 * n_local
    local_term = dinov2_term(list(student_locals.chunk(n_local)), teacher_views) / n_terms
    swapped = torch.cat([teacher_views[1], teacher_views[0]])
    global_term = dinov2_term([student_globals], [swapped]) * 2 / n_terms
    expected = local_term + global_term

    crops = list(student_globals.chunk(2)) + list(student_locals.chunk(n_local))
    loss = DINOLoss(prototypes)(crops, teacher_views)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
