"""``raddino prepare``: options, config file and overrides, exit status, summary line."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from raddino.cli import app
from raddino.io.dicom_write import write_dicom

runner = CliRunner()


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """Two good DICOMs with a window, and one text file pretending to be a PNG."""
    root = tmp_path / "in"
    y, x = np.mgrid[0:48, 0:40]
    for index in range(2):
        stored = ((x * 37 + y * 53 + index * 500) % 4096).astype(np.uint16)
        write_dicom(
            root / f"img{index}.dcm",
            stored,
            bits_stored=12,
            attributes={"WindowCenter": "1500", "WindowWidth": "2000"},
        )
    (root / "bad.png").write_text("hello")
    return root


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["prepare", *args, "--quiet"])
    return result.exit_code, result.output


def test_prepares_and_prints_a_summary(inputs: Path, tmp_path: Path) -> None:
    code, output = _invoke(str(inputs), str(tmp_path / "out"), "--size", "24", "--workers", "1")
    assert code == 0, output
    assert "prepared 2 image(s), 0 already done, 1 failed, of 3" in output
    assert "errors.csv" in output
    with Image.open(tmp_path / "out" / "img0.png") as image:
        assert (image.mode, image.size) == ("L", (24, 29))  # 40×48 → 24×28.8, rounded


def test_strict_fails_when_anything_failed(inputs: Path, tmp_path: Path) -> None:
    code, _ = _invoke(str(inputs), str(tmp_path / "out"), "--size", "24", "--workers", "1", "--strict")
    assert code == 1


def test_fails_when_nothing_succeeded_or_nothing_was_found(tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_text("hello")
    assert _invoke(str(tmp_path / "bad"), str(tmp_path / "out"), "--workers", "1")[0] == 1
    (tmp_path / "none").mkdir()
    code, output = _invoke(str(tmp_path / "none"), str(tmp_path / "out2"))
    assert code == 1
    assert "no images found" in output


def test_16_bits_voi_off_and_overrides(inputs: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = _invoke(
        str(inputs), str(out), "--bits", "16", "--voi", "off", "--set", "size=20", "--workers", "1"
    )
    assert code == 0, output
    with Image.open(out / "img1.png") as image:
        assert (image.mode, min(image.size)) == ("I;16", 20)
    assert "voi: false" in (out / "prepare.yaml").read_text()


def test_config_file_and_its_errors(inputs: Path, tmp_path: Path) -> None:
    good = tmp_path / "prepare.yaml"
    good.write_text("size: 16\nworkers: 1\n")
    assert _invoke(str(inputs), str(tmp_path / "out"), "--config", str(good))[0] == 0
    with Image.open(tmp_path / "out" / "img0.png") as image:
        assert min(image.size) == 16

    bad = tmp_path / "bad.yaml"
    bad.write_text("sise: 16\n")
    code, output = _invoke(str(inputs), str(tmp_path / "out"), "--config", str(bad))
    assert code == 2
    assert "unknown key 'sise' (did you mean 'size'?)" in output


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--voi", "maybe"], "'maybe' is not one of 'auto'"), (["--bits", "12"], "'bits': 12 is not one of")],
)
def test_bad_options(inputs: Path, tmp_path: Path, args: list[str], message: str) -> None:
    code, output = _invoke(str(inputs), str(tmp_path / "out"), *args)
    assert code == 2
    assert message in output


def test_missing_input(tmp_path: Path) -> None:
    code, output = _invoke(str(tmp_path / "absent"), str(tmp_path / "out"))
    assert code == 2
    assert "no such file or folder" in output


def test_a_full_disk_is_one_line_naming_the_file_and_exit_1(
    inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full_disk(image: Image.Image, target: object, *args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Image.Image, "save", full_disk)
    code, output = _invoke(str(inputs), str(tmp_path / "out"), "--size", "24", "--workers", "1")
    assert code == 1
    assert output == (
        f"error: [Errno 28] No space left on device: '{tmp_path / 'out' / 'img0.png'}'; "
        "outputs so far are complete: free space and rerun\n"
    )


def test_a_misspelt_split_in_the_manifest_is_refused_before_any_output(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("path,split\na.dcm,train\nb.dcm,tset\n", encoding="utf-8")
    code, output = _invoke(str(tmp_path / "m.csv"), str(tmp_path / "out"))
    assert code == 2
    assert (
        "column 'split' has 1 row(s) with an unknown value: line 3 'tset'; allowed: train, val, test"
        in output
    )
    assert not (tmp_path / "out").exists()
