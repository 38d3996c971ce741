"""What training touches, owned by the encoder: blocks, drop-path, depths, no-decay set, state names.

Every test runs on both families (DINOv2's ``test`` and DINOv3's ``test16`` presets). The expected values
are written from transformers' own parameter names (tests may name them; the library outside
``raddino.models`` may not).
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from raddino.models import Encoder
from raddino.models.families import family_of

# (preset, overrides): DINOv2 plain, with registers, SwiGLU; DINOv3 (4 registers), SwiGLU, no registers.
VARIANTS = [
    ("test", {}),
    ("test", {"num_register_tokens": 4}),
    ("test", {"use_swiglu_ffn": True}),
    ("test16", {}),
    ("test16", {"use_gated_mlp": True, "hidden_act": "silu"}),
    ("test16", {"num_register_tokens": 0}),
]
FAMILIES = ["test", "test16"]
TOKENS = ("cls_token", "mask_token", "register_tokens", "position_embeddings")
# Where each family's transformers model keeps its blocks, final norm and patch projection.
LAYOUT = {
    "test": {
        "blocks": r"^backbone\.encoder\.layer\.(\d+)\.",
        "final_norm": "backbone.layernorm.",
        "patch": "backbone.embeddings.patch_embeddings.projection.",
        "embeddings": 5,  # cls, mask, position table, conv weight + bias (+ registers)
    },
    "test16": {
        "blocks": r"^backbone\.model\.layer\.(\d+)\.",
        "final_norm": "backbone.norm.",
        "patch": "backbone.embeddings.patch_embeddings.",
        "embeddings": 5,  # cls, mask, registers (also when R = 0), conv weight + bias; no position table
    },
}


def _pixels(preset: str = "test", batch: int = 2) -> torch.Tensor:
    side = 56 if preset == "test" else 64
    return torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("preset", FAMILIES)
def test_blocks_are_the_transformer_blocks_in_order(preset):
    encoder = Encoder.from_preset(preset, num_hidden_layers=3)
    assert len(encoder.blocks) == 3
    transformer_blocks = encoder.backbone.encoder.layer if preset == "test" else encoder.backbone.model.layer
    assert all(a is b for a, b in zip(encoder.blocks, transformer_blocks, strict=True))
    assert encoder.mask_token is encoder.backbone.embeddings.mask_token
    if preset == "test":
        assert Encoder.from_preset("test", use_mask_token=False).mask_token is None


@pytest.mark.parametrize(("preset", "overrides"), VARIANTS)
def test_every_parameter_gets_its_depth(preset, overrides):
    encoder = Encoder.from_preset(preset, num_hidden_layers=3, **overrides)  # depths 0, 1..3, 4
    layout = LAYOUT[preset]
    depths = encoder.parameter_depths()
    assert set(depths) == {name for name, _ in encoder.named_parameters()}
    for name, depth in depths.items():
        block = re.search(str(layout["blocks"]), name)
        if block:
            assert depth == int(block.group(1)) + 1, name
        elif name.startswith("backbone.embeddings."):
            assert depth == 0, name
        else:
            assert name.startswith(str(layout["final_norm"])), name
            assert depth == 4, name
    counts = [sum(1 for depth in depths.values() if depth == d) for d in range(5)]
    per_block = len(list(encoder.blocks[0].parameters()))
    dinov2_registers = preset == "test" and bool(overrides.get("num_register_tokens"))
    embeddings = int(layout["embeddings"]) + (1 if dinov2_registers else 0)
    assert counts == [embeddings, per_block, per_block, per_block, 2]
    assert encoder.patch_embed_parameters() == {f"{layout['patch']}weight", f"{layout['patch']}bias"}


@pytest.mark.parametrize(("preset", "overrides"), VARIANTS)
def test_no_weight_decay_is_exactly_biases_norms_gammas_and_tokens(preset, overrides):
    encoder = Encoder.from_preset(preset, **overrides)
    names = {name for name, _ in encoder.named_parameters()}
    final_norm = f"{LAYOUT[preset]['final_norm']}weight"
    expected = {
        name
        for name in names
        if name.endswith(".bias")
        or name.endswith(("norm1.weight", "norm2.weight"))
        or name == final_norm
        or name.endswith("lambda1")
        or name.rsplit(".", 1)[-1] in TOKENS
    }
    assert encoder.no_weight_decay() == expected
    # The same set as the rule param_groups used before the encoder owned it (1-D, bias or token name).
    shapes = dict(encoder.named_parameters())
    former = {
        name
        for name in names
        if name.endswith("bias") or shapes[name].ndim <= 1 or any(token in name for token in TOKENS)
    }
    assert encoder.no_weight_decay() == former
    decayed = names - expected
    assert decayed  # the projections: patch embedding, attention and MLP weights
    assert all(name.endswith("weight") and shapes[name].ndim >= 2 for name in decayed)


@pytest.mark.parametrize("preset", FAMILIES)
def test_set_drop_path_sets_each_blocks_rate(preset):
    encoder = Encoder.from_preset(preset, num_hidden_layers=4)
    assert encoder.drop_path_rates() == [0.0] * 4
    encoder.set_drop_path(0.3)
    assert encoder.drop_path_rates() == [0.3] * 4
    assert encoder.config.drop_path_rate == 0.3
    encoder.set_drop_path(0.3, schedule="linear")  # DINOv2: torch.linspace(0, rate, depth)
    assert encoder.drop_path_rates() == pytest.approx([0.0, 0.1, 0.2, 0.3], abs=1e-7)
    assert isinstance(encoder.blocks[0].drop_path, nn.Identity)  # rate 0: no draws at all
    encoder.set_drop_path(0.0)
    assert encoder.drop_path_rates() == [0.0] * 4
    assert all(isinstance(block.drop_path, nn.Identity) for block in encoder.blocks)
    with pytest.raises(ValueError, match="drop-path rate"):
        encoder.set_drop_path(1.0)
    with pytest.raises(ValueError, match="schedule"):
        encoder.set_drop_path(0.1, schedule="cosine")  # type: ignore[arg-type]


@pytest.mark.parametrize("preset", FAMILIES)
def test_drop_path_drops_the_residual_branch_of_the_configured_share_of_samples(preset):
    # DINOv3 without its random RoPE rescaling, so only drop-path makes training stochastic here.
    encoder = Encoder.from_preset(preset, **({"pos_embed_rescale": None} if preset == "test16" else {}))
    encoder.set_drop_path(0.25)
    drop = encoder.blocks[0].drop_path.train()
    torch.manual_seed(0)
    kept = drop(torch.ones(20_000, 1, 1))  # (N, 1, 1): each sample kept and scaled, or zeroed
    dropped = float((kept == 0).float().mean())
    assert abs(dropped - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 20_000)
    assert torch.allclose(kept[kept != 0], torch.tensor(1 / 0.75))
    encoder.train()
    pixels = _pixels(preset)
    assert not torch.equal(encoder(pixels).cls, encoder(pixels).cls)  # stochastic in training
    encoder.eval()
    assert torch.equal(encoder(pixels).cls, encoder(pixels).cls)


@pytest.mark.parametrize("preset", FAMILIES)
def test_state_dict_round_trip_gives_the_same_encoder(random_encoder, preset):
    encoder = random_encoder(preset=preset, num_register_tokens=2)
    encoder.set_drop_path(0.2)
    rebuilt = Encoder.from_state_dict(encoder.config.to_dict(), encoder.state_dict())
    assert rebuilt.drop_path_rates() == [0.0, 0.0]  # rebuilt for inference
    assert rebuilt.state_dict().keys() == encoder.state_dict().keys()
    assert all(torch.equal(rebuilt.state_dict()[k], v) for k, v in encoder.state_dict().items())
    assert rebuilt.family.name == encoder.family.name
    pixels = _pixels(preset)
    assert torch.equal(rebuilt.eval()(pixels).cls, encoder.eval()(pixels).cls)


def test_state_dict_that_does_not_fit_is_refused_in_one_line():
    encoder = Encoder.from_preset("test")
    state = encoder.state_dict()
    config = encoder.config.to_dict()
    missing = {k: v for k, v in state.items() if k != "backbone.layernorm.weight"}
    with pytest.raises(
        ValueError, match=r"1 missing \(backbone\.layernorm\.weight\), 0 unexpected"
    ) as caught:
        Encoder.from_state_dict(config, missing)
    assert "\n" not in str(caught.value)
    wider = {**state, "backbone.layernorm.weight": torch.ones(64)}
    with pytest.raises(ValueError, match=r"backbone\.layernorm\.weight: shape \(64,\), expected \(32,\)"):
        Encoder.from_state_dict(config, wider)


def test_unknown_backbones_are_refused_with_their_class():
    with pytest.raises(TypeError, match=r"expected a transformers Dinov2Model, .* got Linear"):
        Encoder(nn.Linear(2, 2))  # type: ignore[arg-type]
    assert family_of(Encoder.from_preset("test").backbone).name == "dinov2"
    assert family_of(Encoder.from_preset("test16").backbone).name == "dinov3"
