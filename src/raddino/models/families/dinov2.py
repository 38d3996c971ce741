"""DINOv2 in transformers: ``Dinov2Model`` and ``Dinov2WithRegistersModel``.

Module layout (transformers 4.56 – 5.x)::

    embeddings.{cls_token, mask_token, register_tokens, position_embeddings, dropout}
    embeddings.patch_embeddings.projection          Conv2d(3, D, 14, stride 14)
    encoder.layer[i].{norm1, attention, layer_scale1, drop_path, norm2, mlp, layer_scale2}
    layernorm

Both models' blocks are the same except for their class names, and both build stochastic depth from
``Dinov2DropPath`` (uniform in every block, ``config.drop_path_rate``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, cast

import torch
from torch import nn
from transformers import Dinov2Config, Dinov2Model, Dinov2WithRegistersConfig, Dinov2WithRegistersModel
from transformers.models.dinov2.modeling_dinov2 import Dinov2DropPath

from raddino.models.blocks import attention_projections
from raddino.models.families.base import BackboneFamily


class Dinov2Family(BackboneFamily):
    """Paths and block behaviour of transformers' DINOv2 models (with or without register tokens)."""

    name = "dinov2"
    model_classes = (Dinov2Model, Dinov2WithRegistersModel)
    config_classes = (Dinov2Config, Dinov2WithRegistersConfig)
    blocks_path = "encoder.layer"
    final_norm_path = "layernorm"
    embeddings_path = "embeddings"
    patch_embedding_path = "embeddings.patch_embeddings"
    patch_projection_path = "embeddings.patch_embeddings.projection"
    embedding_dropout_path = "embeddings.dropout"
    token_paths: ClassVar[dict[str, str]] = {
        "cls": "embeddings.cls_token",
        "mask": "embeddings.mask_token",
        "registers": "embeddings.register_tokens",
        "positions": "embeddings.position_embeddings",
    }
    layer_scale_paths = ("layer_scale1.lambda1", "layer_scale2.lambda1")

    def model_class(self, config: Any) -> type[Any]:
        """``Dinov2WithRegistersModel`` when the config has register tokens, else ``Dinov2Model``."""
        return Dinov2WithRegistersModel if getattr(config, "num_register_tokens", 0) else Dinov2Model

    def drop_path_module(self, rate: float) -> nn.Module:
        """transformers' own ``Dinov2DropPath``: the draws of a run do not depend on who set the rate."""
        return Dinov2DropPath(rate)

    def run_block(self, block: nn.Module, hidden: torch.Tensor, inputs: Mapping[str, Any]) -> torch.Tensor:
        """One ``Dinov2Layer`` (transformers 4 returns a tuple, 5 a tensor); it takes no other inputs."""
        output = block(hidden)
        return output[0] if isinstance(output, tuple) else output

    def attention_inputs(self, block: nn.Module) -> tuple[nn.Module, nn.Linear, nn.Linear]:
        """``norm1`` and the query / key projections, whatever the installed transformers calls them."""
        query, key, _, _ = attention_projections(block)
        return cast(nn.Module, block.norm1), query, key
