"""iBOT masked-patch loss: per-image weighting, centring over patches and Sinkhorn-Knopp on patches."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from raddino.pretrain.losses import iBOTPatchLoss


def _patch_cross_entropy(targets: torch.Tensor, logits: torch.Tensor, temperature: float) -> torch.Tensor:
    return -(targets * F.log_softmax(logits / temperature, dim=-1)).sum(-1)


def test_each_image_counts_once_whatever_its_number_of_masked_patches():
    torch.manual_seed(0)
    # Image 0: 1 masked patch, image 1: 3 masked patches, image 2: none (it still counts in the mean).
    masks = torch.tensor(
        [[True, False, False, False], [True, True, False, True], [False, False, False, False]]
    )
    student = torch.randn(4, 5)
    teacher = F.softmax(torch.randn(4, 5), dim=-1)
    cross_entropy = _patch_cross_entropy(teacher, student, 0.1)  # (4,) patch order: image-major
    expected = (cross_entropy[0] + cross_entropy[1:].sum() / 3) / 3

    loss_fn = iBOTPatchLoss(patch_out_dim=5)
    loss = loss_fn.forward_masked(student, teacher, masks)

    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    weights = torch.tensor([1.0, 1 / 3, 1 / 3, 1 / 3])
    assert loss_fn.forward_masked(student, teacher, masks, masks_weight=weights).item() == pytest.approx(
        expected.item(), rel=1e-5
    )


def test_rows_must_match_the_masked_patches():
    masks = torch.tensor([[True, True], [False, True]])
    with pytest.raises(ValueError, match="3 patches"):
        iBOTPatchLoss(4).forward_masked(torch.zeros(2, 4), torch.zeros(2, 4), masks)


def test_centre_is_the_per_prototype_mean_over_masked_patches():
    loss_fn = iBOTPatchLoss(patch_out_dim=3, center_momentum=0.5)
    patches = torch.tensor([[1.0, 0.0, 4.0], [3.0, 2.0, 0.0]])
    loss_fn.update_center(patches)
    torch.testing.assert_close(loss_fn.center, torch.tensor([[1.0, 0.5, 1.0]]))  # 0.5 * mean
    loss_fn.update_center(patches[:0])  # no masked patch: unchanged
    torch.testing.assert_close(loss_fn.center, torch.tensor([[1.0, 0.5, 1.0]]))
    probs = loss_fn.softmax_center_teacher(patches, teacher_temp=0.07)
    torch.testing.assert_close(probs, F.softmax((patches - loss_fn.center) / 0.07, dim=-1))


def test_sinkhorn_on_patches_without_a_process_group():
    torch.manual_seed(2)
    logits = torch.randn(30, 6)
    n_masked = torch.tensor([30])
    assignments = iBOTPatchLoss(6).sinkhorn_knopp_teacher(logits, 1.0, n_masked, n_iterations=3)
    torch.testing.assert_close(assignments.sum(dim=1), torch.ones(30))
    assert torch.allclose(assignments.sum(dim=0), torch.full((6,), 5.0), rtol=0.05)
    assert n_masked.item() == 30  # the caller's count is left alone


def test_no_masked_patch_gives_empty_targets_and_zero_loss():
    loss_fn = iBOTPatchLoss(4)
    empty = torch.zeros(0, 4)
    assert tuple(loss_fn.sinkhorn_knopp_teacher(empty, 0.1, torch.tensor([0])).shape) == (0, 4)
    masks = torch.zeros(2, 3, dtype=torch.bool)
    assert loss_fn.forward_masked(empty, empty, masks).item() == 0.0
