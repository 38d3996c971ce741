"""``load_encoder`` from every kind of source, and the errors a user sees when a source is wrong."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from raddino.models import Encoder, ModelLoadError, dinov2_state_dict, load_encoder, save_dinov2_weights
from raddino.models import loading as loading_module


def _same_features(first: Encoder, second: Encoder, side: int = 56) -> None:
    pixels = torch.randn(2, 3, side, side, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        first.forward_features(pixels).cls, second.forward_features(pixels).cls, atol=1e-6, rtol=0
    )


def test_transformers_folder(random_encoder, tmp_path: Path):
    encoder = random_encoder()
    folder = encoder.save_pretrained(tmp_path / "model")
    loaded = load_encoder(folder)
    assert not loaded.training
    _same_features(encoder, loaded)


def test_dinov2_safetensors_records_the_head_count(random_encoder, tmp_path: Path):
    encoder = random_encoder()
    path = save_dinov2_weights(encoder, tmp_path / "backbone_compatible.safetensors")
    loaded = load_encoder(path)  # width 32 has no 64-dim heads: the file's metadata says 2
    assert loaded.num_heads == 2
    _same_features(encoder, loaded)
    # The folder alone also works when it holds only the DINOv2 file, as in the release.
    _same_features(encoder, load_encoder(tmp_path))


def test_pth_state_dict_and_training_checkpoint(random_encoder, tmp_path: Path):
    encoder = random_encoder()
    state = dinov2_state_dict(encoder)
    torch.save(state, tmp_path / "plain.pth")
    _same_features(encoder, load_encoder(tmp_path / "plain.pth", num_heads=2))
    # DINOv2's teacher_checkpoint.pth: {"teacher": {"backbone.…": …, "dino_head.…": …}}
    teacher = {f"backbone.{key}": value for key, value in state.items()}
    teacher["dino_head.last_layer.weight_g"] = torch.ones(8, 1)
    torch.save({"teacher": teacher, "iteration": 5}, tmp_path / "teacher_checkpoint.pth")
    _same_features(encoder, load_encoder(tmp_path / "teacher_checkpoint.pth", num_heads=2))


class _Payload:
    def __reduce__(self):
        return (os.mkdir, ("pwned",))


def test_pickles_with_code_are_refused_without_running_it(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"cls_token": _Payload()}, protocol=2))
    with pytest.raises(ModelLoadError, match="weights_only") as refused:
        load_encoder(path)
    assert not (tmp_path / "pwned").exists()
    message = str(refused.value)
    assert "\n" not in message  # not PyTorch's four-line explanation
    assert message.startswith(f"{path}: PyTorch weights file refused")
    assert "mkdir" in message  # what it would have run
    assert "In PyTorch 2.6" not in message


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_weights_in_a_folder_name_the_file(random_encoder, tmp_path: Path, damage):
    folder = random_encoder().save_pretrained(tmp_path / "model")
    weights = folder / "model.safetensors"
    content = weights.read_bytes()
    weights.write_bytes(content[: len(content) // 2] if damage == "truncated" else os.urandom(4096))
    with pytest.raises(ModelLoadError) as caught:
        load_encoder(folder)
    assert caught.value.source == str(weights)
    assert "not a readable safetensors file" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_sharded_folder_with_a_missing_shard_names_it(random_encoder, tmp_path: Path):
    folder = random_encoder().save_pretrained(tmp_path / "model")
    names = list(load_file(folder / "model.safetensors"))
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    weight_map = {name: f"model-0000{1 + i % 2}-of-00002.safetensors" for i, name in enumerate(names)}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    with pytest.raises(ModelLoadError, match=r"listed in model\.safetensors\.index\.json") as caught:
        load_encoder(folder)
    assert caught.value.source == str(folder / "model-00002-of-00002.safetensors")


def test_missing_weights_in_a_folder_are_an_error_not_random_init(random_encoder, tmp_path: Path):
    folder = random_encoder().save_pretrained(tmp_path / "model")
    weights = load_file(folder / "model.safetensors")
    del weights["encoder.layer.1.norm2.weight"]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match=r"missing keys: .*layer\.1\.norm2\.weight"):
        load_encoder(folder)


def test_folder_of_another_architecture_is_refused(tmp_path: Path):
    folder = tmp_path / "vit"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "vit", "hidden_size": 32}))
    with pytest.raises(ModelLoadError, match="model type 'vit' is not a DINOv2 or DINOv3 encoder"):
        load_encoder(folder)


def test_transformers_weights_file_points_to_its_folder(random_encoder, tmp_path: Path):
    folder = random_encoder().save_pretrained(tmp_path / "model")
    with pytest.raises(ModelLoadError, match="pass the folder that holds it"):
        load_encoder(folder / "model.safetensors")


@pytest.mark.parametrize(
    ("name", "content", "reason"),
    [
        ("corrupt.safetensors", b"\x00\x01garbage", "not a readable safetensors file"),
        ("empty.pth", b"", r"cannot read PyTorch weights file \(truncated or corrupt\?\)"),
        ("weights.bin", b"1234", "unknown model file type '.bin'"),
    ],
)
def test_unreadable_files_name_the_file_and_reason(tmp_path: Path, name, content, reason):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=reason) as caught:
        load_encoder(path)
    assert caught.value.source == str(path)


def test_sources_that_do_not_exist(tmp_path: Path):
    with pytest.raises(ModelLoadError, match="no such file or folder"):
        load_encoder(tmp_path / "missing" / "model.safetensors")
    with pytest.raises(ModelLoadError, match="no such file or folder"):
        load_encoder("just-a-name")
    with pytest.raises(ModelLoadError, match=r"neither config\.json nor backbone_compatible"):
        load_encoder(tmp_path)
    with pytest.raises(ModelLoadError, match="unknown encoder preset 'vit-huge'"):
        load_encoder("preset:vit-huge")


def test_only_non_local_owner_name_ids_go_to_the_hub(random_encoder, tmp_path: Path, monkeypatch):
    calls = []

    def fake(source, *, local, dtype):
        calls.append((source, local))
        return random_encoder()

    monkeypatch.setattr(loading_module, "_load_transformers", fake)
    load_encoder("microsoft/rad-dino")
    folder = tmp_path / "owner" / "name"
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    load_encoder("owner/name")  # exists locally: never the hub
    assert calls == [("microsoft/rad-dino", False), ("owner/name", True)]


def test_preset_device_and_dtype():
    encoder = load_encoder("preset:test", device="cpu", dtype=torch.bfloat16)
    assert {p.dtype for p in encoder.parameters()} == {torch.bfloat16}
    features = encoder.forward_features(torch.randn(1, 3, 56, 56, dtype=torch.bfloat16))
    assert features.cls.dtype == torch.bfloat16
    assert torch.isfinite(features.cls.float()).all()
