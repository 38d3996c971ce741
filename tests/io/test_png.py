"""write_png: exact 8/16-bit round trips through read_image, atomic writes, refused inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raddino.io.images import read_image
from raddino.io.png import write_png


def test_8bit_round_trip_is_exact(tmp_path: Path, noise8: np.ndarray) -> None:
    path = write_png(tmp_path / "sub" / "a.png", noise8 / 255.0, bits=8)
    with Image.open(path) as image:
        assert image.mode == "L"
    np.testing.assert_array_equal(read_image(path).pixels, (noise8 / 255.0).astype(np.float32))


def test_16bit_round_trip_is_exact(tmp_path: Path, ramp16: np.ndarray) -> None:
    values = ramp16.astype(np.uint32) * 16  # up to 64000: uses the upper bits too
    path = write_png(tmp_path / "a.png", values / 65535.0, bits=16)
    with Image.open(path) as image:
        assert image.mode == "I;16"
        np.testing.assert_array_equal(np.asarray(image), values)
    assert read_image(path).record.bits == 16


def test_rounds_to_nearest_and_clips(tmp_path: Path) -> None:
    pixels = np.array([[-0.5, 0.0, 0.6 / 255, 0.4 / 255, 1.0, 1.7]] * 20, dtype=np.float32)
    with Image.open(write_png(tmp_path / "a.png", np.tile(pixels, (1, 3)))) as image:
        np.testing.assert_array_equal(np.asarray(image)[0, :6], [0, 0, 1, 0, 255, 255])


def test_write_is_atomic(tmp_path: Path, noise8: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    target = write_png(tmp_path / "a.png", noise8 / 255.0)
    before = target.read_bytes()

    def broken_save(self: Image.Image, fp: object, *args: object, **kwargs: object) -> None:
        Path(str(fp)).write_bytes(b"\x89PNG half")  # a partial write, then the failure
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        write_png(target, 1.0 - noise8 / 255.0)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]  # no temporary file left behind


@pytest.mark.parametrize(
    ("pixels", "bits", "message"),
    [
        (np.full((4, 4), np.nan), 8, "NaN"),
        (np.zeros((4, 4, 3)), 8, "2-D"),
        (np.zeros((4, 4)), 12, "bits must be 8 or 16"),
    ],
)
def test_refuses_bad_input(tmp_path: Path, pixels: np.ndarray, bits: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        write_png(tmp_path / "a.png", pixels, bits=bits)  # type: ignore[arg-type]
    assert not (tmp_path / "a.png").exists()
