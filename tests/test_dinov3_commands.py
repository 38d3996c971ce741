"""Every downstream command on a test-sized DINOv3 encoder (patch 16, 4 register tokens, RoPE).

One module-scoped DINOv3 model folder (64 px preprocessing: a 4×4 patch grid) and one phantom set serve
``embed``, ``probe``, ``knn``, ``search``, ``metadata``, ``segment`` (linear, ViTDet, UPerNet),
``report train`` / ``generate``, ``attention``, ``correspond`` and ``pca``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from raddino.cli import app
from raddino.data.phantoms.generate import generate_phantoms
from raddino.data.preprocess import InferencePreprocessor, PreprocessConfig
from raddino.features.store import read_embeddings, read_tokens
from raddino.io.images import read_image
from raddino.models import Encoder, load_encoder

runner = CliRunner()
SIDE = 64  # 4×4 patches of 16 px


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _invoke(arguments: list[str]) -> str:
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def dinov3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``test16`` preset (DINOv3, 2 blocks, 32 wide, 4 registers), saved as a transformers folder."""
    folder = tmp_path_factory.mktemp("dinov3-encoder")
    encoder = Encoder.from_preset("test16", seed=0)
    with torch.no_grad():  # LayerScale at 1 so the blocks matter (the preset starts them at 1e-5)
        for block in encoder.blocks:
            for gamma in encoder.family.layer_scales(block):
                gamma.fill_(1.0)
    encoder.save_pretrained(folder, preprocess=PreprocessConfig(shortest_edge=SIDE, crop_size=(SIDE, SIDE)))
    return folder


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dinov3-phantoms")
    return generate_phantoms(folder, n=48, size=SIDE, seed=0, workers=1, progress=False)


def test_the_folder_is_a_dinov3_model(dinov3_dir: Path) -> None:
    config = json.loads((dinov3_dir / "config.json").read_text())
    assert config["model_type"] == "dinov3_vit"
    encoder = load_encoder(dinov3_dir)
    assert (encoder.family.name, encoder.patch_size, encoder.num_register_tokens) == ("dinov3", 16, 4)


def test_embed_stores_patch_tokens_without_registers(
    dinov3_dir: Path, phantoms: Path, tmp_path: Path
) -> None:
    out = tmp_path / "emb.parquet"
    _invoke(
        [
            "embed", str(phantoms), "--model", str(dinov3_dir), "--out", str(out), "--workers", "0",
            "--device", "cpu", "--set", "patch_tokens=true", "--set", "layers=[0]",
        ]
    )  # fmt: skip
    ids, cls = read_embeddings(out)
    assert len(ids) == 48
    assert cls.shape == (48, 32)
    first = sorted(ids)[0]
    tokens = read_tokens(out, first).float()
    assert tokens.shape == (16, 32)  # 4×4 patches from patch size 16; no register tokens among them
    rows = _rows(phantoms)
    path = phantoms.parent / next(row["path"] for row in rows if row["id"] == first)
    pixels = InferencePreprocessor(PreprocessConfig.from_model_folder(dinov3_dir))(read_image(path))[None]
    encoder = load_encoder(dinov3_dir)
    with torch.no_grad():
        expected = encoder.forward_features(pixels)
    np.testing.assert_allclose(cls[sorted(range(48), key=lambda i: ids[i])[0]], expected.cls[0], atol=1e-5)
    torch.testing.assert_close(tokens, expected.patch_sequence[0], atol=2e-2, rtol=0)  # float16 storage
    assert read_tokens(out, first, "layer0_patch_tokens").shape == (16, 32)


def test_probe_knn_search_metadata_and_segment(dinov3_dir: Path, phantoms: Path, tmp_path: Path) -> None:
    common = ["--model", str(dinov3_dir), "--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]
    quiet = ["--set", "features.num_workers=0", "--set", "progress=false"]
    _invoke(["probe", str(phantoms), *common, "--out", str(tmp_path / "probe"), "--epochs", "2", *quiet])
    probe = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert 0.0 <= probe["summary"]["macro_auprc"]["mean"] <= 1.0
    _invoke(["knn", str(phantoms), *common, "--out", str(tmp_path / "knn"), "--k", "3"])
    assert json.loads((tmp_path / "knn" / "knn.json").read_text())["k"] == 3
    _invoke(["metadata", str(phantoms), *common, "--out", str(tmp_path / "metadata"), "--folds", "2"])
    assert "sex" in json.loads((tmp_path / "metadata" / "metadata.json").read_text())["targets"]
    cached = list((tmp_path / "cache").glob("*.parquet"))
    assert len(cached) == 1  # one extraction served the three commands
    ids, _ = read_embeddings(cached[0])
    found = _invoke(["search", str(cached[0]), ids[0], "-k", "3"])
    assert len([line for line in found.splitlines() if line.endswith(".png")]) == 3

    _invoke(
        [
            "segment", str(phantoms), "--model", str(dinov3_dir), "--out", str(tmp_path / "segment"),
            "--structure", "heart", "--head", "linear", "--head", "vitdet", "--head", "upernet",
            "--epochs", "1", "--device", "cpu", "--set", f"resolution={SIDE}",
            "--set", "training.channels=8", "--set", "progress=false", "--set", "save_predictions=false",
        ]
    )  # fmt: skip
    segment = json.loads((tmp_path / "segment" / "segment.json").read_text())
    for head in ("linear", "vitdet", "upernet"):
        assert 0.0 <= segment["summary"][f"dice/{head}/heart"]["mean"] <= 1.0


def test_report_train_and_generate(dinov3_dir: Path, phantoms: Path, tmp_path: Path) -> None:
    from raddino.reportgen import build_causal_lm, train_report_tokenizer

    reports = [row["report"] for row in _rows(phantoms)]
    tokenizer = train_report_tokenizer(reports, vocab_size=300)
    lm = tmp_path / "lm"
    build_causal_lm(tokenizer, lm, hidden_size=32, num_layers=1, num_heads=2, seed=0)
    settings = ["--set", f"features.cache_dir={tmp_path / 'cache'}", "--set", "features.num_workers=0"]
    out = tmp_path / "report"
    output = _invoke(
        [
            "report", "train", str(phantoms), "--lm", str(lm), "--model", str(dinov3_dir), "--out", str(out),
            "--epochs", "1", "--batch-size", "8", "--micro-batch-size", "8", "--device", "cpu", *settings,
        ]
    )  # fmt: skip
    assert "35 studies" in output  # the phantoms' train split
    generated = tmp_path / "generated.csv"
    _invoke(
        [
            "report", "generate", str(out), str(phantoms), "--out", str(generated), "--max-new-tokens", "4",
            "--device", "cpu", *settings,
        ]
    )  # fmt: skip
    rows = _rows(generated)
    test_ids = sorted(row["id"] for row in _rows(phantoms) if row["split"] == "test")
    assert sorted(row["id"] for row in rows) == test_ids
    assert all(row["reference"].startswith("FINDINGS") for row in rows)


@pytest.fixture(scope="module")
def phantom_png(phantoms: Path) -> Path:
    return phantoms.parent / _rows(phantoms)[0]["path"]


def test_attention_correspond_and_pca(dinov3_dir: Path, phantom_png: Path, tmp_path: Path) -> None:
    model = str(dinov3_dir)
    npy = tmp_path / "maps.npy"
    output = _invoke(
        ["attention", str(phantom_png), "-m", model, "-o", str(tmp_path / "a.png"), "--npy", str(npy)]
    )
    maps = np.load(npy)
    assert maps.shape == (3, 4, 4)  # 2 heads and their mean over the 4×4 patches; registers left out
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), 1.0, atol=1e-5)
    assert "2 heads on a 4×4 grid" in output

    out = tmp_path / "c.png"
    _invoke(["correspond", str(phantom_png), str(phantom_png), "-p", "20,30", "-m", model, "-o", str(out)])
    rows = json.loads(out.with_suffix(".json").read_text())
    assert abs(rows[0]["target_x"] - 20) <= 8  # the self-match is the point's own 16 px patch
    assert abs(rows[0]["target_y"] - 30) <= 8

    pca = tmp_path / "pca.png"
    output = _invoke(["pca", str(phantom_png), str(phantom_png), "-m", model, "-o", str(pca), "--tile", "32"])
    assert "2 images" in output
    with Image.open(pca) as opened:
        assert opened.size == (2 * 32, 2 * (32 + 22))


def test_export_command_writes_the_dinov3_format_and_refuses_dinov2s(
    dinov3_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "original"
    output = _invoke(["export", str(dinov3_dir), str(out), "--format", "dinov3"])
    assert "backbone_compatible.safetensors" in output
    encoder, again = load_encoder(dinov3_dir), load_encoder(out)
    pixels = torch.randn(1, 3, SIDE, SIDE)
    with torch.no_grad():
        torch.testing.assert_close(
            again(pixels).patch_tokens, encoder(pixels).patch_tokens, atol=1e-6, rtol=0
        )
    refused = runner.invoke(app, ["export", str(dinov3_dir), str(tmp_path / "x"), "--format", "dinov2"])
    assert refused.exit_code == 2
    assert "is a dinov3 encoder: its original format is dinov3 (--format dinov3)" in refused.output
    assert "Traceback" not in refused.output
