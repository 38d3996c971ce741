"""``raddino export --format int8``: calibrated, gated, written without pickle, read by load_encoder."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from raddino.cli import app
from raddino.data.preprocess import InferencePreprocessor, PreprocessConfig
from raddino.evaluate import int8_gate
from raddino.evaluate.int8_export import Int8GateError, export_int8
from raddino.io.images import read_image
from raddino.models import Encoder
from raddino.models.int8 import INT8_INFO_FILE, INT8_WEIGHTS_FILE, is_int8, quantize_int8
from raddino.models.loading import ModelLoadError, load_encoder

SIZE = 56


def _write_images(root: Path, labelled: bool) -> Path:
    """48 training and 16 test PNGs; ``finding`` is 1 for the bright half, so a probe can learn it."""
    rng = np.random.default_rng(0)
    rows = []
    for index in range(64):
        brightness = rng.random()
        pixels = rng.random((SIZE // 7, SIZE // 7)) * 0.5 + brightness * 0.5
        image = np.kron(pixels, np.ones((7, 7)))
        name = f"img{index:02d}.png"
        Image.fromarray((image * 255).astype(np.uint8)).save(root / name)
        row = {"path": name, "split": "train" if index < 48 else "test"}
        if labelled:
            row["finding"] = str(int(brightness > 0.5))
        rows.append(row)
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test-sized encoder with LayerScale 1.0, so its blocks make images' CLS tokens differ."""
    folder = tmp_path_factory.mktemp("float-encoder")
    encoder = Encoder.from_preset("test", seed=0, layerscale_value=1.0)
    encoder.save_pretrained(folder, preprocess=PreprocessConfig(shortest_edge=SIZE, crop_size=(SIZE, SIZE)))
    return folder


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_images(tmp_path_factory.mktemp("phantoms"), labelled=True)


@pytest.fixture(scope="module")
def exported(model_dir: Path, manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("exports") / "int8"
    result = export_int8(model_dir, out, manifest, calibration_images=16)
    assert result.gate.passed, result.gate.describe()
    return out


def test_export_passes_and_the_loaded_encoder_equals_the_quantised_one(
    exported: Path, model_dir: Path, manifest: Path
) -> None:
    info = json.loads((exported / INT8_INFO_FILE).read_text())
    assert info["gate"]["passed"]
    assert not info["forced"]
    assert info["gate"]["overlap"] >= 0.9
    assert info["gate"]["auprc_change"] >= -0.01
    assert info["gate"]["label_columns"] == ["finding"]
    assert info["calibration"]["images"] == 16
    assert info["calibration"]["ids"][0] == "img00"
    assert info["qconfig"]["activation_bits"] == 8

    # The same calibration images, quantised here, give the very outputs of the folder's encoder.
    preprocess = InferencePreprocessor(PreprocessConfig.from_model_folder(model_dir))
    pixels = torch.stack([preprocess(read_image(manifest.parent / f"img{i:02d}.png")) for i in range(16)])
    quantised = quantize_int8(load_encoder(model_dir), [pixels])
    loaded = load_encoder(exported)
    assert is_int8(loaded)
    assert not is_int8(load_encoder(model_dir))
    with torch.inference_mode():
        expected, got = quantised(pixels), loaded(pixels)
    assert torch.equal(expected.cls, got.cls)
    assert torch.equal(expected.patch_tokens, got.patch_tokens)


def test_a_failing_gate_writes_nothing_and_says_why_in_one_line(
    model_dir: Path, manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(int8_gate, "MIN_KNN_OVERLAP", 1.01)  # no int8 model reaches it
    out = tmp_path / "int8"
    arguments = ["export", str(model_dir), str(out), "--format", "int8", "--calibration", str(manifest)]
    result = CliRunner().invoke(app, [*arguments, "--calibration-images", "8"])
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "Traceback" not in result.output
    assert "int8 gate failed: kNN top-10 overlap" in errors[0]
    assert "(≥ 1.01 needed)" in errors[0]
    assert "nothing written" in errors[0]
    assert not out.exists()
    assert not list(tmp_path.glob(".int8*"))


def test_force_writes_a_failing_model_with_the_failure_recorded(
    model_dir: Path, manifest: Path, tmp_path: Path
) -> None:
    with pytest.raises(Int8GateError):
        export_int8(model_dir, tmp_path / "refused", manifest, calibration_images=8, max_auprc_drop=-1.0)
    result = export_int8(
        model_dir, tmp_path / "int8", manifest, calibration_images=8, max_auprc_drop=-1.0, force=True
    )
    info = json.loads((tmp_path / "int8" / INT8_INFO_FILE).read_text())
    assert info["forced"]
    assert not info["gate"]["passed"]
    assert "gate failed" in result.warning
    assert is_int8(load_encoder(tmp_path / "int8"))


def test_without_label_columns_only_the_overlap_is_gated_and_the_output_says_so(
    model_dir: Path, tmp_path: Path
) -> None:
    manifest = _write_images(tmp_path, labelled=False)
    result = export_int8(model_dir, tmp_path / "int8", manifest, calibration_images=8)
    assert result.gate.passed
    assert result.gate.auprc_change is None
    assert "only the kNN overlap" in result.warning
    assert "probe not run" in str(result)


def test_bad_calibration_manifests_are_one_line_errors(model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"")
    only_train = tmp_path / "train_only.csv"
    only_train.write_text("path,split\na.png,train\n")
    with pytest.raises(ValueError, match="no 'test' or 'val' rows"):
        export_int8(model_dir, tmp_path / "int8", only_train)
    with pytest.raises(ValueError, match="needs --calibration"):
        export_int8(model_dir, tmp_path / "int8", "")
    assert not (tmp_path / "int8").exists()


def test_embed_runs_on_the_int8_folder_on_the_cpu_and_refuses_other_precisions(
    exported: Path, manifest: Path, tmp_path: Path
) -> None:
    base = ["embed", str(manifest), "--model", str(exported), "--workers", "0", "--device", "cpu"]
    result = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "e.parquet")])
    assert result.exit_code == 0, result.output
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "e.parquet")
    assert table.num_rows == 64
    refused = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "f.parquet"), "--precision", "bf16"])
    assert refused.exit_code == 2
    assert "int8 encoder: it runs with --device cpu --precision fp32" in refused.output
    with pytest.raises(ModelLoadError, match="runs on the CPU only"):
        load_encoder(exported, device="cuda")


class _Payload:
    def __reduce__(self):  # what a planted pickle would run on load
        return (os.system, ("touch planted-int8-marker",))


def test_a_planted_pickle_in_the_int8_weights_is_refused(exported: Path, tmp_path: Path) -> None:
    import shutil

    folder = tmp_path / "planted"
    shutil.copytree(exported, folder)
    torch.save({"format": "raddino-int8-static", "state": _Payload()}, folder / INT8_WEIGHTS_FILE)
    with pytest.raises(ModelLoadError) as caught:
        load_encoder(folder)
    assert str(caught.value).startswith(str(folder / INT8_WEIGHTS_FILE))
    assert "\n" not in str(caught.value)
    assert not Path("planted-int8-marker").exists()
    assert not (tmp_path / "planted-int8-marker").exists()
