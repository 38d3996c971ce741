"""The KoLeo regulariser (Sablayrolles et al. 2019, "Spreading vectors for similarity search"; DINOv2).

``-mean_i log(d_i)``, with ``d_i`` the distance from L2-normalised feature ``i`` to its nearest other
feature in the batch; it pushes the student's CLS features apart. DINOv2 weights it 0.1 and applies it to
each global crop's batch of CLS tokens before the head. DINOv2's version is not finite for duplicate
samples in every precision and its gradient at distance 0 is 0/0; here distances are floored at ``eps``
in float32, so duplicates give a finite loss and finite gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KoLeoLoss(nn.Module):
    """Kozachenko-Leonenko entropy estimator loss on a batch of features."""

    def forward(self, features: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
        """``-mean(log(nearest-neighbour distance + eps))`` of L2-normalised features.

        Args:
            features: (B, D) features, B ≥ 2.
            eps: Floor of the norms and distances.

        Returns:
            The scalar loss, computed in float32 whatever the input dtype.

        Raises:
            ValueError: fewer than two samples (no neighbour).
        """
        if features.ndim != 2 or features.shape[0] < 2:
            raise ValueError(f"KoLeo needs (B, D) features with B >= 2, got shape {tuple(features.shape)}")
        with torch.autocast(device_type=features.device.type, enabled=False):
            unit = F.normalize(features.float(), p=2, dim=-1, eps=eps)  # (B, D)
            with torch.no_grad():
                similarity = unit @ unit.t()  # (B, B)
                similarity.fill_diagonal_(-2.0)  # below any cosine: never one's own neighbour
                neighbour = similarity.argmax(dim=1)  # (B,)
            squared = (unit - unit[neighbour]).pow(2).sum(dim=-1)  # (B,)
            distances = squared.clamp(min=eps * eps).sqrt()  # floored: finite value and gradient at 0
            return -torch.log(distances + eps).mean()
