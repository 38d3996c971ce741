"""Presets: the released DINOv2 / RAD-DINO and DINOv3 architectures, built on the meta device (no memory,
no time)."""

from __future__ import annotations

import pytest
import torch

from raddino.models import Encoder, preset_config, preset_names


def _meta(name: str, **overrides: object) -> Encoder:
    with torch.device("meta"):
        return Encoder.from_preset(name, seed=None, **overrides)


# Parameter counts of DINOv2's ViTs at 518 px (timm's vit_*_patch14_dinov2 report the same 86.58M, 304.37M
# and 1136.48M; the DINOv2 README rounds them to 21M / 86M / 300M / 1.1B).
@pytest.mark.parametrize(
    ("name", "width", "depth", "heads", "parameters"),
    [
        ("vits14", 384, 12, 6, 22_056_576),
        ("vitb14", 768, 12, 12, 86_580_480),
        ("vitl14", 1024, 24, 16, 304_368_640),
        ("vitg14", 1536, 40, 24, 1_136_480_768),
    ],
)
def test_vit_presets_have_dinov2_sizes(name, width, depth, heads, parameters):
    encoder = _meta(name)
    assert (encoder.embed_dim, encoder.num_layers, encoder.num_heads) == (width, depth, heads)
    assert encoder.embed_dim // encoder.num_heads == 64
    assert sum(p.numel() for p in encoder.parameters()) == parameters


def test_vitb14_is_the_rad_dino_release_architecture():
    config = preset_config("vitb14")
    assert config.model_type == "dinov2"  # no register tokens
    assert (config.patch_size, config.image_size, config.mlp_ratio) == (14, 518, 4)
    assert config.layer_norm_eps == 1e-6
    assert not config.use_swiglu_ffn
    encoder = _meta("vitb14")
    # 518 px → 37 × 37 = 1369 patch positions + CLS
    assert tuple(encoder.backbone.embeddings.position_embeddings.shape) == (1, 1370, 768)


def test_giant_uses_swiglu_with_dinov2_hidden_width():
    layer = _meta("vitg14").backbone.encoder.layer[0]
    # DINOv2 SwiGLUFFNFused: (int(1536 * 4 * 2 / 3) + 7) // 8 * 8 = 4096
    assert layer.mlp.down_proj.in_features == 4096


def test_layerscale_starts_at_dinov2_training_value():
    encoder = Encoder.from_preset("test")
    gammas = encoder.backbone.encoder.layer[0].layer_scale1.lambda1
    assert torch.all(gammas == 1e-5)


def test_overrides_and_registers():
    encoder = _meta("vitb14", num_register_tokens=4, drop_path_rate=0.1)
    assert encoder.num_register_tokens == 4
    assert type(encoder.backbone).__name__ == "Dinov2WithRegistersModel"
    assert encoder.config.drop_path_rate == 0.1


# DINOv3's ViTs (dinov3/hub/backbones.py; the DINOv3 README rounds them to 21M / 86M / 0.3B / 840M). The
# counts are transformers': without the key's third of the qkv bias, which DINOv3 stores but masks to 0.
@pytest.mark.parametrize(
    ("name", "width", "depth", "heads", "parameters"),
    [
        ("vits16", 384, 12, 6, 21_596_544),
        ("vitb16", 768, 12, 12, 85_660_416),
        ("vitl16", 1024, 24, 16, 303_129_600),
        ("vith16plus", 1280, 32, 20, 840_592_640),
    ],
)
def test_dinov3_presets_have_dinov3_sizes(name, width, depth, heads, parameters):
    encoder = _meta(name)
    assert encoder.family.name == "dinov3"
    assert (encoder.embed_dim, encoder.num_layers, encoder.num_heads) == (width, depth, heads)
    assert (encoder.patch_size, encoder.num_register_tokens, encoder.image_size) == (16, 4, 224)
    assert sum(p.numel() for p in encoder.parameters()) == parameters


def test_dinov3_presets_follow_the_released_config():
    config = preset_config("vitb16")
    assert config.model_type == "dinov3_vit"
    assert (config.rope_theta, config.layer_norm_eps, config.layerscale_value) == (100.0, 1e-5, 1e-5)
    assert (config.query_bias, config.key_bias, config.value_bias) == (True, False, True)  # mask_k_bias
    assert (config.intermediate_size, config.use_gated_mlp, config.hidden_act) == (3072, False, "gelu")
    largest = preset_config("vith16plus")  # SwiGLU, ffn_ratio 6: int(1280 * 6 * 2 / 3) = 5120
    assert (largest.intermediate_size, largest.use_gated_mlp, largest.hidden_act) == (5120, True, "silu")
    assert _meta("vith16plus").blocks[0].mlp.gate_proj.out_features == 5120
    test = Encoder.from_preset("test16")
    assert (test.embed_dim, test.num_layers, test.image_size // test.patch_size) == (32, 2, 4)


def test_unknown_preset_lists_the_names():
    dinov2 = ["test", "vits14", "vitb14", "vitl14", "vitg14"]
    assert preset_names() == [*dinov2, "test16", "vits16", "vitb16", "vitl16", "vith16plus"]
    with pytest.raises(KeyError, match="choose one of test, vits14, vitb14, vitl14, vitg14, test16, vits16"):
        preset_config("vith14")
