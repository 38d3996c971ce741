"""What the encoder returns for one block: the CLS token, the patch tokens on their grid, the registers."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FeatureMap:
    """The encoder's output for one block.

    Attributes:
        cls: CLS token, (B, D).
        patch_tokens: Patch tokens on their grid, (B, D, h, w) with h = H / patch, w = W / patch.
        register_tokens: Register tokens (B, R, D) for models that have them, else ``None``.
    """

    cls: torch.Tensor
    patch_tokens: torch.Tensor
    register_tokens: torch.Tensor | None = None

    @property
    def patch_sequence(self) -> torch.Tensor:
        """Patch tokens in raster order, (B, h*w, D)."""
        return self.patch_tokens.flatten(2).transpose(1, 2)
