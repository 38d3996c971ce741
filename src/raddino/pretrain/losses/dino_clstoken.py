"""DINO's CLS-token loss: the student's crops predict the teacher's global-crop prototype distributions.

Follows DINOv2 (``dinov2/loss/dino_clstoken_loss.py`` and its use in ``train/ssl_meta_arch.py``): student
temperature 0.1, teacher targets either softmax with an EMA centre (momentum 0.9) or Sinkhorn-Knopp with
3 iterations (``ssl_default_config.yaml``: ``dino.*``, ``train.centering``). Unlike DINOv2, the
Sinkhorn-Knopp reductions run only when a process group exists, so one process needs no set-up.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from raddino.pretrain.losses.collective import all_reduce_sum, sinkhorn_knopp, world_size


class DINOLoss(nn.Module):
    """Cross-entropy between teacher and student prototype distributions of the CLS token.

    Args:
        out_dim: Prototypes K (65536 in DINOv2 and RAD-DINO).
        student_temp: Student softmax temperature (DINOv2: 0.1).
        center_momentum: EMA momentum of the teacher centre (DINOv2: 0.9).
    """

    center: torch.Tensor

    def __init__(self, out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__()
        if out_dim < 1:
            raise ValueError(f"out_dim must be positive, got {out_dim}")
        self.out_dim = out_dim
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))  # (1, K), saved with checkpoints

    @torch.no_grad()
    def softmax_center_teacher(self, teacher_logits: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """Teacher targets ``softmax((logits - centre) / teacher_temp)``.

        Args:
            teacher_logits: (N, K) teacher head outputs.
            teacher_temp: Teacher temperature (warmed up 0.04 → 0.07 in DINOv2).

        Returns:
            (N, K) probabilities, float32.
        """
        centred = (teacher_logits.float() - self.center).div_(teacher_temp)  # (N, K)
        return F.softmax(centred, dim=-1)

    @torch.no_grad()
    def sinkhorn_knopp_teacher(
        self, teacher_logits: torch.Tensor, teacher_temp: float, n_iterations: int = 3
    ) -> torch.Tensor:
        """Teacher targets balanced over prototypes by Sinkhorn-Knopp (SwAV; DINOv2 ``sinkhorn_knopp``).

        The batch is every process's rows together: with a process group, sums are all-reduced, so
        2 processes with N rows each give the result of one process with the 2N rows.

        Args:
            teacher_logits: (N, K) teacher head outputs of this process.
            teacher_temp: Teacher temperature.
            n_iterations: Normalisation rounds (DINOv2: 3).

        Returns:
            (N, K) assignments; each row sums to 1, each prototype column to about N × world / K.
        """
        n_samples = teacher_logits.shape[0] * world_size()
        return sinkhorn_knopp(teacher_logits, teacher_temp, n_samples, n_iterations)

    @torch.no_grad()
    def update_center(self, teacher_logits: torch.Tensor) -> None:
        """EMA update of the centre with the batch mean of the teacher logits (over all processes).

        Args:
            teacher_logits: (N, K) teacher head outputs of this process.
        """
        batch_sum = all_reduce_sum(teacher_logits.float().sum(dim=0, keepdim=True))  # (1, K)
        batch_center = batch_sum / (teacher_logits.shape[0] * world_size())
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)

    def forward(
        self, student_logits: Sequence[torch.Tensor], teacher_probs: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """The DINO loss over every (teacher crop, student crop) pair except a global crop with itself.

        Normalisation as DINOv2's ``ssl_meta_arch``: each pair's cross-entropy is averaged over the batch,
        and the pair losses are averaged over the number of pairs, ``n_global × (n_global − 1)`` global
        pairs plus ``n_global × n_local`` local pairs (2 + 16 = 18 with DINOv2's 2 + 8 crops).

        Args:
            student_logits: One (B, K) tensor per crop, the global crops first in the teacher's order,
                then the local crops.
            teacher_probs: One (B, K) target tensor per global crop.

        Returns:
            The scalar loss.

        Raises:
            ValueError: fewer student crops than teacher crops, or no pair to compare.
        """
        n_global = len(teacher_probs)
        if len(student_logits) < n_global:
            raise ValueError(
                f"student_logits has {len(student_logits)} crops but teacher_probs has {n_global} global "
                "crops; pass the student's global crops first, then its local crops"
            )
        log_probs = [F.log_softmax(logits.float() / self.student_temp, dim=-1) for logits in student_logits]
        total = student_logits[0].new_zeros((), dtype=torch.float32)
        n_pairs = 0
        for teacher_index, targets in enumerate(teacher_probs):
            for student_index, student_log_probs in enumerate(log_probs):
                if student_index == teacher_index:  # same view: nothing to predict
                    continue
                cross_entropy = -(targets * student_log_probs).sum(dim=-1)  # (B,)
                total = total + cross_entropy.mean()
                n_pairs += 1
        if n_pairs == 0:
            raise ValueError("the DINO loss needs at least two crops (one teacher, one other student crop)")
        return total / n_pairs
