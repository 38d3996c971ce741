"""DINOv3 in transformers: ``DINOv3ViTModel`` (``model_type: dinov3_vit``).

Module layout (transformers 5.x)::

    embeddings.{cls_token, mask_token (1, 1, D), register_tokens (1, R, D)}
    embeddings.patch_embeddings                     Conv2d(3, D, 16, stride 16)
    rope_embeddings                                 RoPE (cos, sin) per patch; inv_freq is not saved
    model.layer[i].{norm1, attention, layer_scale1, drop_path, norm2, mlp, layer_scale2}
    norm

Unlike DINOv2 there is no learned position table and no embedding dropout: every block rotates the
queries and keys of the patch tokens (not of the CLS and register tokens) by angles computed from the patch
grid (Su et al. 2021, RoFormer; DINOv3 §3 / ``rope_position_encoding.py``: coordinates normalised to
[-1, 1] per axis, base 100). The rotation depends only on the grid, so any resolution works without
interpolation; in training mode transformers rescales the coordinates by a random factor in
[1/2, 2] (``pos_embed_rescale``), once per forward, as DINOv3 trains.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, cast

import torch
from torch import nn
from transformers import DINOv3ViTConfig, DINOv3ViTModel
from transformers.models.dinov3_vit.modeling_dinov3_vit import Dinov3ViTDropPath, apply_rotary_pos_emb

from raddino.models.blocks import attention_projections
from raddino.models.families.base import BackboneFamily


def rope_inverse_frequencies(theta: float, head_dim: int) -> torch.Tensor:
    """RoPE's inverse periods, (head_dim / 4,): ``theta ** (-4k / head_dim)``, as transformers builds them."""
    return 1 / theta ** torch.arange(0, 1, 4 / head_dim, dtype=torch.float32)


class Dinov3Family(BackboneFamily):
    """Paths and block behaviour of transformers' DINOv3 ViT."""

    name = "dinov3"
    model_classes = (DINOv3ViTModel,)
    config_classes = (DINOv3ViTConfig,)
    blocks_path = "model.layer"
    final_norm_path = "norm"
    embeddings_path = "embeddings"
    patch_embedding_path = "embeddings.patch_embeddings"
    patch_projection_path = "embeddings.patch_embeddings"
    embedding_dropout_path = None
    token_paths: ClassVar[dict[str, str]] = {
        "cls": "embeddings.cls_token",
        "mask": "embeddings.mask_token",
        "registers": "embeddings.register_tokens",
    }
    layer_scale_paths = ("layer_scale1.lambda1", "layer_scale2.lambda1")
    rope_path = "rope_embeddings"

    def model_class(self, config: Any) -> type[Any]:
        """``DINOv3ViTModel``."""
        return DINOv3ViTModel

    def drop_path_module(self, rate: float) -> nn.Module:
        """transformers' own ``Dinov3ViTDropPath`` (one draw per sample, as in ``DINOv3ViTLayer``)."""
        return Dinov3ViTDropPath(rate)

    def block_inputs(self, backbone: nn.Module, pixels: torch.Tensor) -> dict[str, Any]:
        """RoPE's (cos, sin), each (h*w, head_dim), from transformers' own rotary module (so random
        coordinate rescaling in training mode is exactly transformers')."""
        dtype = self.patch_projection(backbone).weight.dtype
        rope = backbone.get_submodule(self.rope_path)
        return {"position_embeddings": rope(pixels.to(dtype))}

    def run_block(self, block: nn.Module, hidden: torch.Tensor, inputs: Mapping[str, Any]) -> torch.Tensor:
        """One ``DINOv3ViTLayer`` with the grid's rotary embeddings."""
        return cast(torch.Tensor, block(hidden, position_embeddings=inputs["position_embeddings"]))

    def attention_inputs(self, block: nn.Module) -> tuple[nn.Module, nn.Linear, nn.Linear]:
        """``norm1`` and the query / key projections (the key has no bias in released DINOv3 models)."""
        query, key, _, _ = attention_projections(block)
        return cast(nn.Module, block.norm1), query, key

    def queries_keys(
        self, block: nn.Module, hidden: torch.Tensor, num_heads: int, inputs: Mapping[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected queries and keys with the patch tokens rotated (CLS and registers are not)."""
        queries, keys = super().queries_keys(block, hidden, num_heads, inputs)  # (B, nh, T, hd) each
        cos, sin = inputs["position_embeddings"]  # (h*w, hd) each
        rotated = apply_rotary_pos_emb(queries, keys, cos, sin)
        return cast(torch.Tensor, rotated[0]), cast(torch.Tensor, rotated[1])

    def reset_buffers(self, backbone: nn.Module) -> None:
        """Recompute RoPE's ``inv_freq`` (not part of the state dict) from the config's ``rope_theta``."""
        rope = backbone.get_submodule(self.rope_path)
        config = cast(DINOv3ViTConfig, backbone.config)
        head_dim = int(config.hidden_size) // int(config.num_attention_heads)
        inverse = rope_inverse_frequencies(float(config.rope_theta), head_dim)
        rope.inv_freq = inverse.to(device=cast(torch.Tensor, rope.inv_freq).device)
