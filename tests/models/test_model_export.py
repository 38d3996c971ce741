"""``export_encoder``: transformers folder ↔ DINOv2 format, as the release ships them."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from transformers import Dinov2Model

from raddino.data.preprocess import PreprocessConfig
from raddino.models import DINOHead, export_encoder, load_encoder, save_dino_head


@pytest.fixture
def release_like(random_encoder, tmp_path: Path) -> Path:
    """A transformers folder with a custom preprocessor config and a DINO head, like microsoft/rad-dino."""
    folder = random_encoder().save_pretrained(
        tmp_path / "release", preprocess=PreprocessConfig(shortest_edge=56, crop_size=(56, 56))
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        save_dino_head(
            DINOHead(in_dim=32, out_dim=40, hidden_dim=24, bottleneck_dim=8), folder / "dino_head.safetensors"
        )
    return folder


def test_transformers_to_dinov2_and_back_is_bit_identical(release_like: Path, tmp_path: Path):
    dinov2 = export_encoder(release_like, tmp_path / "dinov2", format="dinov2")
    assert sorted(p.name for p in dinov2.files) == [
        "backbone_compatible.safetensors", "dino_head.safetensors", "preprocessor_config.json",
    ]  # fmt: skip
    with safe_open(str(tmp_path / "dinov2" / "backbone_compatible.safetensors"), "pt") as handle:
        assert "blocks.0.attn.qkv.weight" in set(handle.keys())
        assert handle.metadata()["num_heads"] == "2"
    back = export_encoder(tmp_path / "dinov2", tmp_path / "back", format="transformers")
    assert {p.name for p in back.files} >= {"config.json", "model.safetensors", "dino_head.safetensors"}
    original, returned = (
        load_file(release_like / "model.safetensors"),
        load_file(tmp_path / "back" / "model.safetensors"),
    )
    assert set(original) == set(returned)
    for key in original:
        assert torch.equal(original[key], returned[key]), key
    head_in, head_out = (
        load_file(release_like / "dino_head.safetensors"),
        load_file(tmp_path / "back" / "dino_head.safetensors"),
    )
    assert all(torch.equal(head_in[key], head_out[key]) for key in head_in)
    assert json.loads((tmp_path / "back" / "preprocessor_config.json").read_text())["size"] == {
        "shortest_edge": 56
    }


def test_both_formats_give_transformers_features(release_like: Path, tmp_path: Path):
    export_encoder(release_like, tmp_path / "weights.safetensors", format="dinov2")
    reference = Dinov2Model.from_pretrained(release_like).eval()  # transformers' own model and loader
    pixels = torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(2))
    expected = reference(pixel_values=pixels).last_hidden_state  # (B, 1 + 16, D)
    for source in (release_like, tmp_path / "weights.safetensors"):
        features = load_encoder(source).forward_features(pixels)
        torch.testing.assert_close(features.cls, expected[:, 0], atol=1e-5, rtol=0)
        torch.testing.assert_close(features.patch_sequence, expected[:, 1:], atol=1e-5, rtol=0)


def test_dinov2_pth_output_and_explicit_head(random_encoder, tmp_path: Path):
    source = random_encoder().save_pretrained(tmp_path / "model")
    head = save_dino_head(
        DINOHead(in_dim=32, out_dim=10, hidden_dim=16, bottleneck_dim=8), tmp_path / "h.safetensors"
    )
    result = export_encoder(source, tmp_path / "out" / "teacher.pth", format="dinov2", dino_head=head)
    assert [p.name for p in result.files] == ["teacher.pth", "dino_head.safetensors"]
    state = torch.load(tmp_path / "out" / "teacher.pth", weights_only=True)
    assert state["pos_embed"].shape == (1, 17, 32)


def test_existing_outputs_need_overwrite(release_like: Path, tmp_path: Path):
    export_encoder(release_like, tmp_path / "out", format="transformers")
    with pytest.raises(FileExistsError, match=r"model\.safetensors exists"):
        export_encoder(release_like, tmp_path / "out", format="transformers")
    export_encoder(release_like, tmp_path / "out", format="transformers", overwrite=True)


def test_head_of_the_wrong_width_is_refused_before_writing(random_encoder, tmp_path: Path):
    source = random_encoder().save_pretrained(tmp_path / "model")
    head = save_dino_head(
        DINOHead(in_dim=64, out_dim=10, hidden_dim=16, bottleneck_dim=8), tmp_path / "h.safetensors"
    )
    with pytest.raises(ValueError, match="takes width 64, the encoder gives 32"):
        export_encoder(source, tmp_path / "out", format="dinov2", dino_head=head)
    assert not (tmp_path / "out").exists()


def test_unknown_format_is_refused(random_encoder, tmp_path: Path):
    with pytest.raises(ValueError, match="format must be"):
        export_encoder("preset:test", tmp_path / "out", format="onnx")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("umask", "folder_mode", "file_mode"), [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)]
)
def test_exported_folders_get_the_umask_permissions(
    random_encoder, tmp_path: Path, umask: int, folder_mode: int, file_mode: int
):
    # A transformers export was staged with mkdtemp and renamed into place: 0700 with 0600 weights.
    source = random_encoder().save_pretrained(tmp_path / "model")
    previous = os.umask(umask)
    try:
        result = export_encoder(source, tmp_path / "export", format="transformers")
        again = export_encoder(source, tmp_path / "export", format="transformers", overwrite=True)
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "export").stat().st_mode) == folder_mode
    assert {stat.S_IMODE(path.stat().st_mode) for path in result.files} == {file_mode}
    assert sorted(path.name for path in (tmp_path / "export").iterdir()) == sorted(
        p.name for p in again.files
    )
