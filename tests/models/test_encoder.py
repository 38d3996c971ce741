"""The encoder's feature interface against transformers' own Dinov2 models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoImageProcessor, AutoModel, Dinov2Model

from raddino.data.preprocess import PreprocessConfig
from raddino.models import Encoder, FeatureMap


def _pixels(batch: int = 2, side: int = 56, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("overrides", [{}, {"num_register_tokens": 4}, {"use_swiglu_ffn": True}])
def test_forward_features_match_transformers_last_hidden_state(random_encoder, overrides):
    encoder = random_encoder(**overrides)
    pixels = _pixels()
    features = encoder.forward_features(pixels)
    reference = encoder.backbone(pixel_values=pixels).last_hidden_state  # (B, 1 + R + 16, D)
    start = 1 + encoder.num_register_tokens
    assert features.cls.shape == (2, 32)
    assert features.patch_tokens.shape == (2, 32, 4, 4)
    torch.testing.assert_close(features.cls, reference[:, 0], atol=1e-5, rtol=0)
    torch.testing.assert_close(features.patch_sequence, reference[:, start:], atol=1e-5, rtol=0)
    if encoder.num_register_tokens:
        torch.testing.assert_close(features.register_tokens, reference[:, 1:start], atol=1e-5, rtol=0)


def test_patch_tokens_are_on_the_image_grid(random_encoder):
    """Token (row r, column c) of the grid comes from the patch at rows 14r.., columns 14c.."""
    encoder = random_encoder()
    pixels = _pixels(1)
    base = encoder.forward_features(pixels).patch_tokens
    changed = pixels.clone()
    changed[:, :, 14:28, 42:56] += 1.0  # patch row 1, column 3
    delta = (encoder.forward_features(changed).patch_tokens - base).abs().sum(dim=1)[0]  # (h, w)
    assert delta.argmax().item() == 1 * 4 + 3


def test_native_resolution_uses_stored_position_embeddings_unchanged(random_encoder):
    encoder = random_encoder(image_size=518)
    assert encoder.position_embeddings(37, 37) is encoder.backbone.embeddings.position_embeddings
    assert encoder.forward_features(_pixels(1, 518)).patch_tokens.shape == (1, 32, 37, 37)


def test_other_resolutions_interpolate_position_embeddings_as_dinov2(random_encoder):
    encoder = random_encoder(image_size=518)
    stored = encoder.backbone.embeddings.position_embeddings.detach()  # (1, 1 + 37*37, D)
    grid = stored[:, 1:].reshape(1, 37, 37, -1).permute(0, 3, 1, 2)
    # DINOv2 vision_transformer.interpolate_pos_encoding: scale factor (16 + 0.1) / 37, bicubic.
    expected = F.interpolate(grid, scale_factor=(16.1 / 37, 16.1 / 37), mode="bicubic")
    expected = expected.permute(0, 2, 3, 1).reshape(1, 256, -1)
    resized = encoder.position_embeddings(16, 16).detach()
    assert resized.shape == (1, 257, 32)
    torch.testing.assert_close(resized[:, 1:], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(resized[:, :1], stored[:, :1])
    # transformers ≥ 5 resizes to a size instead, which moves the embeddings noticeably.
    by_size = F.interpolate(grid, size=(16, 16), mode="bicubic").permute(0, 2, 3, 1).reshape(1, 256, -1)
    assert (by_size - expected).abs().max() > 1e-3
    assert encoder.forward_features(_pixels(1, 224)).patch_tokens.shape == (1, 32, 16, 16)


def test_register_models_resize_with_antialiasing_like_transformers(random_encoder):
    """DINOv2's register models resize to a size with anti-aliasing, as transformers' registers model."""
    encoder = random_encoder(num_register_tokens=4, image_size=112)
    pixels = _pixels(1, 56)
    reference = encoder.backbone(pixel_values=pixels).last_hidden_state
    torch.testing.assert_close(encoder.forward_features(pixels).cls, reference[:, 0], atol=1e-5, rtol=0)


def test_non_square_input_gives_a_non_square_grid(random_encoder):
    encoder = random_encoder()
    features = encoder.forward_features(torch.randn(1, 3, 28, 70))
    assert features.patch_tokens.shape == (1, 32, 2, 5)


def test_bad_pixels_are_refused_with_the_reason(random_encoder):
    encoder = random_encoder()
    with pytest.raises(ValueError, match="not a multiple of the patch size 14"):
        encoder.forward_features(torch.randn(1, 3, 50, 56))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        encoder.forward_features(torch.randn(1, 1, 56, 56))


def test_mask_tokens_replace_masked_patches_like_transformers(random_encoder):
    encoder = random_encoder()
    pixels = _pixels()
    masks = torch.zeros(2, 16, dtype=torch.bool)
    masks[0, [0, 5, 6]] = True
    masks[1, 10:] = True
    features = encoder.forward_features(pixels, bool_masked_pos=masks)
    reference = encoder.backbone(pixel_values=pixels, bool_masked_pos=masks).last_hidden_state
    torch.testing.assert_close(features.cls, reference[:, 0], atol=1e-5, rtol=0)
    unmasked = encoder.forward_features(pixels).cls
    assert (features.cls - unmasked).abs().max() > 1e-3
    with pytest.raises(ValueError, match="bool_masked_pos"):
        encoder.forward_features(pixels, bool_masked_pos=masks[:, :8])


def test_intermediates_match_transformers_hidden_states(random_encoder):
    encoder = random_encoder(num_hidden_layers=4)
    pixels = _pixels()
    outputs = encoder.backbone(pixel_values=pixels, output_hidden_states=True)
    hidden = outputs.hidden_states  # embeddings, then one per block
    raw = encoder.forward_intermediates(pixels, [2, 0, -1], norm=False)
    assert [tuple(f.patch_tokens.shape) for f in raw] == [(2, 32, 4, 4)] * 3
    for features, block in zip(raw, [2, 0, 3], strict=True):
        torch.testing.assert_close(features.cls, hidden[block + 1][:, 0], atol=1e-5, rtol=0)
    normed = encoder.forward_intermediates(pixels, [1, -1], norm=True)
    torch.testing.assert_close(normed[0].cls, encoder.backbone.layernorm(hidden[2])[:, 0], atol=1e-5, rtol=0)
    last = encoder.forward_features(pixels)
    torch.testing.assert_close(normed[1].cls, last.cls, atol=1e-6, rtol=0)
    torch.testing.assert_close(normed[1].patch_tokens, last.patch_tokens, atol=1e-6, rtol=0)


def test_intermediates_int_takes_the_last_blocks_and_bad_indices_fail(random_encoder):
    encoder = random_encoder(num_hidden_layers=4)
    pixels = _pixels(1)
    last_two = encoder.forward_intermediates(pixels, 2)
    explicit = encoder.forward_intermediates(pixels, [2, 3])
    for got, want in zip(last_two, explicit, strict=True):
        torch.testing.assert_close(got.cls, want.cls)
    with pytest.raises(IndexError, match="block 4 out of range for a 4-block encoder"):
        encoder.forward_intermediates(pixels, [4])
    with pytest.raises(IndexError):
        encoder.forward_intermediates(pixels, [-5])


def test_attention_maps_match_transformers_eager_attention(random_encoder):
    encoder = random_encoder()
    pixels = _pixels()
    eager = Dinov2Model._from_config(encoder.config, attn_implementation="eager")
    eager.load_state_dict(encoder.backbone.state_dict())
    reference = eager.eval()(pixel_values=pixels, output_attentions=True).attentions  # per block
    maps = encoder.attention_maps(pixels, layer=-1)
    assert maps.shape == (2, 2, 17, 17)  # (B, heads, 1 + 16, 1 + 16)
    torch.testing.assert_close(maps, reference[-1], atol=1e-5, rtol=0)
    torch.testing.assert_close(encoder.attention_maps(pixels, layer=0), reference[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(maps.sum(-1), torch.ones(2, 2, 17))


def test_every_parameter_gets_a_finite_gradient(random_encoder):
    encoder = random_encoder(num_register_tokens=2).train()
    masks = torch.zeros(2, 16, dtype=torch.bool)
    masks[:, :4] = True
    features = encoder(_pixels(), bool_masked_pos=masks)
    (features.cls.square().mean() + features.patch_tokens.square().mean()).backward()
    for name, parameter in encoder.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_activation_checkpointing_recomputes_blocks_with_the_same_gradients(random_encoder):
    encoder = random_encoder().train()
    pixels = _pixels()
    encoder(pixels).cls.square().sum().backward()
    plain = {name: p.grad.clone() for name, p in encoder.named_parameters() if p.grad is not None}
    encoder.zero_grad()
    encoder.set_activation_checkpointing(True)
    calls = []
    for layer in encoder.backbone.encoder.layer:
        checkpoint = layer._gradient_checkpointing_func

        def counted(*args, _checkpoint=checkpoint, **kwargs):
            calls.append(1)
            return _checkpoint(*args, **kwargs)

        layer._gradient_checkpointing_func = counted
    encoder(pixels).cls.square().sum().backward()
    assert len(calls) == encoder.num_layers
    for name, grad in plain.items():
        torch.testing.assert_close(dict(encoder.named_parameters())[name].grad, grad, atol=1e-6, rtol=0)
    encoder.set_activation_checkpointing(False)
    assert not any(layer.gradient_checkpointing for layer in encoder.backbone.encoder.layer)


def test_presets_are_reproducible_and_leave_the_global_random_state_alone():
    state = torch.random.get_rng_state()
    first = Encoder.from_preset("test", seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    second = Encoder.from_preset("test", seed=3)
    other = Encoder.from_preset("test", seed=4)
    key = "embeddings.patch_embeddings.projection.weight"
    assert torch.equal(first.backbone.state_dict()[key], second.backbone.state_dict()[key])
    assert not torch.equal(first.backbone.state_dict()[key], other.backbone.state_dict()[key])


def test_backbone_runs_sdpa_attention():
    assert Encoder.from_preset("test").backbone.config._attn_implementation == "sdpa"


def test_save_pretrained_loads_with_transformers_auto_classes(random_encoder, tmp_path: Path):
    encoder = random_encoder()
    preprocess = PreprocessConfig(shortest_edge=224, crop_size=(224, 224), image_mean=(0.5, 0.4, 0.3))
    folder = encoder.save_pretrained(tmp_path / "model", preprocess=preprocess)
    assert sorted(p.name for p in folder.iterdir()) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]
    model = AutoModel.from_pretrained(folder)
    assert type(model).__name__ == "Dinov2Model"
    pixels = _pixels()
    torch.testing.assert_close(
        model(pixel_values=pixels).last_hidden_state[:, 0],
        encoder.forward_features(pixels).cls,
        atol=1e-5,
        rtol=0,
    )
    processor = AutoImageProcessor.from_pretrained(folder)
    assert type(processor).__name__.startswith("BitImageProcessor")
    assert list(processor.image_mean) == [0.5, 0.4, 0.3]
    assert processor.size["shortest_edge"] == 224
    assert processor.crop_size["height"] == 224
    # Saving again over the folder replaces the files and leaves no staging folder behind.
    encoder.save_pretrained(folder)
    assert json.loads((folder / "preprocessor_config.json").read_text())["size"] == {"shortest_edge": 518}
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_feature_map_patch_sequence_is_raster_order():
    tokens = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)  # (B, D, h, w)
    features = FeatureMap(cls=torch.zeros(2, 3), patch_tokens=tokens)
    assert features.patch_sequence.shape == (2, 4, 3)
    assert torch.equal(features.patch_sequence[0, 1], tokens[0, :, 0, 1])
