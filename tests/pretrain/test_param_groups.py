"""Parameter groups: which parameters are decayed, lr multipliers per depth, patch embed ×0.2, heads."""

from __future__ import annotations

import pytest
import torch

from raddino.models import DINOHead, Encoder
from raddino.pretrain.param_groups import apply_schedules, build_param_groups


@pytest.fixture(scope="module")
def student() -> tuple[Encoder, dict[str, torch.nn.Module]]:
    encoder = Encoder.from_preset("test", seed=0)
    heads: dict[str, torch.nn.Module] = {
        "dino_head": DINOHead(32, 64, hidden_dim=32, bottleneck_dim=16),
        "ibot_head": DINOHead(32, 48, hidden_dim=32, bottleneck_dim=16),
    }
    return encoder, heads


def _by_parameter(groups: list[dict]) -> dict[str, dict]:
    return {name: group for group in groups for name in group["param_names"]}


def test_every_trainable_parameter_is_in_exactly_one_group(student):
    encoder, heads = student
    groups = build_param_groups(encoder, heads)
    in_groups = [id(p) for group in groups for p in group["params"]]
    expected = [p for p in encoder.parameters()] + [p for head in heads.values() for p in head.parameters()]
    assert len(in_groups) == len(set(in_groups)) == len(expected)
    assert set(in_groups) == {id(p) for p in expected}
    for group in groups:
        assert set(group) >= {"params", "name", "lr_multiplier", "wd_multiplier", "is_last_layer"}
        assert len(group["params"]) == len(group["param_names"])


def test_layerwise_lr_decay_and_patch_embedding_multiplier(student):
    encoder, heads = student  # 2 blocks: depths 0 (embeddings), 1, 2 (blocks), 3 (final norm)
    lookup = _by_parameter(build_param_groups(encoder, heads, layerwise_decay=0.9, patch_embed_lr_mult=0.2))
    prefix = "encoder.backbone."
    assert lookup[prefix + "embeddings.patch_embeddings.projection.weight"]["lr_multiplier"] == pytest.approx(
        0.9**3 * 0.2
    )
    assert lookup[prefix + "embeddings.cls_token"]["lr_multiplier"] == pytest.approx(0.9**3)
    assert lookup[prefix + "embeddings.position_embeddings"]["lr_multiplier"] == pytest.approx(0.9**3)
    assert lookup[prefix + "encoder.layer.0.attention.q_proj.weight"]["lr_multiplier"] == pytest.approx(
        0.9**2
    )
    assert lookup[prefix + "encoder.layer.1.mlp.fc1.weight"]["lr_multiplier"] == pytest.approx(0.9)
    assert lookup[prefix + "layernorm.weight"]["lr_multiplier"] == pytest.approx(1.0)
    assert lookup["dino_head.mlp.0.weight"]["lr_multiplier"] == 1.0
    assert lookup["ibot_head.last_layer.weight_v"]["lr_multiplier"] == 1.0


def test_weight_decay_exemptions(student):
    encoder, heads = student
    lookup = _by_parameter(build_param_groups(encoder, heads))
    no_decay = {name for name, group in lookup.items() if group["wd_multiplier"] == 0.0}
    decay = {name for name, group in lookup.items() if group["wd_multiplier"] == 1.0}
    assert no_decay | decay == set(lookup)
    prefix = "encoder.backbone."
    for name in (
        "embeddings.cls_token",
        "embeddings.mask_token",
        "embeddings.position_embeddings",
        "embeddings.patch_embeddings.projection.bias",
        "encoder.layer.0.norm1.weight",
        "encoder.layer.0.norm2.bias",
        "encoder.layer.1.layer_scale1.lambda1",
        "encoder.layer.1.attention.o_proj.bias",
        "layernorm.weight",
    ):
        assert prefix + name in no_decay, name
    for name in (
        "embeddings.patch_embeddings.projection.weight",
        "encoder.layer.0.attention.q_proj.weight",
        "encoder.layer.1.mlp.fc2.weight",
    ):
        assert prefix + name in decay, name
    assert "dino_head.mlp.0.bias" in no_decay
    assert {
        "dino_head.mlp.0.weight",
        "dino_head.last_layer.weight_v",
        "dino_head.last_layer.weight_g",
    } <= decay


def test_only_the_heads_last_layers_are_flagged(student):
    encoder, heads = student
    lookup = _by_parameter(build_param_groups(encoder, heads))
    flagged = {name for name, group in lookup.items() if group["is_last_layer"]}
    assert flagged == {
        "dino_head.last_layer.weight_v",
        "dino_head.last_layer.weight_g",
        "ibot_head.last_layer.weight_v",
        "ibot_head.last_layer.weight_g",
    }


def test_apply_schedules_sets_lr_and_weight_decay_per_group(student):
    encoder, heads = student
    groups = build_param_groups(encoder, heads)
    optimizer = torch.optim.AdamW(groups, lr=0.0)
    apply_schedules(optimizer, lr=1e-3, weight_decay=0.04, last_layer_lr=0.0)
    for group in optimizer.param_groups:
        expected_lr = 0.0 if group["is_last_layer"] else 1e-3 * group["lr_multiplier"]
        assert group["lr"] == pytest.approx(expected_lr)
        assert group["weight_decay"] == pytest.approx(0.04 * group["wd_multiplier"])

    # A frozen last layer does not move in a step while the rest does.
    last_layer = heads["dino_head"].last_layer.weight_v
    block_weight = encoder.backbone.encoder.layer[0].mlp.fc1.weight
    before_last, before_block = last_layer.detach().clone(), block_weight.detach().clone()
    for parameter in (p for group in groups for p in group["params"]):
        parameter.grad = torch.ones_like(parameter)
    optimizer.step()
    assert torch.equal(last_layer, before_last)
    assert not torch.equal(block_weight, before_block)


def test_frozen_parameters_are_left_out_and_bad_settings_refused(student):
    encoder, heads = student
    encoder.backbone.embeddings.mask_token.requires_grad_(False)
    try:
        names = _by_parameter(build_param_groups(encoder, heads))
        assert "encoder.backbone.embeddings.mask_token" not in names
    finally:
        encoder.backbone.embeddings.mask_token.requires_grad_(True)
    with pytest.raises(ValueError, match="layerwise_decay"):
        build_param_groups(encoder, heads, layerwise_decay=0.0)
    with pytest.raises(ValueError, match="head name"):
        build_param_groups(encoder, {"dino.head": heads["dino_head"]})


@pytest.mark.parametrize("overrides", [{}, {"num_register_tokens": 2}])
def test_groups_follow_the_encoders_depths_and_exemptions(overrides):
    encoder = Encoder.from_preset("test", num_hidden_layers=4, **overrides)
    lookup = _by_parameter(build_param_groups(encoder, {}, layerwise_decay=0.8, patch_embed_lr_mult=0.5))
    depths, patch, exempt = (
        encoder.parameter_depths(),
        encoder.patch_embed_parameters(),
        encoder.no_weight_decay(),
    )
    assert set(lookup) == {f"encoder.{name}" for name in depths}
    for name, depth in depths.items():
        group = lookup[f"encoder.{name}"]
        expected = 0.8 ** (4 + 1 - depth) * (0.5 if name in patch else 1.0)
        assert group["lr_multiplier"] == pytest.approx(expected), name
        assert group["wd_multiplier"] == (0.0 if name in exempt else 1.0), name
    names = {group["name"] for group in lookup.values()}
    assert names == {
        "encoder.patch_embed/decay",
        "encoder.patch_embed/no_decay",
        "encoder.embeddings/no_decay",
        *(f"encoder.layer{i}/{kind}" for i in range(4) for kind in ("decay", "no_decay")),
        "encoder.final/no_decay",
    }
    if overrides:
        assert lookup["encoder.backbone.embeddings.register_tokens"]["name"] == "encoder.embeddings/no_decay"
