"""Segmentation heads trained from scratch on a frozen encoder's patch tokens (paper §4.3, Table 6).

- ``linear``: BatchNorm + 1×1 convolution on the last layer's patch tokens, upsampled bilinearly to the
  image (DINOv2's linear segmentation head).
- ``vitdet``: the ViTDet simple feature pyramid (Li et al. 2022, §3): scales 4, 2, 1 and 1/2 made from the
  last layer alone by transposed convolutions / max-pooling, each projected by 1×1 and 3×3 convolutions;
  here the levels are upsampled to the finest one, concatenated and fused for dense prediction.
- ``upernet``: UPerNet (Xiao et al. 2018) over 4 intermediate layers (e.g. blocks 3, 5, 7, 11 of 12), made
  into a 4-level pyramid (×4, ×2, ×1, ×½) as BEiT / MMSegmentation do for ViTs, then a pyramid pooling
  module (scales 1, 2, 3, 6) on the coarsest level, an FPN top-down path, and fusion of all levels.

Every head takes a list of (B, D, h, w) patch-token maps and returns (B, C, H, W) logits at the image size.
GroupNorm stands in for BatchNorm inside the decoders so few-shot runs with one image per batch work.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn
from torch.nn import functional

HeadName = Literal["linear", "vitdet", "upernet"]
HEAD_NAMES: tuple[HeadName, ...] = ("linear", "vitdet", "upernet")


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels), channels)


def conv_block(in_channels: int, out_channels: int, kernel: int) -> nn.Sequential:
    """Convolution, GroupNorm, ReLU (MMSegmentation's ``ConvModule``)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, bias=False),
        _norm(out_channels),
        nn.ReLU(inplace=True),
    )


def _rescaler(channels: int, scale: float) -> nn.Module:
    """Changes a ViT map's resolution by ``scale`` in {4, 2, 1, 0.5} (ViTDet, Fig. 2c)."""
    if scale == 4:
        return nn.Sequential(
            nn.ConvTranspose2d(channels, channels, 2, stride=2),
            _norm(channels),
            nn.GELU(),
            nn.ConvTranspose2d(channels, channels, 2, stride=2),
        )
    if scale == 2:
        return nn.ConvTranspose2d(channels, channels, 2, stride=2)
    if scale == 1:
        return nn.Identity()
    if scale == 0.5:
        return nn.MaxPool2d(2, ceil_mode=True)
    raise ValueError(f"unsupported pyramid scale {scale}")


class LinearHead(nn.Module):
    """BatchNorm + 1×1 conv on the last layer's tokens."""

    def __init__(self, embed_dim: int, classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(embed_dim)
        self.classifier = nn.Conv2d(embed_dim, classes, 1)

    def forward(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        logits = self.classifier(self.norm(features[-1]))  # (B, C, h, w)
        return functional.interpolate(logits, size=size, mode="bilinear", align_corners=False)  # (B, C, H, W)


class ViTDetHead(nn.Module):
    """Simple feature pyramid from the last layer, fused for segmentation."""

    scales = (4.0, 2.0, 1.0, 0.5)

    def __init__(self, embed_dim: int, classes: int, channels: int = 256) -> None:
        super().__init__()
        self.levels = nn.ModuleList(
            nn.Sequential(
                _rescaler(embed_dim, scale),
                conv_block(embed_dim, channels, 1),
                conv_block(channels, channels, 3),
            )
            for scale in self.scales
        )
        self.fuse = conv_block(channels * len(self.scales), channels, 3)
        self.classifier = nn.Conv2d(channels, classes, 1)

    def forward(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        last = features[-1]  # (B, D, h, w)
        pyramid = [level(last) for level in self.levels]  # (B, ch, 4h, 4w), (2h, 2w), (h, w), (h/2, w/2)
        finest = pyramid[0].shape[-2:]
        merged = torch.cat(
            [pyramid[0]]
            + [
                functional.interpolate(p, size=finest, mode="bilinear", align_corners=False)
                for p in pyramid[1:]
            ],
            dim=1,
        )  # (B, 4*ch, 4h, 4w)
        logits = self.classifier(self.fuse(merged))  # (B, C, 4h, 4w)
        return functional.interpolate(logits, size=size, mode="bilinear", align_corners=False)


class UPerNetHead(nn.Module):
    """UPerNet on 4 intermediate layers turned into a ×4 / ×2 / ×1 / ×½ pyramid."""

    pool_scales = (1, 2, 3, 6)

    def __init__(self, embed_dim: int, classes: int, channels: int = 256) -> None:
        super().__init__()
        self.rescale = nn.ModuleList(_rescaler(embed_dim, scale) for scale in (4.0, 2.0, 1.0, 0.5))
        self.ppm = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(scale), conv_block(embed_dim, channels, 1))
            for scale in self.pool_scales
        )
        self.bottleneck = conv_block(embed_dim + channels * len(self.pool_scales), channels, 3)
        self.lateral = nn.ModuleList(conv_block(embed_dim, channels, 1) for _ in range(3))
        self.fpn = nn.ModuleList(conv_block(channels, channels, 3) for _ in range(3))
        self.fuse = conv_block(channels * 4, channels, 3)
        self.classifier = nn.Conv2d(channels, classes, 1)

    def _pyramid_pooling(self, top: torch.Tensor) -> torch.Tensor:
        pooled = [
            functional.interpolate(branch(top), size=top.shape[-2:], mode="bilinear", align_corners=False)
            for branch in self.ppm
        ]
        return self.bottleneck(torch.cat([top, *pooled], dim=1))  # (B, ch, h/2, w/2)

    def forward(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        if len(features) != 4:
            raise ValueError(f"UPerNet needs 4 intermediate layers, got {len(features)}")
        levels = [rescale(feature) for rescale, feature in zip(self.rescale, features, strict=True)]
        laterals = [conv(level) for conv, level in zip(self.lateral, levels[:3], strict=True)]
        laterals.append(self._pyramid_pooling(levels[3]))  # finest (4h) ... coarsest (h/2)
        for index in range(3, 0, -1):  # top-down: add the coarser level, upsampled
            laterals[index - 1] = laterals[index - 1] + functional.interpolate(
                laterals[index], size=laterals[index - 1].shape[-2:], mode="bilinear", align_corners=False
            )
        outputs = [conv(lateral) for conv, lateral in zip(self.fpn, laterals[:3], strict=True)] + [
            laterals[3]
        ]
        finest = outputs[0].shape[-2:]
        merged = torch.cat(
            [outputs[0]]
            + [
                functional.interpolate(o, size=finest, mode="bilinear", align_corners=False)
                for o in outputs[1:]
            ],
            dim=1,
        )  # (B, 4*ch, 4h, 4w)
        logits = self.classifier(self.fuse(merged))
        return functional.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def make_head(name: HeadName, embed_dim: int, classes: int, channels: int = 256) -> nn.Module:
    """A fresh head by name."""
    if name == "linear":
        return LinearHead(embed_dim, classes)
    if name == "vitdet":
        return ViTDetHead(embed_dim, classes, channels)
    if name == "upernet":
        return UPerNetHead(embed_dim, classes, channels)
    raise ValueError(f"unknown segmentation head '{name}'; choose from {', '.join(HEAD_NAMES)}")


def default_layers(num_layers: int) -> list[int]:
    """UPerNet's 4 blocks, 0-based: 3, 5, 7, 11 for 12 blocks (BEiT / MMSegmentation), scaled for others."""
    return [max(0, round(num_layers * fraction) - 1) for fraction in (4 / 12, 6 / 12, 8 / 12, 12 / 12)]
