"""read_image on PNG, JPEG and TIFF: exact 8/16-bit values, grey conversion, frames, and every bad input."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raddino.io import images as images_module
from raddino.io.errors import ImageReadError
from raddino.io.images import read_image, sniff_format


def _save(array: np.ndarray, path: Path, **kwargs: object) -> Path:
    Image.fromarray(array).save(path, **kwargs)
    return path


def test_8bit_png_is_recovered_exactly(tmp_path: Path, noise8: np.ndarray) -> None:
    image = read_image(_save(noise8, tmp_path / "a.png"))
    assert image.pixels.dtype == np.float32
    assert image.pixels.shape == noise8.shape
    np.testing.assert_array_equal(np.round(image.pixels * 255).astype(np.uint8), noise8)
    record = image.record
    assert (record.format, record.bits, record.scaling, record.source_mode) == ("png", 8, "dtype", "L")
    assert (record.original_min, record.original_max) == (0.0, 255.0)
    assert record.original_shape == noise8.shape


def test_16bit_png_divides_by_65535_so_a_dark_image_stays_dark(tmp_path: Path, ramp16: np.ndarray) -> None:
    image = read_image(_save(ramp16, tmp_path / "a.png"))
    assert image.record.bits == 16
    assert image.record.source_mode == "I;16"
    np.testing.assert_allclose(image.pixels, ramp16 / 65535.0, rtol=0, atol=1e-7)
    assert image.pixels.max() == pytest.approx(4000 / 65535, abs=1e-7)  # not stretched to 1


def test_16bit_tiff_and_multipage_tiff_frames(tmp_path: Path, ramp16: np.ndarray) -> None:
    single = read_image(_save(ramp16, tmp_path / "a.tif"))
    assert single.record.format == "tiff"
    assert single.record.bits == 16
    np.testing.assert_allclose(single.pixels, ramp16 / 65535.0, atol=1e-7)

    pages = [Image.fromarray((ramp16 // (i + 1) % 256).astype(np.uint8)) for i in range(3)]
    pages[0].save(tmp_path / "pages.tiff", save_all=True, append_images=pages[1:])
    third = read_image(tmp_path / "pages.tiff", frame=2)
    assert (third.record.n_frames, third.record.frame) == (3, 2)
    np.testing.assert_array_equal(np.round(third.pixels * 255), ramp16 // 3 % 256)
    with pytest.raises(ImageReadError, match="frame 3 requested but the file has 3 frame"):
        read_image(tmp_path / "pages.tiff", frame=3)


def test_float_and_32bit_tiffs_are_min_max_scaled(tmp_path: Path, ramp16: np.ndarray) -> None:
    values = ramp16.astype(np.float32) * 0.5 - 300.0
    image = read_image(_save(values, tmp_path / "f.tif"))
    assert (image.record.scaling, image.record.source_mode) == ("minmax", "F")
    np.testing.assert_allclose(image.pixels, (values - values.min()) / np.ptp(values), atol=1e-6)

    wide = ramp16.astype(np.int32) * 1000 - 5
    image = read_image(_save(wide, tmp_path / "i.tif"))
    assert (image.record.scaling, image.record.bits, image.record.original_min) == ("minmax", 32, -5.0)
    assert (image.pixels.min(), image.pixels.max()) == (0.0, 1.0)


def test_rgb_with_equal_channels_equals_the_grey_image(tmp_path: Path, noise8: np.ndarray) -> None:
    rgb = np.stack([noise8] * 3, axis=-1)
    image = read_image(_save(rgb, tmp_path / "rgb.png"))
    np.testing.assert_array_equal(np.round(image.pixels * 255).astype(np.uint8), noise8)
    assert image.record.original_shape == (*noise8.shape, 3)
    assert "grey:luma from RGB" in image.record.steps


def test_colour_uses_itu_601_luma_and_alpha_is_ignored(tmp_path: Path, noise8: np.ndarray) -> None:
    red, green, blue = noise8, noise8[::-1], 255 - noise8
    expected = 0.299 * red + 0.587 * green + 0.114 * blue
    rgba = np.stack([red, green, blue, np.full_like(red, 7)], axis=-1)
    image = read_image(_save(rgba, tmp_path / "rgba.png"))
    assert np.abs(image.pixels * 255 - expected).max() <= 1.0  # Pillow rounds luma to 8 bits

    grey_alpha = Image.fromarray(noise8).convert("LA")
    grey_alpha.putalpha(Image.fromarray(np.zeros_like(noise8)))  # fully transparent: still the picture
    grey_alpha.save(tmp_path / "la.png")
    np.testing.assert_array_equal(np.round(read_image(tmp_path / "la.png").pixels * 255), noise8)


def test_palette_png_reads_its_grey_values(tmp_path: Path, noise8: np.ndarray) -> None:
    palette = Image.fromarray(noise8 // 16 * 16).convert("P")
    palette.save(tmp_path / "p.png")
    image = read_image(tmp_path / "p.png")
    assert image.record.source_mode == "P"
    np.testing.assert_array_equal(np.round(image.pixels * 255), noise8 // 16 * 16)


def test_jpeg_reads_close_to_its_source(tmp_path: Path) -> None:
    smooth = np.round(np.linspace(10, 240, 64)[None, :] * np.ones((48, 1))).astype(np.uint8)
    image = read_image(_save(smooth, tmp_path / "a.jpg", quality=95))
    assert image.record.format == "jpeg"
    assert image.record.bits == 8
    assert np.abs(image.pixels * 255 - smooth).mean() < 2.0  # lossy codec


def test_content_decides_the_format_not_the_extension(tmp_path: Path, noise8: np.ndarray) -> None:
    png_named_dcm = _save(noise8, tmp_path / "really_png.dcm", format="PNG")
    image = read_image(png_named_dcm)
    assert image.record.format == "png"
    assert image.record.steps[0] == "content:png (extension .dcm)"
    np.testing.assert_array_equal(np.round(image.pixels * 255), noise8)
    no_extension = _save(noise8, tmp_path / "noextension", format="TIFF")
    assert read_image(no_extension).record.format == "tiff"


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(124), "png"),
        (b"\xff\xd8\xff\xe0" + bytes(128), "jpeg"),
        (b"II*\x00" + bytes(128), "tiff"),
        (b"MM\x00*" + bytes(128), "tiff"),
        (bytes(128) + b"DICM", "dicom"),
        (b"\x08\x00\x16\x00UI" + bytes(126), "dicom"),  # DICOM without preamble
        (b"hello world, not an image" + bytes(107), None),
    ],
)
def test_sniff_format(head: bytes, expected: str | None) -> None:
    assert sniff_format(head) == expected


def _write(path: Path, payload: bytes) -> Path:
    path.write_bytes(payload)
    return path


def _truncated(tmp_path: Path, noise8: np.ndarray, suffix: str) -> Path:
    full = _save(np.kron(noise8, np.ones((4, 4), np.uint8)), tmp_path / f"full{suffix}")
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    return cut


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda tmp, img: tmp / "missing.png", "no such file"),
        (lambda tmp, img: tmp, "is a folder"),
        (lambda tmp, img: _write(tmp / "empty.png", b""), "empty file"),
        (
            lambda tmp, img: _write(tmp / "text.png", b"patient list\n"),
            "not an image: content is not PNG, JPEG, TIFF or DICOM although its extension says PNG",
        ),
        (lambda tmp, img: _truncated(tmp, img, ".png"), "truncated or corrupt PNG"),
        (lambda tmp, img: _truncated(tmp, img, ".jpg"), "truncated or corrupt JPEG"),
        (lambda tmp, img: _save(img[:3, :3], tmp / "tiny.png"), "3×3 px; each side must be at least 16 px"),
        (lambda tmp, img: _save(np.full((32, 32), 9, np.uint8), tmp / "flat.png"), r"uniform image"),
        (
            lambda tmp, img: _write(tmp / "bad.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 20),
            "corrupt PNG header",
        ),
    ],
    ids=[
        "missing",
        "folder",
        "empty",
        "text",
        "truncated-png",
        "truncated-jpeg",
        "tiny",
        "uniform",
        "bad-png",
    ],
)
def test_bad_inputs_raise_image_read_error_naming_file_and_reason(
    tmp_path: Path, noise8: np.ndarray, make, reason: str
) -> None:
    path = make(tmp_path, noise8)
    with pytest.raises(ImageReadError, match=reason) as caught:
        read_image(path)
    assert caught.value.path == str(path)
    assert str(caught.value).startswith(f"{path}: ")


def test_permission_denied(tmp_path: Path, noise8: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(noise8, tmp_path / "locked.png")
    path.chmod(0)
    if os.geteuid() == 0:  # root reads any file, so make open() behave as it does for a normal user

        def refuse(*args: object, **kwargs: object) -> None:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(images_module, "open", refuse, raising=False)
    with pytest.raises(ImageReadError, match="permission denied"):
        read_image(path)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width × height (no real pixel data): a decompression bomb's signature."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + body)
    return path


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path) -> None:
    bomb = _png_header_only(tmp_path / "bomb.png", 40_000, 40_000)  # 1.6 G pixels: far past Pillow's limit
    with pytest.raises(ImageReadError, match="1,600,000,000 pixels, over the decompression-bomb limit"):
        read_image(bomb)


def test_the_pixel_limit_can_be_lowered_and_raised(
    tmp_path: Path, noise8: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _save(noise8, tmp_path / "a.png")  # 36 × 52 = 1,872 pixels
    with pytest.raises(ImageReadError, match="RADDINO_MAX_IMAGE_PIXELS"):
        read_image(path, max_pixels=1000)
    assert read_image(path, max_pixels=2000).pixels.shape == noise8.shape
    monkeypatch.setenv("RADDINO_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ImageReadError, match="limit of 1,000"):
        read_image(path)
    assert read_image(path, max_pixels=0).pixels.shape == noise8.shape  # 0: no limit


def test_pillow_limit_is_left_as_it_was(tmp_path: Path) -> None:
    before = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageReadError):
        read_image(_png_header_only(tmp_path / "bomb.png", 40_000, 40_000))
    assert before == Image.MAX_IMAGE_PIXELS
