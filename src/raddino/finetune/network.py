"""The fine-tuned network: the encoder and a head, with the mode's frozen modules kept in eval mode.

Classification reads ``[CLS, mean of the patch tokens]`` of the last layer (the probe's ``cls+patch_mean``
feature, 2·D values), standardised with the starting encoder's statistics on the training images, into a
linear or MLP head, one logit per finding. Segmentation feeds the last layer's
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


class Standardise(nn.Module):
    """``(x − mean) / std`` per feature with fixed statistics (buffers, saved with the head).

    The probe standardises its features (:mod:`raddino.evaluate.probe.heads`); here the statistics are
    those of the starting encoder's features on the training images, so the head's learning rate means
    the same whatever the encoder's feature scale, and the frozen mode is the probe's linear head.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.detach().clone().float())
        self.register_buffer("std", std.detach().clone().float().clamp(min=1e-6))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.mean) / self.std


def pooled_features(encoder: Encoder, pixels: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) → (B, 2·D): the last layer's CLS token and the mean of its patch tokens."""
    features = encoder.forward_features(pixels)
    return torch.cat([features.cls, features.patch_tokens.mean(dim=(2, 3))], dim=1).float()


@torch.no_grad()
def feature_statistics(
    encoder: Encoder, pixels: torch.Tensor, batch_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation (2·D each) of :func:`pooled_features` over ``pixels`` (N, 3, H, W),
    computed in eval mode and summed in float64."""
    was_training = encoder.training
    encoder.eval()
    total = torch.zeros(2 * encoder.embed_dim, dtype=torch.float64)
    squares = torch.zeros_like(total)
    for start in range(0, len(pixels), batch_size):
        values = pooled_features(encoder, pixels[start : start + batch_size].float().to(device))
        total += values.double().sum(dim=0).cpu()
        squares += values.double().square().sum(dim=0).cpu()
    encoder.train(was_training)
    mean = total / max(len(pixels), 1)
    variance = (squares / max(len(pixels), 1) - mean.square()).clamp(min=0)
    return mean.float(), variance.sqrt().float()


def classification_head(
    kind: Literal["linear", "mlp"], embed_dim: int, findings: int, standardise: Standardise | None = None
) -> nn.Module:
    """A head from the 2·D feature to one logit per finding, after the standardisation when given."""
    if kind == "linear":
        layers: list[nn.Module] = [nn.Linear(2 * embed_dim, findings)]
    else:
        layers = [nn.Linear(2 * embed_dim, embed_dim), nn.GELU(), nn.Linear(embed_dim, findings)]
    return nn.Sequential(*([standardise] if standardise is not None else []), *layers)


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
        statistics: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> FinetuneNetwork:
        """A fresh head (seeded, without touching the global random state) on ``encoder``; a
        classification head standardises its input with ``statistics`` (mean, std) when given."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            if task == "classify":
                standardise = Standardise(*statistics) if statistics is not None else None
                module = classification_head(head, encoder.embed_dim, outputs, standardise)
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
            return self.head(pooled_features(self.encoder, pixels))  # (B, 2D) -> (B, C)
        indices = self.layers if self.seg_head == "upernet" else [-1]
        maps = [f.patch_tokens.float() for f in self.encoder.forward_intermediates(pixels, indices)]
        return self.head(maps, pixels.shape[-2:])
