"""``raddino stats``: writes the JSON, exits 1 when files failed, and accepts a manifest."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from raddino.cli import app


def _images(folder: Path) -> np.ndarray:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (16 + i, 20), dtype=np.uint8) for i in range(3)]
    for index, array in enumerate(arrays):
        Image.fromarray(array).save(folder / f"img{index}.png")
    return np.concatenate([array.ravel() / 255 for array in arrays])


def test_stats_of_a_folder(tmp_path: Path):
    pixels = _images(tmp_path / "images")
    out = tmp_path / "stats.json"
    result = CliRunner().invoke(app, ["stats", str(tmp_path / "images"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    written = json.loads(out.read_text())
    assert written["n_images"] == 3
    assert abs(written["mean"] - pixels.mean()) < 1e-6
    assert abs(written["std"] - pixels.std()) < 1e-6
    assert f"{pixels.mean():.4f}" in result.output


def test_stats_of_a_manifest_with_a_bad_row(tmp_path: Path):
    _images(tmp_path / "images")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path\nimages/img0.png\nimages/img1.png\nimages/missing.png\n")
    out = tmp_path / "out" / "s.json"
    result = CliRunner().invoke(app, ["stats", str(manifest), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 1
    assert json.loads(out.read_text())["n_failed"] == 1
    assert "missing.png" in (tmp_path / "out" / "s.errors.csv").read_text()


def test_bad_input_is_a_clear_error(tmp_path: Path):
    result = CliRunner().invoke(app, ["stats", str(tmp_path / "nowhere"), "--out", str(tmp_path / "s.json")])
    assert result.exit_code == 2
    assert "nowhere" in result.output


def test_an_existing_output_is_refused_without_overwrite(tmp_path: Path):
    """``raddino stats`` defaults to ./stats.json: a second run must not replace it silently."""
    _images(tmp_path / "images")
    out = tmp_path / "stats.json"
    out.write_text('{"mean": 0.5}\n')
    refused = CliRunner().invoke(app, ["stats", str(tmp_path / "images"), "--out", str(out)])
    assert refused.exit_code == 2
    message = f"error: {out} exists; pass --overwrite (overwrite=True) to replace it"
    assert refused.output.strip().splitlines() == [message]
    assert out.read_text() == '{"mean": 0.5}\n'  # untouched
    assert not (tmp_path / "stats.errors.csv").exists()  # refused before anything was read or written

    replaced = CliRunner().invoke(app, ["stats", str(tmp_path / "images"), "--out", str(out), "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert json.loads(out.read_text())["n_images"] == 3


def test_the_errors_csv_is_written_with_its_header_when_nothing_fails(tmp_path: Path):
    _images(tmp_path / "images")
    result = CliRunner().invoke(app, ["stats", str(tmp_path / "images"), "--out", str(tmp_path / "s.json")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "s.errors.csv").read_text() == "path,stage,reason\n"
    assert json.loads((tmp_path / "s.json").read_text())["errors"] is None
