"""DINOv3-original-format state dicts: parity with a forward written from DINOv3's own code, key checks,
loading from files and training checkpoints, and ``export`` round trips with the DINO and iBOT heads."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from transformers import AutoModel

from raddino.data.preprocess import PreprocessConfig
from raddino.models import (
    ConversionError,
    DINOHead,
    ModelLoadError,
    dinov3_state_dict,
    encoder_from_dinov3,
    export_encoder,
    load_dino_head,
    load_encoder,
    save_dino_head,
    save_dinov2_weights,
    save_original_weights,
)


def _rotate_half(values: torch.Tensor) -> torch.Tensor:
    first, second = values.chunk(2, dim=-1)
    return torch.cat([-second, first], dim=-1)


def dinov3_reference_forward(
    state: dict[str, torch.Tensor], pixels: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """DINOv3's DinoVisionTransformer.forward_features written out from its state dict, no transformers
    (``rope_position_encoding.py`` with ``normalize_coords="separate"``, ``LinearKMaskedBias``, ``Mlp`` /
    ``SwiGLUFFN``). Returns the normalised tokens (B, 1 + R + h*w, D)."""
    kernel = state["patch_embed.proj.weight"]
    patch, dim = kernel.shape[-1], kernel.shape[0]
    batch, _, height, width = pixels.shape
    rows, cols = height // patch, width // patch
    patches = (
        F.conv2d(pixels, kernel, state["patch_embed.proj.bias"], stride=patch).flatten(2).transpose(1, 2)
    )
    prefix = [state["cls_token"].expand(batch, -1, -1)]
    if "storage_tokens" in state:
        prefix.append(state["storage_tokens"].expand(batch, -1, -1))
    tokens = torch.cat([*prefix, patches], dim=1)  # (B, 1 + R + h*w, D)
    first_patch = tokens.shape[1] - rows * cols
    periods = state["rope_embed.periods"]  # (hd / 4,)
    head_dim = 4 * periods.numel()
    heads = dim // head_dim
    coords_h = torch.arange(0.5, rows) / rows
    coords_w = torch.arange(0.5, cols) / cols
    coords = torch.stack(torch.meshgrid(coords_h, coords_w, indexing="ij"), dim=-1).flatten(0, 1) * 2 - 1
    angles = (2 * math.pi * coords[:, :, None] / periods[None, None, :]).flatten(1, 2).tile(2)  # (hw, hd)
    sin, cos = torch.sin(angles), torch.cos(angles)
    block = 0
    while f"blocks.{block}.norm1.weight" in state:
        p = {
            k.split(f"blocks.{block}.", 1)[1]: v for k, v in state.items() if k.startswith(f"blocks.{block}.")
        }
        x = F.layer_norm(tokens, (dim,), p["norm1.weight"], p["norm1.bias"], eps=eps)
        bias = p.get("attn.qkv.bias")
        if bias is not None and "attn.qkv.bias_mask" in p:
            bias = bias * p["attn.qkv.bias_mask"]
        qkv = F.linear(x, p["attn.qkv.weight"], bias).reshape(batch, -1, 3, heads, head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # (B, nh, T, hd) each
        q = torch.cat(
            [q[:, :, :first_patch], q[:, :, first_patch:] * cos + _rotate_half(q[:, :, first_patch:]) * sin],
            2,
        )
        k = torch.cat(
            [k[:, :, :first_patch], k[:, :, first_patch:] * cos + _rotate_half(k[:, :, first_patch:]) * sin],
            2,
        )
        attention = (q @ k.transpose(-2, -1) * head_dim**-0.5).softmax(-1)
        x = (attention @ v).transpose(1, 2).reshape(batch, -1, dim)
        tokens = tokens + p["ls1.gamma"] * F.linear(x, p["attn.proj.weight"], p["attn.proj.bias"])
        x = F.layer_norm(tokens, (dim,), p["norm2.weight"], p["norm2.bias"], eps=eps)
        if "mlp.w1.weight" in p:
            gate = F.silu(F.linear(x, p["mlp.w1.weight"], p["mlp.w1.bias"]))
            x = F.linear(
                gate * F.linear(x, p["mlp.w2.weight"], p["mlp.w2.bias"]), p["mlp.w3.weight"], p["mlp.w3.bias"]
            )
        else:
            x = F.linear(
                F.gelu(F.linear(x, p["mlp.fc1.weight"], p["mlp.fc1.bias"])),
                p["mlp.fc2.weight"],
                p["mlp.fc2.bias"],
            )
        tokens = tokens + p["ls2.gamma"] * x
        block += 1
    return F.layer_norm(tokens, (dim,), state["norm.weight"], state["norm.bias"], eps=eps)


SWIGLU = {"use_gated_mlp": True, "hidden_act": "silu"}


@pytest.mark.parametrize(
    ("overrides", "side"), [({}, 224), ({}, 512), (SWIGLU, 224), ({"key_bias": True}, 64)]
)
def test_original_format_matches_dinov3s_own_forward(random_encoder, overrides, side):
    encoder = random_encoder(preset="test16", **overrides)
    state = dinov3_state_dict(encoder)
    assert ("blocks.0.attn.qkv.bias_mask" in state) == (not overrides.get("key_bias"))
    loaded = encoder_from_dinov3(state)
    pixels = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = dinov3_reference_forward(state, pixels)
        features = loaded.forward_features(pixels)
        # In float64 the two agree to ~1e-8 (transformers computes the RoPE angles in float32): the ~3e-6
        # of float32 is the order of sums, not the conversion.
        reference64 = dinov3_reference_forward({k: v.double() for k, v in state.items()}, pixels.double())
        features64 = loaded.double().forward_features(pixels.double())
    torch.testing.assert_close(features.cls, reference[:, 0], atol=2e-5, rtol=0)
    torch.testing.assert_close(features.patch_sequence, reference[:, 5:], atol=1e-5, rtol=0)
    torch.testing.assert_close(features64.cls, reference64[:, 0], atol=1e-7, rtol=0)
    torch.testing.assert_close(features64.patch_sequence, reference64[:, 5:], atol=1e-7, rtol=0)


def test_key_names_and_shapes_are_dinov3s(random_encoder):
    state = dinov3_state_dict(random_encoder(preset="test16"))
    assert state["mask_token"].shape == (1, 32)  # (1, 1, D) in transformers
    assert state["storage_tokens"].shape == (1, 4, 32)
    assert state["blocks.1.attn.qkv.weight"].shape == (96, 32)
    # The key's third of the bias is masked (and zero), as LinearKMaskedBias saves it.
    assert state["blocks.0.attn.qkv.bias_mask"].tolist() == [1.0] * 32 + [0.0] * 32 + [1.0] * 32
    assert torch.equal(state["blocks.0.attn.qkv.bias"][32:64], torch.zeros(32))
    # RoPE periods of base 100 and 16-dim heads: 100 ** (k / 4).
    torch.testing.assert_close(state["rope_embed.periods"], torch.tensor([1.0, 100**0.25, 10.0, 100**0.75]))
    assert not any(key.startswith(("embeddings.", "model.")) for key in state)


def test_round_trip_is_bit_identical(random_encoder):
    encoder = random_encoder(preset="test16", **SWIGLU)
    back = encoder_from_dinov3(dinov3_state_dict(encoder))
    assert back.state_dict().keys() == encoder.state_dict().keys()
    assert all(torch.equal(back.state_dict()[key], value) for key, value in encoder.state_dict().items())
    assert back.config.use_gated_mlp
    assert back.config.hidden_act == "silu"
    assert back.config.rope_theta == 100.0


def test_bad_state_dicts_name_the_keys(random_encoder):
    state = dinov3_state_dict(random_encoder(preset="test16"))
    with pytest.raises(ConversionError, match=r"missing keys blocks\.1\.ls2\.gamma"):
        encoder_from_dinov3({k: v for k, v in state.items() if k != "blocks.1.ls2.gamma"})
    with pytest.raises(ConversionError, match=r"unknown keys head\.weight"):
        encoder_from_dinov3({**state, "head.weight": torch.zeros(3)})
    with pytest.raises(ConversionError, match=r"blocks\.0\.norm2\.weight: shape \(31,\), expected \(32,\)"):
        encoder_from_dinov3({**state, "blocks.0.norm2.weight": torch.ones(31)})
    with pytest.raises(ConversionError, match=r"bias_mask: masks more or other than the key bias"):
        encoder_from_dinov3({**state, "blocks.0.attn.qkv.bias_mask": torch.ones(96)})
    with pytest.raises(ConversionError, match=r"untied CLS and patch norms\) is not supported"):
        encoder_from_dinov3({**state, "cls_norm.weight": torch.ones(32), "cls_norm.bias": torch.zeros(32)})
    min_max = state["rope_embed.periods"] * 0.5  # dinov3's min/max-period RoPE: not base ** (4k / hd)
    with pytest.raises(ConversionError, match="min/max-period"):
        encoder_from_dinov3({**state, "rope_embed.periods": min_max})
    with pytest.raises(ConversionError, match="num_heads 4 does not fit"):
        encoder_from_dinov3(state, num_heads=4)


def test_local_crop_norm_of_training_is_dropped(random_encoder):
    encoder = random_encoder(preset="test16")
    state = dinov3_state_dict(encoder)
    extra = {"local_cls_norm.weight": torch.ones(32), "local_cls_norm.bias": torch.zeros(32)}
    loaded = encoder_from_dinov3({**state, **extra})  # untie_global_and_local_cls_norm (ViT-L SAT-493M)
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in encoder.state_dict().items())


def test_dinov2_format_of_a_dinov3_encoder_is_refused(random_encoder, tmp_path: Path):
    encoder = random_encoder(preset="test16")
    with pytest.raises(ConversionError, match="dinov3 encoder has no DINOv2-format state dict"):
        save_dinov2_weights(encoder, tmp_path / "w.safetensors")
    with pytest.raises(ConversionError, match="dinov2 encoder has no DINOv3-format"):
        dinov3_state_dict(random_encoder())


def _same_features(first, second, side: int = 64) -> None:
    pixels = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(
            first.forward_features(pixels).patch_tokens,
            second.forward_features(pixels).patch_tokens,
            atol=1e-6,
            rtol=0,
        )


def test_load_encoder_reads_released_pth_and_training_checkpoints(random_encoder, tmp_path: Path):
    encoder = random_encoder(preset="test16")
    state = dinov3_state_dict(encoder)
    torch.save(state, tmp_path / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth")  # a released file's form
    loaded = load_encoder(tmp_path / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth")
    assert (loaded.family.name, loaded.num_heads, loaded.config.layer_norm_eps) == ("dinov3", 2, 1e-5)
    _same_features(encoder, loaded)
    # A DINOv3 training checkpoint: {"teacher": {"backbone.…", "dino_head.…", "ibot_head.…"}}
    teacher = {f"backbone.{key}": value for key, value in state.items()}
    for prefix in ("dino_head", "ibot_head"):
        head = DINOHead(in_dim=32, out_dim=12, hidden_dim=16, bottleneck_dim=8, weight_norm=False)
        teacher.update({f"{prefix}.{key}": value for key, value in head.state_dict().items()})
    torch.save({"teacher": teacher, "iteration": 10}, tmp_path / "model_0000009.pth")
    _same_features(encoder, load_encoder(tmp_path / "model_0000009.pth"))
    ibot = load_dino_head(tmp_path / "model_0000009.pth", prefix="ibot_head.")
    assert (ibot.weight_norm, ibot.out_dim) == (False, 12)


def test_transformers_weights_given_as_a_file_are_refused(random_encoder, tmp_path: Path):
    folder = random_encoder(preset="test16").save_pretrained(tmp_path / "hf")
    with pytest.raises(ModelLoadError, match="this is a transformers weights file"):
        load_encoder(folder / "model.safetensors")


@pytest.fixture
def dinov3_release(random_encoder, tmp_path: Path) -> Path:
    """A DINOv3 transformers folder with 64 px preprocessing and DINOv3-style DINO and iBOT heads."""
    folder = random_encoder(preset="test16").save_pretrained(
        tmp_path / "release", preprocess=PreprocessConfig(shortest_edge=64, crop_size=(64, 64))
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for name, out_dim in (("dino_head", 40), ("ibot_head", 24)):
            head = DINOHead(in_dim=32, out_dim=out_dim, hidden_dim=24, bottleneck_dim=8, weight_norm=False)
            save_dino_head(head, folder / f"{name}.safetensors")
    return folder


def test_transformers_to_dinov3_and_back_is_bit_identical(dinov3_release: Path, tmp_path: Path):
    original = export_encoder(dinov3_release, tmp_path / "dinov3", format="dinov3")
    assert sorted(p.name for p in original.files) == [
        "backbone_compatible.safetensors", "dino_head.safetensors", "ibot_head.safetensors",
        "preprocessor_config.json",
    ]  # fmt: skip
    weights = tmp_path / "dinov3" / "backbone_compatible.safetensors"
    with safe_open(str(weights), "pt") as handle:
        assert {"storage_tokens", "rope_embed.periods", "blocks.0.attn.qkv.bias_mask"} <= set(handle.keys())
        assert handle.metadata()["layer_norm_eps"] == "1e-05"
    back = export_encoder(tmp_path / "dinov3", tmp_path / "back", format="transformers")
    assert {p.name for p in back.files} >= {
        "model.safetensors",
        "dino_head.safetensors",
        "ibot_head.safetensors",
    }
    first, second = (
        load_file(dinov3_release / "model.safetensors"),
        load_file(tmp_path / "back" / "model.safetensors"),
    )
    assert set(first) == set(second)
    assert all(torch.equal(first[key], second[key]) for key in first)
    for name in ("dino_head.safetensors", "ibot_head.safetensors"):
        head_in, head_out = load_file(dinov3_release / name), load_file(tmp_path / "back" / name)
        assert set(head_in) == set(head_out)
        assert "last_layer.weight" in head_out
        assert all(torch.equal(head_in[key], head_out[key]) for key in head_in)
    config = json.loads((tmp_path / "back" / "config.json").read_text())
    assert (config["model_type"], config["num_register_tokens"], config["patch_size"]) == (
        "dinov3_vit",
        4,
        16,
    )
    model = AutoModel.from_pretrained(tmp_path / "back")
    assert type(model).__name__ == "DINOv3ViTModel"
    pixels = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        reference = model.eval()(pixel_values=pixels).last_hidden_state
        ours = load_encoder(tmp_path / "back").forward_features(pixels)
    torch.testing.assert_close(ours.patch_sequence, reference[:, 5:], atol=1e-5, rtol=0)


def test_export_to_the_other_familys_format_is_one_line(dinov3_release: Path, tmp_path: Path):
    with pytest.raises(
        ValueError, match=r"is a dinov3 encoder: its original format is dinov3 \(--format dinov3\)"
    ):
        export_encoder(dinov3_release, tmp_path / "x", format="dinov2")
    assert not (tmp_path / "x").exists()


def test_dinov3_pth_file_export(dinov3_release: Path, tmp_path: Path):
    result = export_encoder(dinov3_release, tmp_path / "out" / "dinov3_vits16.pth", format="dinov3")
    assert {p.name for p in result.files} == {
        "dinov3_vits16.pth",
        "dino_head.safetensors",
        "ibot_head.safetensors",
    }
    state = torch.load(tmp_path / "out" / "dinov3_vits16.pth", weights_only=True)
    assert "rope_embed.periods" in state
    _same_features(load_encoder(dinov3_release), load_encoder(tmp_path / "out" / "dinov3_vits16.pth"))


def test_layer_norm_eps_travels_in_the_metadata(random_encoder, tmp_path: Path):
    encoder = random_encoder(preset="test16", layer_norm_eps=1e-6)  # DINOv3's "layernorm" norm_layer
    save_original_weights(encoder, tmp_path / "raddino.safetensors")
    assert load_encoder(tmp_path / "raddino.safetensors").config.layer_norm_eps == 1e-6
    save_file(dinov3_state_dict(encoder), str(tmp_path / "plain.safetensors"))  # no metadata: released eps
    assert load_encoder(tmp_path / "plain.safetensors").config.layer_norm_eps == 1e-5


def test_a_hub_style_dinov3_folder_keeps_its_processors_resize_without_crop(random_encoder, tmp_path: Path):
    """facebook/dinov3-* folders carry a DINOv3ViTImageProcessor config: resize to 224×224, no crop key."""
    import numpy as np
    from PIL import Image
    from transformers import DINOv3ViTImageProcessor

    from raddino.data.preprocess import InferencePreprocessor

    folder = random_encoder(preset="test16").save_pretrained(tmp_path / "hub")
    processor = DINOv3ViTImageProcessor(size={"height": 224, "width": 224})
    processor.save_pretrained(folder)  # replaces raddino's BitImageProcessor file
    config = PreprocessConfig.from_model_folder(folder)
    assert (config.resize_size, config.do_center_crop, config.output_size) == ((224, 224), False, (224, 224))
    image = (np.kron(np.random.default_rng(0).random((40, 50)), np.ones((8, 8))) * 255).astype(np.uint8)
    ours = InferencePreprocessor(config).from_array(image)  # (3, 224, 224)
    theirs = processor(Image.fromarray(image).convert("RGB"), return_tensors="pt")["pixel_values"][0]
    # Pillow resizes the 8-bit grey image; the processor resizes floats: about one grey level apart.
    assert (ours - theirs).abs().max() < 0.03
    encoder = load_encoder(folder)
    assert encoder.forward_features(ours[None]).patch_tokens.shape == (1, 32, 14, 14)
