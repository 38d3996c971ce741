"""``raddino phantoms`` on the command line, and the contact sheet."""

from __future__ import annotations

from pathlib import Path

import yaml
from PIL import Image
from typer.testing import CliRunner

from raddino.cli import app
from raddino.data.phantoms import make_phantom, write_contact_sheet
from raddino.io.manifest import read_manifest


def test_command_writes_images_copies_masks_and_a_contact_sheet(tmp_path: Path) -> None:
    out, sheet = tmp_path / "out", tmp_path / "sheet.png"
    result = CliRunner().invoke(
        app,
        [
            *("phantoms", "--n", "5", "--size", "64", "--out", str(out), "--seed", "3", "--workers", "1"),
            *("--format", "png8", "--format", "png16", "--format", "dicom", "--contact-sheet", str(sheet)),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "5 phantoms at 64 px" in result.output
    manifest = read_manifest(out / "manifest.csv")
    assert len(manifest) == 5
    assert {"path_dicom", "path_png16", "mask_heart"} <= set(manifest.columns)
    assert all(manifest.resolve(row, "path_dicom").suffix == ".dcm" for row in manifest.rows)
    saved = yaml.safe_load((out / "phantoms.yaml").read_text())
    assert saved["formats"] == ["png8", "png16", "dicom"]
    assert saved["seed"] == 3
    with Image.open(sheet) as picture:
        assert picture.size == (4 * 256, 2 * (256 + 18))  # 5 phantoms: two rows of four


def test_settings_come_from_a_yaml_file_and_overrides(tmp_path: Path) -> None:
    config = tmp_path / "phantoms.yaml"
    config.write_text("n: 4\nsize: 64\nmasks: false\nsettings:\n  prevalence:\n    nodule: 1.0\n")
    result = CliRunner().invoke(
        app,
        [
            *("phantoms", "--out", str(tmp_path / "out"), "--config", str(config), "--workers", "1"),
            *("--set", "settings.prevalence.fibrosis=0.0"),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = read_manifest(tmp_path / "out" / "manifest.csv").rows
    assert len(rows) == 4
    assert all(row["nodule"] == "1" and row["fibrosis"] == "0" for row in rows)
    assert "mask_heart" not in rows[0]


def test_a_misspelt_key_or_a_changed_setting_fails_with_a_clear_message(tmp_path: Path) -> None:
    runner = CliRunner()
    out = str(tmp_path / "out")
    result = runner.invoke(app, ["phantoms", "--out", out, "--set", "settings.prevalence.nodle=0.3"])
    assert result.exit_code == 2
    assert "nodle" in result.output
    assert "nodule" in result.output
    assert (
        runner.invoke(app, ["phantoms", "--out", out, "--n", "2", "--size", "64", "--workers", "1"]).exit_code
        == 0
    )
    result = runner.invoke(app, ["phantoms", "--out", out, "--n", "2", "--size", "96", "--workers", "1"])
    assert result.exit_code == 2
    assert "size: 64 there, 96 now" in result.output


def test_contact_sheet_outlines_masks_in_colour(tmp_path: Path) -> None:
    phantoms = [make_phantom(seed=seed, size=96) for seed in range(3)]
    path = write_contact_sheet(phantoms, tmp_path / "sheet.png", columns=2, tile=96)
    with Image.open(path) as picture:
        assert picture.size == (2 * 96, 2 * (96 + 18))
        pixels = picture.convert("RGB").load()
        colours = {pixels[x, y] for x in range(96) for y in range(96)}
    assert any(r != g or g != b for r, g, b in colours)  # the outlines are coloured, the X-ray is grey
