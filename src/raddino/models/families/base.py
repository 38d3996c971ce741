"""What :class:`~raddino.models.Encoder` needs to know about one backbone family, and nothing more.

A family adapter is the only code that names a transformers model's module paths (``encoder.layer``,
``embeddings.mask_token``, ``layer_scale1.lambda1`` …). The encoder asks it for its blocks, its
embedding module, its tokens, its LayerScale gammas and its drop-path modules; everything training does
with them (shard units, activation checkpointing, drop-path rates, layer-wise lr decay, weight-decay
exemptions, export names) is written once in terms of these answers. A new family (DINOv3's
``DINOv3ViTModel``) is a subclass that sets its paths and overrides what its blocks do differently.

Adapters are stateless: every method takes the transformers model (``backbone``) or one of its blocks, so
an encoder can be deep-copied (the EMA teacher), sharded or compiled without the adapter going stale.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar, cast

import torch
from torch import nn

# Modules whose weights are scales and shifts, not projections: no weight decay (timm, DINOv2).
NORM_TYPES: tuple[type[nn.Module], ...] = (nn.LayerNorm, nn.GroupNorm, nn.RMSNorm)
_IDENTITY = nn.Identity()


class BackboneFamily(ABC):
    """Module paths and block behaviour of one kind of transformers ViT.

    Attributes:
        name: Short family name (``dinov2``).
        model_classes: The transformers model classes this family reads.
        config_classes: The transformers config classes of those models.
        blocks_path: Dotted path of the ``nn.ModuleList`` of transformer blocks.
        final_norm_path: The norm after the last block.
        embeddings_path: The module holding everything before the first block (depth 0 for lr decay).
        patch_embedding_path: The patch embedding's module (its lr gets DINOv2's extra factor).
        patch_projection_path: The ``nn.Conv2d`` turning pixels into patch tokens.
        embedding_dropout_path: The dropout applied to the token sequence before the first block
            (``None``: the family has none).
        token_paths: Learned tokens by role (``cls``, ``mask``, ``registers``, ``positions``); a path a
            given model lacks (no register tokens, no mask token) is skipped. A family without a
            ``positions`` table (DINOv3's RoPE) gives its blocks position information through
            :meth:`block_inputs` instead.
        layer_scale_paths: Each block's LayerScale gammas, relative to the block.
        drop_path_attribute: The block attribute holding its stochastic-depth module.
    """

    name: ClassVar[str]
    model_classes: ClassVar[tuple[type[nn.Module], ...]]
    config_classes: ClassVar[tuple[type, ...]]
    blocks_path: ClassVar[str]
    final_norm_path: ClassVar[str]
    embeddings_path: ClassVar[str]
    patch_embedding_path: ClassVar[str]
    patch_projection_path: ClassVar[str]
    embedding_dropout_path: ClassVar[str | None]
    token_paths: ClassVar[dict[str, str]]
    layer_scale_paths: ClassVar[tuple[str, ...]]
    drop_path_attribute: ClassVar[str] = "drop_path"

    def handles(self, backbone: nn.Module) -> bool:
        """Whether ``backbone`` is one of this family's models."""
        return isinstance(backbone, self.model_classes)

    def handles_config(self, config: object) -> bool:
        """Whether ``config`` describes one of this family's models."""
        return isinstance(config, self.config_classes)

    @abstractmethod
    def model_class(self, config: Any) -> type[Any]:
        """The transformers model class to build for ``config`` (one of :attr:`model_classes`)."""

    # ------------------------------------------------------------------------------------------ modules
    def blocks(self, backbone: nn.Module) -> nn.ModuleList:
        """The transformer blocks, first to last."""
        return cast(nn.ModuleList, backbone.get_submodule(self.blocks_path))

    def final_norm(self, backbone: nn.Module) -> nn.Module:
        """The norm applied after the last block (and to intermediates with ``norm=True``)."""
        return backbone.get_submodule(self.final_norm_path)

    def embeddings(self, backbone: nn.Module) -> nn.Module:
        """Everything before the first block: patch embedding, tokens, position embeddings."""
        return backbone.get_submodule(self.embeddings_path)

    def patch_embedding(self, backbone: nn.Module) -> nn.Module:
        """The patch embedding's module."""
        return backbone.get_submodule(self.patch_embedding_path)

    def patch_projection(self, backbone: nn.Module) -> nn.Conv2d:
        """The convolution turning (B, 3, H, W) pixels into (B, D, h, w) patch embeddings."""
        return cast(nn.Conv2d, backbone.get_submodule(self.patch_projection_path))

    def embedding_dropout(self, backbone: nn.Module) -> nn.Module:
        """The dropout on the token sequence before the first block (identity when the family has none)."""
        if self.embedding_dropout_path is None:
            return _IDENTITY
        return backbone.get_submodule(self.embedding_dropout_path)

    def tokens(self, backbone: nn.Module) -> dict[str, nn.Parameter]:
        """The learned tokens the model has, by role (``cls``, ``mask``, ``registers``, ``positions``)."""
        found: dict[str, nn.Parameter] = {}
        for role, path in self.token_paths.items():
            owner, _, attribute = path.rpartition(".")
            value = getattr(backbone.get_submodule(owner), attribute, None)
            if isinstance(value, nn.Parameter):
                found[role] = value
        return found

    def layer_scales(self, block: nn.Module) -> list[nn.Parameter]:
        """One block's LayerScale gammas (empty for a block without LayerScale)."""
        scales = []
        for path in self.layer_scale_paths:
            try:
                scales.append(block.get_parameter(path))
            except AttributeError:
                continue
        return scales

    def is_norm(self, module: nn.Module) -> bool:
        """Whether ``module`` is a normalisation layer (its weights get no weight decay)."""
        return isinstance(module, NORM_TYPES)

    # ------------------------------------------------------------------------------------------ blocks
    def set_drop_path(self, block: nn.Module, rate: float) -> None:
        """Give ``block`` stochastic depth with probability ``rate`` (identity at 0)."""
        setattr(block, self.drop_path_attribute, self.drop_path_module(rate) if rate > 0 else nn.Identity())

    def drop_path_rate(self, block: nn.Module) -> float:
        """The block's stochastic-depth probability (0 when it has none)."""
        module = getattr(block, self.drop_path_attribute)
        return float(getattr(module, "drop_prob", 0.0))

    @abstractmethod
    def drop_path_module(self, rate: float) -> nn.Module:
        """A stochastic-depth module with probability ``rate`` > 0, as the family's own blocks build it."""

    def block_inputs(self, backbone: nn.Module, pixels: torch.Tensor) -> dict[str, Any]:
        """What every block needs besides the tokens for images like ``pixels`` (B, 3, H, W): nothing for
        a family whose positions are a learned table added to the tokens; RoPE's (cos, sin) for DINOv3.
        Computed once per forward and passed to :meth:`run_block` and :meth:`queries_keys`."""
        return {}

    @abstractmethod
    def run_block(self, block: nn.Module, hidden: torch.Tensor, inputs: Mapping[str, Any]) -> torch.Tensor:
        """One block on the token sequence (B, T, D) → (B, T, D), with the :meth:`block_inputs`."""

    @abstractmethod
    def attention_inputs(self, block: nn.Module) -> tuple[nn.Module, nn.Linear, nn.Linear]:
        """The block's pre-attention norm and its query and key projections (for attention maps)."""

    def queries_keys(
        self, block: nn.Module, hidden: torch.Tensor, num_heads: int, inputs: Mapping[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The queries and keys one block's attention compares, each (B, heads, T, head_dim), for the
        tokens (B, T, D) entering it: normed and projected, and rotated where the family rotates them."""
        norm, query, key = self.attention_inputs(block)
        normed = norm(hidden)  # (B, T, D)
        batch, tokens, _ = normed.shape
        queries = query(normed).view(batch, tokens, num_heads, -1).transpose(1, 2)  # (B, nh, T, hd)
        keys = key(normed).view(batch, tokens, num_heads, -1).transpose(1, 2)  # (B, nh, T, hd)
        return queries, keys

    def reset_buffers(self, backbone: nn.Module) -> None:  # noqa: B027 - most families have none
        """Recompute buffers that are not saved (a model built on the meta device and filled from a
        state dict has them uninitialised); nothing for families without such buffers."""
