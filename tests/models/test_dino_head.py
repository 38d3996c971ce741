"""The DINO head: DINOv2's layout and key names, weight normalisation, and its file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from raddino.models import DINOHead, ModelLoadError, load_dino_head, save_dino_head


def _small_head(seed: int = 0) -> DINOHead:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = DINOHead(in_dim=32, out_dim=50, hidden_dim=48, bottleneck_dim=16)
    with torch.no_grad():
        head.last_layer.weight_g.uniform_(0.5, 2.0)  # DINOv2 starts g at 1; make it matter
    return head


def test_default_sizes_and_key_names_are_dinov2s():
    with torch.device("meta"):
        head = DINOHead()
    shapes = {key: tuple(value.shape) for key, value in head.state_dict().items()}
    assert shapes == {
        "mlp.0.weight": (2048, 768), "mlp.0.bias": (2048,),
        "mlp.2.weight": (2048, 2048), "mlp.2.bias": (2048,),
        "mlp.4.weight": (256, 2048), "mlp.4.bias": (256,),
        "last_layer.weight_g": (65536, 1), "last_layer.weight_v": (65536, 256),
    }  # fmt: skip


def test_forward_matches_torch_weight_norm_reference():
    head = _small_head()
    state = head.state_dict()
    reference_last = weight_norm(nn.Linear(16, 50, bias=False))
    with torch.no_grad():
        reference_last.parametrizations.weight.original0.copy_(state["last_layer.weight_g"])
        reference_last.parametrizations.weight.original1.copy_(state["last_layer.weight_v"])
    features = torch.randn(4, 32)
    hidden = F.gelu(F.linear(features, state["mlp.0.weight"], state["mlp.0.bias"]))
    hidden = F.gelu(F.linear(hidden, state["mlp.2.weight"], state["mlp.2.bias"]))
    bottleneck = F.normalize(F.linear(hidden, state["mlp.4.weight"], state["mlp.4.bias"]), dim=-1)
    torch.testing.assert_close(head(features), reference_last(bottleneck), atol=1e-6, rtol=0)


def test_prototype_rows_have_norm_g_whatever_the_scale_of_v():
    head = _small_head()
    norms = head.last_layer.weight.norm(dim=1)
    torch.testing.assert_close(norms, head.last_layer.weight_g.squeeze(1))
    features = torch.randn(3, 32)
    before = head(features)
    with torch.no_grad():
        head.last_layer.weight_v.mul_(7.0)
    torch.testing.assert_close(head(features), before, atol=1e-6, rtol=0)


def test_save_and_load_round_trip(tmp_path: Path):
    head = _small_head()
    path = save_dino_head(head, tmp_path / "dino_head.safetensors")
    assert set(load_file(path)) == set(head.state_dict())
    loaded = load_dino_head(path)
    assert (loaded.in_dim, loaded.hidden_dim, loaded.bottleneck_dim, loaded.out_dim) == (32, 48, 16, 50)
    for key, value in head.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_head_inside_a_dinov2_teacher_checkpoint_loads(tmp_path: Path):
    head = _small_head()
    teacher = {f"dino_head.{k}": v for k, v in head.state_dict().items()}
    teacher["backbone.cls_token"] = torch.zeros(1, 1, 32)
    torch.save({"teacher": teacher}, tmp_path / "teacher_checkpoint.pth")
    loaded = load_dino_head(tmp_path / "teacher_checkpoint.pth")
    assert torch.equal(loaded.last_layer.weight_v, head.last_layer.weight_v)


def test_bad_head_files_name_the_keys(tmp_path: Path):
    state = {k: v.contiguous() for k, v in _small_head().state_dict().items()}
    del state["mlp.2.bias"]
    save_file(state, tmp_path / "broken.safetensors")
    with pytest.raises(ModelLoadError, match=r"missing keys \['mlp\.2\.bias'\]"):
        load_dino_head(tmp_path / "broken.safetensors")
    save_file({"weight": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(ModelLoadError, match="not a DINO head"):
        load_dino_head(tmp_path / "other.safetensors")


def test_dinov3_head_has_a_plain_last_layer_and_its_file_round_trips(tmp_path: Path):
    """DINOv3's DINOHead: the same MLP, then ``nn.Linear(bottleneck, prototypes, bias=False)``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        head = DINOHead(in_dim=32, out_dim=50, hidden_dim=48, bottleneck_dim=16, weight_norm=False)
    state = head.state_dict()
    assert "last_layer.weight" in state
    assert "last_layer.weight_v" not in state
    features = torch.randn(4, 32)
    hidden = F.gelu(F.linear(features, state["mlp.0.weight"], state["mlp.0.bias"]))
    hidden = F.gelu(F.linear(hidden, state["mlp.2.weight"], state["mlp.2.bias"]))
    bottleneck = F.normalize(F.linear(hidden, state["mlp.4.weight"], state["mlp.4.bias"]), dim=-1)
    expected = F.linear(bottleneck, state["last_layer.weight"])
    torch.testing.assert_close(head(features), expected, atol=1e-6, rtol=0)
    loaded = load_dino_head(save_dino_head(head, tmp_path / "ibot_head.safetensors"))
    assert not loaded.weight_norm
    torch.testing.assert_close(loaded(features), expected, atol=1e-6, rtol=0)
    # In a DINOv3 training checkpoint the iBOT head sits beside the DINO head under its own prefix.
    teacher = {f"ibot_head.{k}": v for k, v in state.items()}
    teacher.update({f"dino_head.{k}": v for k, v in _small_head().state_dict().items()})
    torch.save({"teacher": teacher}, tmp_path / "model_final.pth")
    assert not load_dino_head(tmp_path / "model_final.pth", prefix="ibot_head.").weight_norm
    assert load_dino_head(tmp_path / "model_final.pth").weight_norm
