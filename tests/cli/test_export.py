"""``raddino export`` on the command line."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from raddino.cli import app
from raddino.models import DINOHead, Encoder, save_dino_head


def test_export_to_dinov2_and_back(tmp_path: Path):
    source = Encoder.from_preset("test", seed=1).save_pretrained(tmp_path / "model")
    head = save_dino_head(
        DINOHead(in_dim=32, out_dim=12, hidden_dim=16, bottleneck_dim=8), tmp_path / "head.safetensors"
    )
    runner = CliRunner()
    result = runner.invoke(
        app, ["export", str(source), str(tmp_path / "dinov2"), "--format", "dinov2", "--dino-head", str(head)]
    )
    assert result.exit_code == 0, result.output
    assert "backbone_compatible.safetensors" in result.output
    assert "dino_head.safetensors" in result.output
    assert "blocks.1.ls2.gamma" in load_file(tmp_path / "dinov2" / "backbone_compatible.safetensors")

    result = runner.invoke(
        app, ["export", str(tmp_path / "dinov2"), str(tmp_path / "back")]
    )  # transformers by default
    assert result.exit_code == 0, result.output
    original, back = (
        load_file(source / "model.safetensors"),
        load_file(tmp_path / "back" / "model.safetensors"),
    )
    assert all(torch.equal(original[key], back[key]) for key in original)
    assert (tmp_path / "back" / "dino_head.safetensors").is_file()

    result = runner.invoke(app, ["export", str(tmp_path / "dinov2"), str(tmp_path / "back")])
    assert result.exit_code == 2
    assert "exists" in result.output
    assert "--overwrite" in result.output


def test_bad_source_exits_2_and_names_it(tmp_path: Path):
    missing = tmp_path / "nothing.safetensors"
    result = CliRunner().invoke(app, ["export", str(missing), str(tmp_path / "out"), "--format", "dinov2"])
    assert result.exit_code == 2
    assert f"{missing}: no such file or folder" in result.output
    assert not (tmp_path / "out").exists()
