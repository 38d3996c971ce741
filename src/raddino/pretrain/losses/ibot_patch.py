"""iBOT's masked-patch loss: the student sees masked patches and predicts the teacher's patch targets.

Follows DINOv2 (``dinov2/loss/ibot_patch_loss.py``): student temperature 0.1, centre momentum 0.9, each
image's masked patches weighted by ``1 / (its number of masked patches)``. Two DINOv2 faults are not kept:
its Sinkhorn-Knopp all-reduces without checking for a process group (a single process crashes), and its
centre update averages the masked (M, K) logits over the prototype axis (``mean(1)``), which leaves a
constant shift that softmax ignores; here the centre is the mean over masked patches, per prototype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from raddino.pretrain.losses.collective import all_reduce_sum, sinkhorn_knopp


class iBOTPatchLoss(nn.Module):
    """Cross-entropy between teacher and student prototype distributions of masked patch tokens.

    Args:
        patch_out_dim: Prototypes K of the patch head.
        student_temp: Student softmax temperature (DINOv2: 0.1).
        center_momentum: EMA momentum of the teacher centre (DINOv2: 0.9).
    """

    center: torch.Tensor

    def __init__(self, patch_out_dim: int, student_temp: float = 0.1, center_momentum: float = 0.9) -> None:
        super().__init__()
        if patch_out_dim < 1:
            raise ValueError(f"patch_out_dim must be positive, got {patch_out_dim}")
        self.patch_out_dim = patch_out_dim
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, patch_out_dim))  # (1, K)

    @torch.no_grad()
    def softmax_center_teacher(self, teacher_patch_logits: torch.Tensor, teacher_temp: float) -> torch.Tensor:
        """Teacher targets ``softmax((logits - centre) / teacher_temp)``.

        Args:
            teacher_patch_logits: (M, K) teacher head outputs of the masked patches.
            teacher_temp: Teacher temperature.

        Returns:
            (M, K) probabilities, float32.
        """
        centred = (teacher_patch_logits.float() - self.center).div_(teacher_temp)  # (M, K)
        return F.softmax(centred, dim=-1)

    @torch.no_grad()
    def sinkhorn_knopp_teacher(
        self,
        teacher_patch_logits: torch.Tensor,
        teacher_temp: float,
        n_masked_patches: torch.Tensor,
        n_iterations: int = 3,
    ) -> torch.Tensor:
        """Teacher targets balanced over prototypes by Sinkhorn-Knopp, over every process's masked patches.

        Args:
            teacher_patch_logits: (M, K) teacher head outputs of this process's masked patches.
            teacher_temp: Teacher temperature.
            n_masked_patches: () or (1,) int tensor, this process's M (summed over processes here; the
                caller's tensor is not modified).
            n_iterations: Normalisation rounds (DINOv2: 3).

        Returns:
            (M, K) assignments; each row sums to 1.
        """
        total_patches = all_reduce_sum(
            n_masked_patches.detach().reshape(1).to(teacher_patch_logits.device, torch.float32).clone()
        )
        return sinkhorn_knopp(teacher_patch_logits, teacher_temp, total_patches, n_iterations)

    @torch.no_grad()
    def update_center(self, teacher_patch_logits: torch.Tensor) -> None:
        """EMA update of the centre with the mean over masked patches of the teacher logits (all processes).

        Args:
            teacher_patch_logits: (M, K) teacher head outputs of this process's masked patches.
        """
        patch_sum = teacher_patch_logits.float().sum(dim=0, keepdim=True)  # (1, K)
        count = torch.tensor([float(teacher_patch_logits.shape[0])], device=patch_sum.device)
        reduced = all_reduce_sum(torch.cat([patch_sum, count[None]], dim=1))  # (1, K + 1)
        if reduced[0, -1] == 0:  # no masked patch anywhere: nothing to average
            return
        batch_center = reduced[:, :-1] / reduced[0, -1]
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1 - self.center_momentum)

    def forward_masked(
        self,
        student_patch_logits: torch.Tensor,
        teacher_probs: torch.Tensor,
        masks: torch.Tensor,
        masks_weight: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The iBOT loss over the masked patches.

        Each masked patch's cross-entropy is weighted by ``1 / (masked patches of its image)``, so every
        masked image counts once whatever its mask ratio; the weighted sum is divided by the number of
        images in ``masks``, the unmasked ones included (DINOv2's normalisation: ``sum / masks.shape[0]``).

        Args:
            student_patch_logits: (M, K) student head outputs of the masked patches, in the order of
                ``masks.flatten().nonzero()`` (image-major).
            teacher_probs: (M, K) teacher targets for the same patches.
            masks: (B, N) bool, True where a patch was masked.
            masks_weight: (M,) per-patch weights; computed from ``masks`` when None (the collate function
                precomputes them).

        Returns:
            The scalar loss.

        Raises:
            ValueError: the number of logits rows is not the number of masked patches.
        """
        n_masked = int(masks.sum())
        if student_patch_logits.shape[0] != n_masked or teacher_probs.shape[0] != n_masked:
            raise ValueError(
                f"masks select {n_masked} patches but got {student_patch_logits.shape[0]} student and "
                f"{teacher_probs.shape[0]} teacher rows"
            )
        if masks_weight is None:
            per_image = 1.0 / masks.sum(dim=-1).clamp(min=1).float()  # (B,)
            masks_weight = per_image[:, None].expand_as(masks)[masks]  # (M,)
        log_probs = F.log_softmax(student_patch_logits.float() / self.student_temp, dim=-1)  # (M, K)
        cross_entropy = -(teacher_probs * log_probs).sum(dim=-1)  # (M,)
        return (cross_entropy * masks_weight.float()).sum() / masks.shape[0]
