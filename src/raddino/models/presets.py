"""Named encoder sizes for random initialisation, as transformers config objects.

DINOv2 (``Dinov2Config``): the ViT presets follow the released ``facebook/dinov2-*`` configs (patch 14,
518 px = 37×37 patches, MLP ratio 4, LayerNorm eps 1e-6, 64-dim attention heads, SwiGLU only for giant).
``vitb14`` is the RAD-DINO release's architecture (768 wide, 12 blocks, 12 heads, no register tokens).
``test`` is a 2-block, 32-wide model at 56 px (4×4 patches) that runs in milliseconds on a CPU.

DINOv3 (``DINOv3ViTConfig``): ``vits16``, ``vitb16``, ``vitl16`` and ``vith16plus`` follow
``dinov3/hub/backbones.py`` (patch 16, 224 px = 14×14 patches, RoPE base 100, 4 register tokens, LayerNorm
eps 1e-5, no key bias, MLP ratio 4; SwiGLU with ratio 6 for H+, the largest). ``test16`` is the 2-block,
32-wide DINOv3 at 64 px (4×4 patches).

LayerScale starts at 1e-5, DINOv2's value for training from scratch (``student.layerscale`` in
``ssl_default_config.yaml``); released checkpoints carry their own trained gammas, so the value only matters
for random initialisation.
"""

from __future__ import annotations

from typing import Any

from transformers import Dinov2Config, Dinov2WithRegistersConfig, DINOv3ViTConfig

DINOV3_MODEL_TYPE = "dinov3_vit"

# DINOv2 (Oquab et al. 2023, Table 16 / vision_transformer.py): every size uses 64-dim heads.
PRESETS: dict[str, dict[str, Any]] = {
    "test": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": 56},
    "vits14": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "image_size": 518},
    "vitb14": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "image_size": 518},
    "vitl14": {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "image_size": 518},
    "vitg14": {
        "hidden_size": 1536,
        "num_hidden_layers": 40,
        "num_attention_heads": 24,
        "image_size": 518,
        "use_swiglu_ffn": True,
    },
    # DINOv3 (Siméoni et al. 2025, Table 14 / hub/backbones.py): 64-dim heads, intermediate = 4 × width.
    "test16": {
        "model_type": DINOV3_MODEL_TYPE,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 128,
        "image_size": 64,
    },
    "vits16": {
        "model_type": DINOV3_MODEL_TYPE,
        "hidden_size": 384,
        "num_hidden_layers": 12,
        "num_attention_heads": 6,
        "intermediate_size": 1536,
    },
    "vitb16": {
        "model_type": DINOV3_MODEL_TYPE,
        "hidden_size": 768,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "intermediate_size": 3072,
    },
    "vitl16": {
        "model_type": DINOV3_MODEL_TYPE,
        "hidden_size": 1024,
        "num_hidden_layers": 24,
        "num_attention_heads": 16,
        "intermediate_size": 4096,
    },
    # SwiGLU, ffn_ratio 6: int(1280 * 6 * 2 / 3) = 5120 hidden features (SwiGLUFFN, aligned to 8).
    "vith16plus": {
        "model_type": DINOV3_MODEL_TYPE,
        "hidden_size": 1280,
        "num_hidden_layers": 32,
        "num_attention_heads": 20,
        "intermediate_size": 5120,
        "use_gated_mlp": True,
        "hidden_act": "silu",
    },
}

# Shared by every preset; the values of the released facebook/dinov2-* config.json files.
_COMMON: dict[str, Any] = {
    "patch_size": 14,
    "mlp_ratio": 4,
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-6,
    "qkv_bias": True,
    "layerscale_value": 1e-5,
    "drop_path_rate": 0.0,
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.0,
    "initializer_range": 0.02,
}

# Shared by every DINOv3 preset; the values of dinov3/hub/backbones.py (the released ViTs).
_DINOV3_COMMON: dict[str, Any] = {
    "patch_size": 16,
    "image_size": 224,
    "num_register_tokens": 4,  # n_storage_tokens
    "hidden_act": "gelu",
    "layer_norm_eps": 1e-5,  # norm_layer "layernormbf16"
    "rope_theta": 100.0,  # pos_embed_rope_base
    "pos_embed_rescale": 2.0,  # pos_embed_rope_rescale_coords: training only
    "query_bias": True,
    "key_bias": False,  # mask_k_bias: the key's share of the qkv bias is masked to 0
    "value_bias": True,
    "proj_bias": True,
    "mlp_bias": True,
    "layerscale_value": 1e-5,  # layerscale_init
    "drop_path_rate": 0.0,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
}

EncoderConfig = Dinov2Config | Dinov2WithRegistersConfig | DINOv3ViTConfig


def preset_names() -> list[str]:
    """The preset names, DINOv2's smallest first, then DINOv3's."""
    return list(PRESETS)


def make_config(**values: Any) -> EncoderConfig:
    """A transformers config for these values: ``DINOv3ViTConfig`` when ``model_type`` is ``dinov3_vit``;
    else ``Dinov2WithRegistersConfig`` when ``num_register_tokens`` > 0, or ``Dinov2Config``."""
    model_type = values.pop("model_type", None)
    if model_type == DINOV3_MODEL_TYPE:
        values.setdefault("architectures", ["DINOv3ViTModel"])
        for derived in ("stage_names", "out_features", "out_indices"):  # rebuilt from num_hidden_layers
            values.pop(derived, None)
        return DINOv3ViTConfig(**values)
    registers = int(values.pop("num_register_tokens", 0) or 0)
    values.setdefault("architectures", ["Dinov2WithRegistersModel" if registers else "Dinov2Model"])
    if registers:
        values.pop("use_mask_token", None)  # the registers model always has a mask token
        return Dinov2WithRegistersConfig(num_register_tokens=registers, **values)
    return Dinov2Config(**values)


def preset_config(name: str, **overrides: Any) -> EncoderConfig:
    """The config of preset ``name``, with any field of its transformers config overridden.

    Args:
        name: One of :data:`PRESETS` (DINOv2: ``test``, ``vits14``, ``vitb14``, ``vitl14``, ``vitg14``;
            DINOv3: ``test16``, ``vits16``, ``vitb16``, ``vitl16``, ``vith16plus``).
        **overrides: Config fields to change, e.g. ``drop_path_rate=0.1``, ``image_size=224``,
            ``num_register_tokens=4`` (for DINOv2, which switches to the registers variant).

    Raises:
        KeyError: ``name`` is not a preset (the message lists the presets).
    """
    if name not in PRESETS:
        raise KeyError(f"unknown encoder preset {name!r}; choose one of {', '.join(PRESETS)}")
    common = _DINOV3_COMMON if PRESETS[name].get("model_type") == DINOV3_MODEL_TYPE else _COMMON
    return make_config(**{**common, **PRESETS[name], **overrides})
