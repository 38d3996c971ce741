"""The fine-tuned network: the encoder and a head, with the mode's frozen modules kept in eval mode.

Classification reads ``[CLS, mean of the patch tokens]`` of the last layer (the probe's ``cls+patch_mean``
feature, 2·D values) into a linear or MLP head, one logit per finding. Segmentation feeds the last layer's
patch tokens (linear, ViTDet) or four intermediate layers (UPerNet) to the segmentation heads of
:mod:`raddino.evaluate.segmentation.heads`, trained together with the encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from raddino.evaluate.segmentation.heads import HeadName, default_layers, make_head
from raddino.models import Encoder


def classification_head(kind: Literal["linear", "mlp"], embed_dim: int, findings: int) -> nn.Module:
    """A head from the 2·D feature to one logit per finding."""
    if kind == "linear":
        return nn.Linear(2 * embed_dim, findings)
    return nn.Sequential(nn.Linear(2 * embed_dim, embed_dim), nn.GELU(), nn.Linear(embed_dim, findings))


class FinetuneNetwork(nn.Module):
    """Encoder + head, one module for the optimiser, DDP and FSDP2.

    Args:
        encoder: The encoder (its ``requires_grad`` already set by the mode).
        head: The head: a classification head (``task: classify``) or a segmentation head.
        task: ``classify`` or ``segment``.
        seg_head: The segmentation head's name (which layers it reads).
        layers: UPerNet's 4 blocks (default: spread over the encoder).
        frozen: Modules kept in eval mode whatever :meth:`train` is told.
    """

    def __init__(
        self,
        encoder: Encoder,
        head: nn.Module,
        task: Literal["classify", "segment"],
        seg_head: HeadName = "linear",
        layers: Sequence[int] = (),
        frozen: Sequence[nn.Module] = (),
    ) -> None:
        super().__init__()
        self.encoder, self.head, self.task, self.seg_head = encoder, head, task, seg_head
        self.layers = list(layers) or default_layers(encoder.num_layers)
        self._frozen = list(frozen)  # a plain list: not submodules a second time

    @classmethod
    def build(
        cls,
        encoder: Encoder,
        task: Literal["classify", "segment"],
        outputs: int,
        head: Literal["linear", "mlp"] = "linear",
        seg_head: HeadName = "linear",
        layers: Sequence[int] = (),
        frozen: Sequence[nn.Module] = (),
        seed: int = 0,
    ) -> FinetuneNetwork:
        """A fresh head (seeded, without touching the global random state) on ``encoder``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if task == "classify":
                module = classification_head(head, encoder.embed_dim, outputs)
            else:
                module = make_head(seg_head, encoder.embed_dim, outputs)
        return cls(encoder, module, task, seg_head, layers, frozen)

    def train(self, mode: bool = True) -> FinetuneNetwork:
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) → (B, C) logits (classify) or (B, C, H, W) logits (segment)."""
        if self.task == "classify":
            features = self.encoder.forward_features(pixels)
            pooled = torch.cat([features.cls, features.patch_tokens.mean(dim=(2, 3))], dim=1)  # (B, 2D)
            return self.head(pooled.float())
        indices = self.layers if self.seg_head == "upernet" else [-1]
        maps = [f.patch_tokens.float() for f in self.encoder.forward_intermediates(pixels, indices)]
        return self.head(maps, pixels.shape[-2:])
