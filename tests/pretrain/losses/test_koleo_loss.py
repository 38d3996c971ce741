"""KoLeo: a hand computation on three points, scale invariance, and finiteness with duplicates."""

from __future__ import annotations

import math

import pytest
import torch

from raddino.pretrain.losses import KoLeoLoss


def test_matches_a_hand_computation():
    # Unit vectors at 0°, 60°, 180°: chords 2 sin(θ/2): 0°-60° → 1, 60°-180° → 2 sin 60° = 1.732,
    # 0°-180° → 2; nearest neighbours are at 1, 1 and 1.732.
    angles = [0.0, math.pi / 3, math.pi]
    features = torch.tensor([[math.cos(a), math.sin(a)] for a in angles]) * 5.0  # norms do not matter
    nearest = [1.0, 1.0, 2 * math.sin(math.pi / 3)]
    expected = -sum(math.log(distance + 1e-8) for distance in nearest) / 3

    assert KoLeoLoss()(features).item() == pytest.approx(expected, rel=1e-5)


def test_duplicate_samples_give_a_finite_loss_and_gradient():
    features = torch.tensor([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0], [0.0, 1.0, 0.0]], requires_grad=True)
    loss = KoLeoLoss()(features)
    loss.backward()
    assert torch.isfinite(loss)
    assert loss.item() == pytest.approx(
        -(2 * math.log(2e-8) + math.log(math.dist([0, 1, 0], [1 / 14**0.5, 2 / 14**0.5, 3 / 14**0.5]) + 1e-8))
        / 3,
        rel=1e-4,
    )
    assert features.grad is not None
    assert torch.isfinite(features.grad).all()


def test_half_precision_input_is_computed_in_float32():
    torch.manual_seed(0)
    features = torch.randn(8, 16)
    loss_fn = KoLeoLoss()
    assert loss_fn(features.to(torch.bfloat16)).dtype == torch.float32
    assert loss_fn(features.to(torch.bfloat16)).item() == pytest.approx(loss_fn(features).item(), rel=0.05)


def test_one_sample_is_an_error():
    with pytest.raises(ValueError, match="B >= 2"):
        KoLeoLoss()(torch.ones(1, 4))
