"""The three figure commands on phantom files with a saved test-sized model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from raddino.cli import app

runner = CliRunner()


def test_attention_writes_grid_and_arrays(
    tmp_path: Path, tiny_encoder_dir: Path, phantom_files: list
) -> None:
    out, npy = tmp_path / "attention.png", tmp_path / "maps.npy"
    args = [
        "attention",
        str(phantom_files[0]),
        "-m",
        str(tiny_encoder_dir),
        "-o",
        str(out),
        "--npy",
        str(npy),
    ]
    result = runner.invoke(app, [*args, "--tile", "64"])
    assert result.exit_code == 0, result.output
    with Image.open(out) as opened:
        assert opened.size == (4 * 64, 64 + 22)  # image, 2 heads, mean
    maps = np.load(npy)
    # The model folder's preprocessing (56 px) gives a 4×4 grid.
    assert maps.shape == (3, 4, 4)
    np.testing.assert_allclose(maps.sum(axis=(1, 2)), 1.0, atol=1e-5)
    assert "2 heads on a 4×4 grid" in result.output


def test_correspond_prints_and_writes_matches(
    tmp_path: Path, tiny_encoder_dir: Path, phantom_files: list, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    query = str(phantom_files[0])
    args = ["correspond", query, query, "-p", "30,40 80,60", "-p", "56,90", "-m", str(tiny_encoder_dir)]
    result = runner.invoke(app, [*args, "--tile", "64"])
    assert result.exit_code == 0, result.output
    assert result.output.count("in TARGET") == 3
    with Image.open("correspond_phantom1_phantom1.png") as opened:
        assert opened.size == (2 * 64, 3 * (64 + 22))
    rows = json.loads(Path("correspond_phantom1_phantom1.json").read_text())
    # 112 px image seen at 56 px: patches are 28 original pixels; the self-match is the point's own patch.
    for row in rows:
        assert abs(row["target_x"] - row["query_x"]) <= 14
        assert abs(row["target_y"] - row["query_y"]) <= 14
    assert Path("correspond_phantom1_phantom1.csv").read_text().count("\n") == 4


@pytest.mark.parametrize(
    ("points", "message"),
    [
        ("30;40", "--points '30;40': expected x,y"),
        ("500,20", "--points: point (500, 20) is outside the 112×112"),
    ],
)
def test_correspond_bad_points_name_the_option(
    tmp_path: Path, tiny_encoder_dir: Path, phantom_files: list, points: str, message: str
) -> None:
    query = str(phantom_files[0])
    args = [
        "correspond",
        query,
        query,
        "-p",
        points,
        "-m",
        str(tiny_encoder_dir),
        "-o",
        str(tmp_path / "c.png"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert message in result.output
    assert not (tmp_path / "c.png").exists()


def test_correspond_point_cut_away_by_the_crop(
    tmp_path: Path, tiny_encoder_dir: Path, phantom_files: list
) -> None:
    # phantom2 is 128 wide, 96 high: resized to 74×56, the crop drops 9 resized columns on each side.
    query = str(phantom_files[1])
    args = [
        "correspond",
        query,
        query,
        "-p",
        "3,50",
        "-m",
        str(tiny_encoder_dir),
        "-o",
        str(tmp_path / "c.png"),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "cut away by the centre crop" in result.output


def test_missing_files_name_the_argument(tmp_path: Path, tiny_encoder_dir: Path, phantom_files: list) -> None:
    missing = str(tmp_path / "nope.png")
    model = str(tiny_encoder_dir)
    result = runner.invoke(app, ["correspond", str(phantom_files[0]), missing, "-p", "5,5", "-m", model])
    assert result.exit_code == 2
    assert f"TARGET {missing}: no such file" in result.output
    result = runner.invoke(app, ["attention", missing, "-m", model])
    assert f"IMAGE {missing}: no such file" in result.output
    result = runner.invoke(app, ["attention", str(phantom_files[0]), "-m", model, "--layer", "5"])
    assert result.exit_code == 2
    assert "--layer 5: block 5 out of range for a 2-block encoder" in result.output
    result = runner.invoke(app, ["pca", str(phantom_files[0]), "-m", str(tmp_path / "no-model")])
    assert result.exit_code == 2
    assert "--model" in result.output


def test_pca_two_images(tmp_path: Path, tiny_encoder_dir: Path, phantom_files: list) -> None:
    out = tmp_path / "pca.png"
    files = [str(path) for path in phantom_files]
    result = runner.invoke(app, ["pca", *files, "-m", str(tiny_encoder_dir), "-o", str(out), "--tile", "80"])
    assert result.exit_code == 0, result.output
    with Image.open(out) as opened:
        assert opened.size == (2 * 80, 2 * (80 + 22))
    assert "2 images" in result.output
    unmasked = runner.invoke(app, ["pca", *files, "-m", str(tiny_encoder_dir), "-o", str(out), "--no-mask"])
    assert "0.0% of patches masked" in unmasked.output
    bad = runner.invoke(app, ["pca", *files, "-m", str(tiny_encoder_dir), "--threshold", "2"])
    assert bad.exit_code == 2
    assert "--threshold 2.0: must lie in [0, 1]" in bad.output


def test_pca_settings_among_the_images(tmp_path: Path, tiny_encoder_dir: Path, phantom_files: list) -> None:
    out = tmp_path / "pca.png"
    first, second = (str(path) for path in phantom_files)
    args = ["pca", first, "tile=40", second, "mask=false", "-m", str(tiny_encoder_dir), "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 images, 0.0% of patches masked" in result.output
    with Image.open(out) as opened:
        assert opened.size == (2 * 40, 2 * (40 + 22))
