"""The Gram anchoring loss (DINOv3, Siméoni et al. 2025, section 4; ``dinov3/loss/gram_loss.py``).

The Gram matrix of a set of patch features is the matrix of their pairwise cosine similarities; the loss is
the mean squared difference between the student's and a *Gram teacher*'s (an earlier, frozen snapshot of
the EMA teacher). It constrains only how patches relate to one another, not the features themselves, so
the student keeps learning global features while its dense (patch) structure stays as sharp as the
snapshot's: DINOv3's remedy for patch features degrading late in long trainings.

``img_level``: one N × N matrix per image (mean over B·N·N entries); otherwise one (B·N) × (B·N) matrix over
all the batch's patches. Negative similarities may be clipped to 0 before the comparison:

- ``remove_neg``: in both matrices;
- ``remove_only_teacher_neg``: in the teacher's only. DINOv3's code also zeroes the student's entries
  "where the teacher's were negative", but tests that after the teacher's were already clipped to 0, so no
  student entry is ever changed; this module does what that code computes (the student's matrix as is).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GramLoss(nn.Module):
    """MSE between the Gram matrices of student and Gram-teacher patch features.

    Args:
        normalized: L2-normalise the features first (DINOv3's ``gram.normalized``; true: cosine similarity).
        img_level: One Gram matrix per image (true) or one over the whole batch's patches.
        remove_neg: Clip negative similarities of both matrices to 0.
        remove_only_teacher_neg: Clip negative similarities of the teacher's matrix only.

    Raises:
        ValueError: both clipping rules at once (DINOv3 refuses that too).
    """

    def __init__(
        self,
        normalized: bool = True,
        img_level: bool = True,
        remove_neg: bool = False,
        remove_only_teacher_neg: bool = False,
    ) -> None:
        super().__init__()
        if remove_neg and remove_only_teacher_neg:
            raise ValueError("gram.remove_neg and gram.remove_only_teacher_neg cannot both be true")
        self.normalized = normalized
        self.img_level = img_level
        self.remove_neg = remove_neg
        self.remove_only_teacher_neg = remove_only_teacher_neg

    def gram(self, features: torch.Tensor) -> torch.Tensor:
        """The Gram matrix (per image when ``img_level``) of (B, N, D) or (P, D) features, in float32."""
        features = features.float()
        if self.normalized:
            features = F.normalize(features, dim=-1)
        if not self.img_level and features.ndim == 3:
            features = features.flatten(0, 1)  # (B·N, D): one matrix over the batch's patches
        return features @ features.transpose(-1, -2)  # (B, N, N) or (P, P)

    def forward(self, student_patches: torch.Tensor, teacher_patches: torch.Tensor) -> torch.Tensor:
        """The scalar loss; gradient flows into ``student_patches`` only.

        Args:
            student_patches: (B, N, D) student patch tokens of the global crops, or (P, D) selected patches
                (only with ``img_level`` false).
            teacher_patches: The Gram teacher's, same shape.

        Raises:
            ValueError: shapes that differ, or (P, D) features with ``img_level``.
        """
        if student_patches.shape != teacher_patches.shape:
            raise ValueError(
                f"Gram loss: student patches {tuple(student_patches.shape)} and teacher patches "
                f"{tuple(teacher_patches.shape)} differ"
            )
        if self.img_level and student_patches.ndim != 3:
            raise ValueError(
                f"Gram loss with img_level needs (B, N, D) patches, got {tuple(student_patches.shape)}"
            )
        with torch.autocast(device_type=student_patches.device.type, enabled=False):
            with torch.no_grad():
                target = self.gram(teacher_patches.detach())  # (B, N, N) or (P, P)
            student = self.gram(student_patches)
            if self.remove_neg or self.remove_only_teacher_neg:
                target = target.clamp(min=0.0)
            if self.remove_neg:
                # zeroed, as DINOv3's in-place assignment: no gradient through the clipped entries
                student = torch.where(student < 0, torch.zeros_like(student), student)
            return F.mse_loss(student, target)
