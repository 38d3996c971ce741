"""The encoder's feature interface on a DINOv3 backbone against transformers' own ``DINOv3ViTModel``.

Test-sized DINOv3 (``test16``: 2 blocks, 32 wide, 2 heads, patch 16, 4 register tokens) with every
parameter random, at 224 px (14×14 patches) and 512 px (32×32), the two resolutions chest X-ray studies
compare DINOv3 at.
"""

from __future__ import annotations

import pytest
import torch
from transformers import DINOv3ViTBackbone, DINOv3ViTConfig, DINOv3ViTModel

from raddino.models import Encoder

RESOLUTIONS = [224, 512]


def _pixels(batch: int = 2, height: int = 64, width: int | None = None, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, height, width or height, generator=generator)


@pytest.fixture
def dinov3(random_encoder) -> Encoder:
    return random_encoder(preset="test16")


@pytest.mark.parametrize("side", RESOLUTIONS)
def test_features_match_transformers_without_registers_among_the_patches(dinov3: Encoder, side: int):
    pixels = _pixels(height=side)
    with torch.no_grad():
        features = dinov3.forward_features(pixels)
        reference = dinov3.backbone(pixel_values=pixels).last_hidden_state  # (B, 1 + 4 + h*w, D)
    grid = side // 16
    assert features.patch_tokens.shape == (2, 32, grid, grid)
    assert features.register_tokens is not None
    assert features.register_tokens.shape == (2, 4, 32)
    torch.testing.assert_close(features.cls, reference[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(features.register_tokens, reference[:, 1:5], atol=1e-5, rtol=0)
    torch.testing.assert_close(features.patch_sequence, reference[:, 5:], atol=1e-5, rtol=0)


@pytest.mark.parametrize("side", RESOLUTIONS)
def test_intermediates_match_transformers_backbone_and_hidden_states(dinov3: Encoder, side: int):
    encoder = dinov3
    pixels = _pixels(1, side)
    # transformers' backbone applies the final norm to every stage (DINOv3's get_intermediate_layers).
    values = {k: v for k, v in encoder.config.to_dict().items() if k not in ("model_type", "out_features")}
    config = DINOv3ViTConfig(**{**values, "out_indices": [1, 2]})
    config.return_class_token = True
    backbone = DINOv3ViTBackbone._from_config(config, attn_implementation="sdpa").eval()
    backbone.load_state_dict(encoder.backbone.state_dict())
    with torch.no_grad():
        normed = encoder.forward_intermediates(pixels, [0, 1], norm=True)
        expected = backbone(pixel_values=pixels)
        raw = encoder.forward_intermediates(pixels, [0], norm=False)[0]
        hidden = encoder.backbone(pixel_values=pixels, output_hidden_states=True).hidden_states
    for ours, maps, cls in zip(normed, expected.feature_maps, expected.cls_tokens, strict=True):
        torch.testing.assert_close(ours.patch_tokens, maps, atol=1e-5, rtol=0)  # (1, D, h, w)
        torch.testing.assert_close(ours.cls, cls, atol=1e-5, rtol=0)
    torch.testing.assert_close(raw.cls, hidden[1][:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(raw.patch_sequence, hidden[1][:, 5:], atol=1e-5, rtol=0)


def test_rope_needs_no_position_table_and_any_grid_works(dinov3: Encoder):
    assert not dinov3.has_position_table
    with pytest.raises(ValueError, match="no position table: its blocks use RoPE"):
        dinov3.position_embeddings(4, 4)
    pixels = _pixels(1, 64, 96)  # 4×6 patches: each axis normalised on its own
    with torch.no_grad():
        features = dinov3.forward_features(pixels)
        reference = dinov3.backbone(pixel_values=pixels).last_hidden_state
    assert features.patch_tokens.shape == (1, 32, 4, 6)
    torch.testing.assert_close(features.patch_sequence, reference[:, 5:], atol=1e-5, rtol=0)


def test_patch_tokens_are_on_the_16_px_grid(dinov3: Encoder):
    pixels = _pixels(1)
    with torch.no_grad():
        base = dinov3.forward_features(pixels).patch_tokens
        changed = pixels.clone()
        changed[:, :, 16:32, 48:64] += 1.0  # patch row 1, column 3
        delta = (dinov3.forward_features(changed).patch_tokens - base).abs().sum(dim=1)[0]  # (h, w)
    assert delta.argmax().item() == 1 * 4 + 3
    with pytest.raises(ValueError, match="not a multiple of the patch size 16"):
        dinov3.forward_features(_pixels(1, 56))


def test_masked_patches_match_transformers(dinov3: Encoder):
    pixels = _pixels()
    masks = torch.zeros(2, 16, dtype=torch.bool)
    masks[0, [0, 5, 6]] = True
    masks[1, 10:] = True
    with torch.no_grad():
        features = dinov3.forward_features(pixels, bool_masked_pos=masks)
        reference = dinov3.backbone(pixel_values=pixels, bool_masked_pos=masks).last_hidden_state
        unmasked = dinov3.forward_features(pixels)
    torch.testing.assert_close(features.cls, reference[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(features.patch_sequence, reference[:, 5:], atol=1e-5, rtol=0)
    assert (features.cls - unmasked.cls).abs().max() > 1e-3
    assert dinov3.mask_token is not None
    assert dinov3.mask_token.numel() == 32


def test_attention_maps_match_transformers_eager_attention(dinov3: Encoder):
    pixels = _pixels()
    eager = DINOv3ViTModel._from_config(dinov3.config, attn_implementation="eager").eval()
    eager.load_state_dict(dinov3.backbone.state_dict())
    with torch.no_grad():
        reference = eager(pixel_values=pixels, output_attentions=True).attentions  # one per block
        maps = dinov3.attention_maps(pixels, layer=-1)
    assert maps.shape == (2, 2, 21, 21)  # (B, heads, 1 + 4 + 16, 1 + 4 + 16)
    torch.testing.assert_close(maps, reference[-1], atol=1e-5, rtol=0)
    torch.testing.assert_close(dinov3.attention_maps(pixels, layer=0), reference[0], atol=1e-5, rtol=0)


def test_rope_coordinates_are_rescaled_at_random_only_in_training(dinov3: Encoder):
    pixels = _pixels()
    dinov3.train()
    assert not torch.equal(dinov3(pixels).cls, dinov3(pixels).cls)  # DINOv3's rescale in [1/2, 2]
    dinov3.eval()
    assert torch.equal(dinov3(pixels).cls, dinov3(pixels).cls)
    fixed = Encoder.from_preset("test16", pos_embed_rescale=None).train()
    assert torch.equal(fixed(pixels).cls, fixed(pixels).cls)


def test_every_parameter_gets_a_finite_gradient(dinov3: Encoder):
    dinov3.train()
    masks = torch.zeros(2, 16, dtype=torch.bool)
    masks[:, :4] = True
    features = dinov3(_pixels(), bool_masked_pos=masks)
    (features.cls.square().mean() + features.patch_tokens.square().mean()).backward()
    for name, parameter in dinov3.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_activation_checkpointing_gives_the_same_gradients(dinov3: Encoder):
    encoder = Encoder.from_state_dict(
        {**dinov3.config.to_dict(), "pos_embed_rescale": None}, dinov3.state_dict()
    ).train()
    pixels = _pixels()
    encoder(pixels).cls.square().sum().backward()
    plain = {name: p.grad.clone() for name, p in encoder.named_parameters() if p.grad is not None}
    encoder.zero_grad()
    encoder.set_activation_checkpointing(True)
    assert all(block.gradient_checkpointing for block in encoder.blocks)
    encoder(pixels).cls.square().sum().backward()
    for name, grad in plain.items():
        torch.testing.assert_close(dict(encoder.named_parameters())[name].grad, grad, atol=1e-6, rtol=0)
    encoder.set_activation_checkpointing(False)
    assert not any(block.gradient_checkpointing for block in encoder.blocks)


def test_no_register_tokens_variant(random_encoder):
    encoder = random_encoder(preset="test16", num_register_tokens=0)
    pixels = _pixels()
    with torch.no_grad():
        features = encoder.forward_features(pixels)
        reference = encoder.backbone(pixel_values=pixels).last_hidden_state
    assert encoder.num_register_tokens == 0
    torch.testing.assert_close(features.patch_sequence, reference[:, 1:], atol=1e-5, rtol=0)
