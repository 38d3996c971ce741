"""The Gram teacher: a frozen snapshot of the EMA teacher's encoder that anchors the student's patch
similarities (DINOv3's ``SSLMetaArch.gram_teacher`` and the refresh rule of its ``train/train.py``).

It is never in the optimiser (no parameter requires a gradient) and changes only by copying the EMA
teacher's weights: once before iteration ``gram.it_load_ema_teacher``, and with ``gram.rep_update`` after
every iteration ``i`` with ``i + 1 >= gram.it_first_update`` and ``(i + 1) % gram.update_frequency == 0``,
at most ``gram.max_updates`` times. Its weights, whether it is loaded and its update count go into the
checkpoint, so a resumed run refreshes it at the same iterations as an uninterrupted one.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from raddino.models import Encoder
from raddino.pretrain.config import GramConfig
from raddino.pretrain.losses import GramLoss


class GramTeacher(nn.Module):
    """The Gram teacher and the Gram anchoring loss of one run.

    Args:
        teacher_encoder: The EMA teacher's encoder (copied for the architecture; loaded later).
        config: The run's ``gram`` section.
    """

    def __init__(self, teacher_encoder: Encoder, config: GramConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = copy.deepcopy(teacher_encoder)
        self.encoder.set_drop_path(0.0)
        self.encoder.requires_grad_(False)
        self.encoder.eval()
        self.loss = GramLoss(
            normalized=config.normalized,
            img_level=config.img_level,
            remove_neg=config.remove_neg,
            remove_only_teacher_neg=config.remove_only_teacher_neg,
        )
        self.loaded = False  # the loss is off until the EMA teacher was first copied in
        self.updates = 0  # refreshes after the first load (counted against gram.max_updates)

    def train(self, mode: bool = True) -> GramTeacher:
        """Always in eval mode: the snapshot has no drop-path."""
        super().train(False)
        return self

    def load_due(self, step: int) -> bool:
        """Whether the EMA teacher is copied in before 0-based iteration ``step``."""
        return not self.loaded and step == self.config.it_load_ema_teacher

    def update_due(self, step: int) -> bool:
        """Whether the EMA teacher is copied in after 0-based iteration ``step`` (DINOv3's rule)."""
        config, done = self.config, step + 1
        return (
            config.rep_update
            and done >= config.it_first_update
            and done % config.update_frequency == 0
            and (config.max_updates is None or self.updates < config.max_updates)
        )

    @torch.no_grad()
    def copy_from(self, teacher_encoder: nn.Module, *, count: bool) -> None:
        """``gram teacher ← EMA teacher`` parameter for parameter (each rank's shard under FSDP2).

        Args:
            teacher_encoder: The EMA teacher's encoder, sharded as this one when sharded.
            count: Whether this is a refresh (counted in ``updates``) rather than the first load.
        """
        from raddino.pretrain.meta_arch import _local, _reshard

        _reshard(self.encoder)
        _reshard(teacher_encoder)
        ours = [_local(param) for _, param in sorted(self.encoder.named_parameters())]
        theirs = [_local(param) for _, param in sorted(teacher_encoder.named_parameters())]
        if len(ours) != len(theirs):
            raise RuntimeError("Gram teacher and EMA teacher parameters do not line up")
        torch._foreach_copy_(ours, theirs)
        self.loaded = True
        self.updates += int(count)

    def forward(
        self, student_patches: torch.Tensor, global_crops: torch.Tensor, masks: torch.Tensor | None
    ) -> torch.Tensor:
        """The Gram anchoring loss on the global crops.

        Args:
            student_patches: (2B, N, D) the student's final-norm patch tokens of the global crops (masked
                patches replaced by the mask token, as DINOv3's student sees them).
            global_crops: (2B, 3, S, S) the crops, given whole to the Gram teacher.
            masks: (2B, N) bool iBOT masks, for ``tokens_used`` masked / unmasked.

        Raises:
            RuntimeError: called before the Gram teacher was loaded.
        """
        if not self.loaded:
            raise RuntimeError("the Gram teacher is not loaded yet (gram.it_load_ema_teacher)")
        with torch.no_grad():
            teacher_patches = self.encoder(global_crops).patch_sequence  # (2B, N, D)
        tokens = self.config.tokens_used
        if tokens != "all":
            if masks is None:
                raise ValueError(f"gram.tokens_used: {tokens} needs iBOT masks (ibot.loss_weight > 0)")
            chosen = masks if tokens == "masked" else ~masks  # (2B, N)
            return self.loss(student_patches[chosen], teacher_patches[chosen])  # (P, D) each
        return self.loss(student_patches, teacher_patches)

    def schedule_state(self) -> dict[str, int | bool]:
        """Whether it is loaded and how many refreshes it had (with its weights, the checkpoint's part)."""
        return {"loaded": self.loaded, "updates": self.updates}

    def load_schedule_state(self, state: dict[str, int | bool]) -> None:
        """Restore :meth:`schedule_state`."""
        self.loaded, self.updates = bool(state["loaded"]), int(state["updates"])


__all__ = ["GramTeacher"]
