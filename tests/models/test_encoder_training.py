"""What training touches, owned by the encoder: blocks, drop-path, depths, no-decay set, state names.

The expected values are written from transformers' own Dinov2 parameter names (tests may name them; the
library outside ``raddino.models`` may not).
"""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from raddino.models import Encoder
from raddino.models.families import family_of

VARIANTS = [{}, {"num_register_tokens": 4}, {"use_swiglu_ffn": True}]
TOKENS = ("cls_token", "mask_token", "register_tokens", "position_embeddings")


def _pixels(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 56, 56, generator=torch.Generator().manual_seed(0))


def test_blocks_are_the_transformer_blocks_in_order():
    encoder = Encoder.from_preset("test", num_hidden_layers=3)
    assert len(encoder.blocks) == 3
    assert all(a is b for a, b in zip(encoder.blocks, encoder.backbone.encoder.layer, strict=True))
    assert encoder.mask_token is encoder.backbone.embeddings.mask_token
    assert Encoder.from_preset("test", use_mask_token=False).mask_token is None


@pytest.mark.parametrize("overrides", VARIANTS)
def test_every_parameter_gets_its_depth(overrides):
    encoder = Encoder.from_preset("test", num_hidden_layers=3, **overrides)  # depths 0, 1..3, 4
    depths = encoder.parameter_depths()
    assert set(depths) == {name for name, _ in encoder.named_parameters()}
    for name, depth in depths.items():
        block = re.search(r"encoder\.layer\.(\d+)\.", name)
        if block:
            assert depth == int(block.group(1)) + 1, name
        elif name.startswith("backbone.embeddings."):
            assert depth == 0, name
        else:
            assert name.startswith("backbone.layernorm."), name
            assert depth == 4, name
    counts = [sum(1 for depth in depths.values() if depth == d) for d in range(5)]
    per_block = len(list(encoder.blocks[0].parameters()))
    embeddings = 5 + (1 if overrides.get("num_register_tokens") else 0)  # cls, mask, pos, conv w + b
    assert counts == [embeddings, per_block, per_block, per_block, 2]
    assert encoder.patch_embed_parameters() == {
        "backbone.embeddings.patch_embeddings.projection.weight",
        "backbone.embeddings.patch_embeddings.projection.bias",
    }


@pytest.mark.parametrize("overrides", VARIANTS)
def test_no_weight_decay_is_exactly_biases_norms_gammas_and_tokens(overrides):
    encoder = Encoder.from_preset("test", **overrides)
    names = {name for name, _ in encoder.named_parameters()}
    expected = {
        name
        for name in names
        if name.endswith(".bias")
        or name.endswith(("norm1.weight", "norm2.weight", "layernorm.weight"))
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


def test_set_drop_path_sets_each_blocks_rate():
    encoder = Encoder.from_preset("test", num_hidden_layers=4)
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


def test_drop_path_drops_the_residual_branch_of_the_configured_share_of_samples():
    encoder = Encoder.from_preset("test")
    encoder.set_drop_path(0.25)
    drop = encoder.blocks[0].drop_path.train()
    torch.manual_seed(0)
    kept = drop(torch.ones(20_000, 1, 1))  # (N, 1, 1): each sample kept and scaled, or zeroed
    dropped = float((kept == 0).float().mean())
    assert abs(dropped - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 20_000)
    assert torch.allclose(kept[kept != 0], torch.tensor(1 / 0.75))
    encoder.train()
    pixels = _pixels()
    assert not torch.equal(encoder(pixels).cls, encoder(pixels).cls)  # stochastic in training
    encoder.eval()
    assert torch.equal(encoder(pixels).cls, encoder(pixels).cls)


def test_state_dict_round_trip_gives_the_same_encoder(random_encoder):
    encoder = random_encoder(num_register_tokens=2)
    encoder.set_drop_path(0.2)
    rebuilt = Encoder.from_state_dict(encoder.config.to_dict(), encoder.state_dict())
    assert rebuilt.drop_path_rates() == [0.0, 0.0]  # rebuilt for inference
    assert rebuilt.state_dict().keys() == encoder.state_dict().keys()
    assert all(torch.equal(rebuilt.state_dict()[k], v) for k, v in encoder.state_dict().items())
    pixels = _pixels()
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
