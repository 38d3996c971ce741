"""Why the DINO CLS loss of the DINOv3 CPU demo sits at ln K, and that nothing in the loss path pins it there.

DINOv3's head (``dinov3/layers/dino_head.py``) has a plain last layer initialised at std 0.02 on an
L2-normalised bottleneck, so its logits start with std 0.02: at the student temperature 0.1 the student's
softmax is uniform, and the loss equals ln K until the last layer grows. A last layer with larger rows gives
a loss well below ln K through the same Sinkhorn-Knopp targets and cross-entropy.
"""

from __future__ import annotations

import math

import pytest
import torch

from raddino.models import DINOHead
from raddino.pretrain.losses import DINOLoss

K = 1024
IN_DIM, HIDDEN, BOTTLENECK = 32, 64, 64


def _head(weight_norm: bool) -> DINOHead:
    torch.manual_seed(0)
    return DINOHead(IN_DIM, K, hidden_dim=HIDDEN, bottleneck_dim=BOTTLENECK, weight_norm=weight_norm)


def _loss(head: DINOHead, features: torch.Tensor, teacher_temp: float = 0.02) -> float:
    """The DINO loss with teacher = student = ``head`` on 2 "global crops" (two noisy copies)."""
    loss = DINOLoss(K)
    torch.manual_seed(1)
    crops = [features + 0.01 * torch.randn_like(features) for _ in range(2)]  # 2 × (B, IN_DIM)
    with torch.no_grad():
        logits = [head(crop) for crop in crops]  # 2 × (B, K)
        targets = list(loss.sinkhorn_knopp_teacher(torch.cat(logits), teacher_temp).chunk(2))
        return float(loss(logits, targets))


def _distinct_features(batch: int = 16) -> torch.Tensor:
    torch.manual_seed(2)
    return torch.randn(batch, IN_DIM)  # (B, IN_DIM)


def test_dinov3_head_logits_start_at_std_002() -> None:
    """DINOv3's init: unit bottleneck times rows of std 0.02 gives logits of std 0.02 (DINOv2's
    weight-normed rows of norm 1 give cosines, std 1 / sqrt(bottleneck) = 0.125)."""
    features = _distinct_features(64)
    with torch.no_grad():
        plain = _head(weight_norm=False)(features).std(dim=1).mean()
        normed = _head(weight_norm=True)(features).std(dim=1).mean()
    assert float(plain) == pytest.approx(0.02, rel=0.15)
    assert float(normed) == pytest.approx(1 / math.sqrt(BOTTLENECK), rel=0.15)


def test_dino_loss_of_the_dinov3_head_at_init_is_ln_k() -> None:
    """At DINOv3's init the student softmax at 0.1 is uniform, and a random-init encoder's CLS tokens are
    nearly collinear (mean cosine 0.98 between images in the demo), so the Sinkhorn-Knopp targets are
    uniform too: the loss is ln K to within 0.02."""
    torch.manual_seed(3)
    collinear = torch.randn(1, IN_DIM) + 0.1 * torch.randn(16, IN_DIM)  # (B, IN_DIM)
    assert _loss(_head(weight_norm=False), collinear) == pytest.approx(math.log(K), abs=0.02)


def test_dino_loss_falls_below_ln_k_once_the_last_layer_rows_grow() -> None:
    """With distinct features and last-layer rows of norm 1.6 (DINOv2's weight-normed rows have norm 1)
    the same Sinkhorn-Knopp targets and cross-entropy give less than ln K − 1: the ln K plateau is the
    head's scale and the features' spread, not the loss."""
    head = _head(weight_norm=False)
    with torch.no_grad():
        head.last_layer.weight.mul_(10.0)  # rows of norm 0.16 → 1.6
    assert _loss(head, _distinct_features()) < math.log(K) - 1.0
