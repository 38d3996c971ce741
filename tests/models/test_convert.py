"""DINOv2-format state dicts: parity with a from-the-paper reference forward, key checks, round trips."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from raddino.models import ConversionError, dinov2_state_dict, encoder_from_dinov2


def dinov2_reference_forward(
    state: dict[str, torch.Tensor], pixels: torch.Tensor, num_heads: int, offset: float, antialias: bool
) -> torch.Tensor:
    """DINOv2's DinoVisionTransformer.forward_features written out from its state dict, no transformers.

    Returns the normalised tokens (B, 1 + R + h*w, D).
    """
    patch = state["patch_embed.proj.weight"].shape[-1]
    batch, _, height, width = pixels.shape
    rows, cols = height // patch, width // patch
    tokens = F.conv2d(pixels, state["patch_embed.proj.weight"], state["patch_embed.proj.bias"], stride=patch)
    tokens = tokens.flatten(2).transpose(1, 2)  # (B, h*w, D)
    dim = tokens.shape[-1]
    tokens = torch.cat([state["cls_token"].expand(batch, -1, -1), tokens], dim=1)
    pos = state["pos_embed"]
    side = math.isqrt(pos.shape[1] - 1)
    if (rows, cols) != (side, side):
        grid = pos[:, 1:].reshape(1, side, side, dim).permute(0, 3, 1, 2)
        if offset:
            grid = F.interpolate(
                grid,
                scale_factor=((rows + offset) / side, (cols + offset) / side),
                mode="bicubic",
                antialias=antialias,
            )
        else:
            grid = F.interpolate(grid, size=(rows, cols), mode="bicubic", antialias=antialias)
        pos = torch.cat([pos[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, dim)], dim=1)
    tokens = tokens + pos
    if "register_tokens" in state:
        registers = state["register_tokens"].expand(batch, -1, -1)
        tokens = torch.cat([tokens[:, :1], registers, tokens[:, 1:]], dim=1)
    head_dim = dim // num_heads
    block = 0
    while f"blocks.{block}.norm1.weight" in state:
        p = {
            key.split(f"blocks.{block}.", 1)[1]: v
            for key, v in state.items()
            if key.startswith(f"blocks.{block}.")
        }
        x = F.layer_norm(tokens, (dim,), p["norm1.weight"], p["norm1.bias"], eps=1e-6)
        qkv = F.linear(x, p["attn.qkv.weight"], p["attn.qkv.bias"])  # (B, T, 3D)
        q, k, v = qkv.reshape(batch, -1, 3, num_heads, head_dim).permute(2, 0, 3, 1, 4)  # (B, nh, T, hd) each
        attention = (q @ k.transpose(-2, -1) * head_dim**-0.5).softmax(-1)
        x = (attention @ v).transpose(1, 2).reshape(batch, -1, dim)
        tokens = tokens + p["ls1.gamma"] * F.linear(x, p["attn.proj.weight"], p["attn.proj.bias"])
        x = F.layer_norm(tokens, (dim,), p["norm2.weight"], p["norm2.bias"], eps=1e-6)
        if "mlp.w12.weight" in p:
            x1, x2 = F.linear(x, p["mlp.w12.weight"], p["mlp.w12.bias"]).chunk(2, dim=-1)
            x = F.linear(F.silu(x1) * x2, p["mlp.w3.weight"], p["mlp.w3.bias"])
        else:
            x = F.linear(
                F.gelu(F.linear(x, p["mlp.fc1.weight"], p["mlp.fc1.bias"])),
                p["mlp.fc2.weight"],
                p["mlp.fc2.bias"],
            )
        tokens = tokens + p["ls2.gamma"] * x
        block += 1
    return F.layer_norm(tokens, (dim,), state["norm.weight"], state["norm.bias"], eps=1e-6)


def _random_dinov2_state(random_encoder, **overrides) -> dict[str, torch.Tensor]:
    return dinov2_state_dict(random_encoder(**overrides))


@pytest.mark.parametrize(
    ("overrides", "side"),
    [
        ({}, 56),
        ({}, 84),  # 6×6 patches from a 4×4 grid: DINOv2's offset-0.1 interpolation
        ({"num_register_tokens": 4}, 56),
        ({"num_register_tokens": 4}, 28),  # registers: size-based, anti-aliased interpolation
        ({"use_swiglu_ffn": True}, 56),
    ],
)
def test_loaded_state_dict_matches_the_dinov2_reference_forward(random_encoder, overrides, side):
    state = _random_dinov2_state(random_encoder, **overrides)
    encoder = encoder_from_dinov2(state, num_heads=2)
    pixels = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(1))
    registers = "register_tokens" in state
    reference = dinov2_reference_forward(
        state, pixels, 2, offset=0.0 if registers else 0.1, antialias=registers
    )
    features = encoder.forward_features(pixels)
    start = 1 + encoder.num_register_tokens
    torch.testing.assert_close(features.cls, reference[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(features.patch_sequence, reference[:, start:], atol=1e-5, rtol=0)


def test_state_dict_has_exactly_dinov2_key_names(random_encoder):
    state = _random_dinov2_state(random_encoder)
    block = {
        "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
        "attn.proj.bias", "ls1.gamma", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
        "mlp.fc2.weight", "mlp.fc2.bias", "ls2.gamma",
    }  # fmt: skip
    top = {
        "cls_token",
        "pos_embed",
        "mask_token",
        "patch_embed.proj.weight",
        "patch_embed.proj.bias",
        "norm.weight",
        "norm.bias",
    }
    assert set(state) == top | {f"blocks.{i}.{name}" for i in range(2) for name in block}
    assert state["blocks.0.attn.qkv.weight"].shape == (96, 32)
    assert state["pos_embed"].shape == (1, 17, 32)
    assert state["mask_token"].shape == (1, 32)


def test_swiglu_state_dict_uses_w12_and_w3(random_encoder):
    state = _random_dinov2_state(random_encoder, use_swiglu_ffn=True)
    # (int(32 * 4 * 2/3) + 7) // 8 * 8 = 88 hidden features; w12 holds the gate and the value halves.
    assert state["blocks.0.mlp.w12.weight"].shape == (176, 32)
    assert state["blocks.0.mlp.w3.weight"].shape == (32, 88)
    assert "blocks.0.mlp.fc1.weight" not in state


def test_round_trip_through_dinov2_format_is_bit_identical(random_encoder):
    for overrides in ({}, {"num_register_tokens": 4}, {"use_swiglu_ffn": True}):
        encoder = random_encoder(**overrides)
        back = encoder_from_dinov2(dinov2_state_dict(encoder), num_heads=2)
        original, converted = encoder.backbone.state_dict(), back.backbone.state_dict()
        assert set(original) == set(converted)
        for key in original:
            assert torch.equal(original[key], converted[key]), key


def test_chunked_training_checkpoints_load(random_encoder):
    state = _random_dinov2_state(random_encoder)
    chunked = {
        (key.replace("blocks.1.", "blocks.1.1.").replace("blocks.0.", "blocks.0.0.")): v
        for key, v in state.items()
    }
    assert "blocks.1.1.attn.qkv.weight" in chunked
    encoder = encoder_from_dinov2(chunked, num_heads=2)
    assert torch.equal(
        dinov2_state_dict(encoder)["blocks.1.attn.qkv.weight"], state["blocks.1.attn.qkv.weight"]
    )


def test_architecture_is_read_off_the_tensors(random_encoder):
    state = dinov2_state_dict(random_encoder(hidden_size=128, num_attention_heads=2, image_size=70))
    encoder = encoder_from_dinov2(state)  # heads = 128 / 64, DINOv2's head width
    assert (encoder.embed_dim, encoder.num_heads, encoder.num_layers) == (128, 2, 2)
    assert (encoder.image_size, encoder.patch_size, encoder.num_register_tokens) == (70, 14, 0)
    assert encoder.config.mlp_ratio == 4


def test_width_without_64_dim_heads_needs_num_heads(random_encoder):
    with pytest.raises(ConversionError, match="pass num_heads"):
        encoder_from_dinov2(_random_dinov2_state(random_encoder))


def test_missing_unknown_and_misshapen_keys_are_named(random_encoder):
    state = _random_dinov2_state(random_encoder)
    missing = {k: v for k, v in state.items() if k != "blocks.1.ls2.gamma"}
    with pytest.raises(ConversionError, match=r"missing keys blocks\.1\.ls2\.gamma"):
        encoder_from_dinov2(missing, num_heads=2)
    with pytest.raises(ConversionError, match=r"unknown keys head\.weight"):
        encoder_from_dinov2({**state, "head.weight": torch.zeros(3)}, num_heads=2)
    bad = dict(state)
    bad["blocks.0.norm2.bias"] = torch.zeros(31)
    with pytest.raises(ConversionError, match=r"blocks\.0\.norm2\.bias: shape \(31,\), expected \(32,\)"):
        encoder_from_dinov2(bad, num_heads=2)
    with pytest.raises(ConversionError, match="not a DINOv2 state dict"):
        encoder_from_dinov2({"weight": torch.zeros(1)})
