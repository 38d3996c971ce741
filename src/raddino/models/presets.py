"""Named encoder sizes for random initialisation, as transformers ``Dinov2Config`` objects.

The ViT presets follow the released ``facebook/dinov2-*`` configs (patch 14, 518 px = 37×37 patches,
MLP ratio 4, LayerNorm eps 1e-6, 64-dim attention heads, SwiGLU only for giant). ``vitb14`` is the RAD-DINO
release's architecture (768 wide, 12 blocks, 12 heads, no register tokens). ``test`` is a 2-block, 32-wide
model at 56 px (4×4 patches) that runs in milliseconds on a CPU, for tests and demos.

LayerScale starts at 1e-5, DINOv2's value for training from scratch (``student.layerscale`` in
``ssl_default_config.yaml``); released checkpoints carry their own trained gammas, so the value only matters
for random initialisation.
"""

from __future__ import annotations

from typing import Any

from transformers import Dinov2Config, Dinov2WithRegistersConfig

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

EncoderConfig = Dinov2Config | Dinov2WithRegistersConfig


def preset_names() -> list[str]:
    """The preset names, smallest first."""
    return list(PRESETS)


def make_config(**values: Any) -> EncoderConfig:
    """A transformers config for these values: ``Dinov2WithRegistersConfig`` when
    ``num_register_tokens`` > 0, else ``Dinov2Config``."""
    registers = int(values.pop("num_register_tokens", 0) or 0)
    values.setdefault("architectures", ["Dinov2WithRegistersModel" if registers else "Dinov2Model"])
    if registers:
        values.pop("use_mask_token", None)  # the registers model always has a mask token
        return Dinov2WithRegistersConfig(num_register_tokens=registers, **values)
    return Dinov2Config(**values)


def preset_config(name: str, **overrides: Any) -> EncoderConfig:
    """The config of preset ``name``, with any ``Dinov2Config`` field overridden.

    Args:
        name: One of :data:`PRESETS` (``test``, ``vits14``, ``vitb14``, ``vitl14``, ``vitg14``).
        **overrides: Config fields to change, e.g. ``drop_path_rate=0.1``, ``image_size=224``,
            ``num_register_tokens=4`` (which switches to the registers variant).

    Raises:
        KeyError: ``name`` is not a preset (the message lists the presets).
    """
    if name not in PRESETS:
        raise KeyError(f"unknown encoder preset {name!r}; choose one of {', '.join(PRESETS)}")
    return make_config(**{**_COMMON, **PRESETS[name], **overrides})
