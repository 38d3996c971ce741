"""The student/teacher state dict: named by the network's parts, split back into encoder and heads."""

from __future__ import annotations

import pytest
import torch

from raddino.models import DINOHead, Encoder
from raddino.models.dino_head import dino_head_from_state_dict
from raddino.pretrain.checkpoint import CheckpointError
from raddino.pretrain.export import _encoder_from_state
from raddino.pretrain.meta_arch import SSLNetwork, call_named, rename_legacy_parts, split_network_state
from raddino.pretrain.param_groups import build_param_groups


@pytest.fixture
def network() -> SSLNetwork:
    encoder = Encoder.from_preset("test", seed=1)
    with torch.no_grad():
        for parameter in encoder.parameters():  # away from the seed-0 initialisation a rebuild starts at
            parameter.add_(0.1)
    ibot_head = DINOHead(32, 48, hidden_dim=32, bottleneck_dim=16)
    return SSLNetwork(encoder, DINOHead(32, 64, hidden_dim=32, bottleneck_dim=16), ibot_head)


def test_state_names_are_the_parts_and_split_back(network: SSLNetwork) -> None:
    state = network.state_dict()
    assert {key.split(".", 1)[0] for key in state} == {"encoder", "dino_head", "ibot_head"}
    assert not any("backbone.backbone" in key for key in state)
    parts = split_network_state(state)
    assert parts["encoder"].keys() == network.encoder.state_dict().keys()
    rebuilt = Encoder.from_state_dict(network.encoder.config.to_dict(), parts["encoder"])
    pixels = torch.rand(2, 3, 56, 56)
    assert torch.equal(rebuilt.eval()(pixels).cls, network.encoder.eval()(pixels).cls)
    head = dino_head_from_state_dict(parts["dino_head"])
    assert torch.equal(head.last_layer.weight_v, network.dino_head.last_layer.weight_v)
    assert parts["ibot_head"].keys() == network.ibot_head.state_dict().keys()  # type: ignore[union-attr]


def test_checkpoints_from_before_the_rename_split_the_same(network: SSLNetwork) -> None:
    state = network.state_dict()
    legacy = {
        ("backbone" + key[len("encoder") :] if key.startswith("encoder.") else key): v
        for key, v in state.items()
    }
    assert any(key.startswith("backbone.backbone.") for key in legacy)
    old, new = split_network_state(legacy), split_network_state(state)
    assert old.keys() == new.keys()
    assert all(torch.equal(old["encoder"][key], value) for key, value in new["encoder"].items())


def test_export_refuses_a_state_without_the_encoder_in_one_line(network: SSLNetwork) -> None:
    state = {k: v for k, v in network.state_dict().items() if not k.startswith("encoder.")}
    with pytest.raises(
        CheckpointError, match=r"^run/x\.pt \(teacher encoder\): encoder state does not fit"
    ) as caught:
        _encoder_from_state(network.encoder.config.to_dict(), state, source="run/x.pt (teacher encoder)")
    assert "\n" not in str(caught.value)


def test_a_checkpoint_with_the_former_names_loads_into_todays_network_and_optimiser(
    network: SSLNetwork,
) -> None:
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        get_optimizer_state_dict,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    options = StateDictOptions(full_state_dict=True)
    optimizer = torch.optim.AdamW(build_param_groups(network.encoder, network.heads()))
    masks = torch.zeros(2, 16, dtype=torch.bool)
    masks[:, :3] = True  # so the mask token and the iBOT head have gradients and optimiser states too
    outputs = call_named(network, torch.rand(2, 3, 56, 56), None, masks, masks.flatten().nonzero().squeeze(1))
    (outputs["global_logits"].square().sum() + outputs["patch_logits"].square().sum()).backward()
    optimizer.step()

    def former(name: str) -> str:
        return "backbone" + name[len("encoder") :] if name.startswith("encoder.") else name

    saved = get_optimizer_state_dict(network, optimizer, options=options)
    payload = {
        "student": {former(k): v for k, v in network.state_dict().items()},
        "teacher": {former(k): v for k, v in network.state_dict().items()},
        "optimizer": {
            "state": {former(k): v for k, v in saved["state"].items()},
            "param_groups": [
                {**g, "params": [former(p) for p in g["params"]]} for g in saved["param_groups"]
            ],
        },
    }
    upgraded = rename_legacy_parts(payload)
    assert upgraded["student"].keys() == network.state_dict().keys()
    assert rename_legacy_parts(upgraded) is upgraded  # today's names: unchanged

    fresh = SSLNetwork(
        Encoder.from_preset("test", seed=5),
        DINOHead(32, 64, hidden_dim=32, bottleneck_dim=16),
        DINOHead(32, 48, hidden_dim=32, bottleneck_dim=16),
    )
    fresh_optimizer = torch.optim.AdamW(build_param_groups(fresh.encoder, fresh.heads()))
    set_model_state_dict(fresh, upgraded["student"], options=options)
    set_optimizer_state_dict(fresh, fresh_optimizer, upgraded["optimizer"], options=options)
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in network.state_dict().items())
    moments = get_optimizer_state_dict(fresh, fresh_optimizer, options=options)["state"]
    assert all(torch.equal(moments[k]["exp_avg"], v["exp_avg"]) for k, v in saved["state"].items())
