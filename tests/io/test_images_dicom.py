"""read_image on DICOM: the grayscale pipeline (modality LUT, VOI, MONOCHROME1), frames, codecs, failures.

Files are the ones shipped inside pydicom plus DICOMs written here with exactly the property under test.
"""

from __future__ import annotations

import logging
import pickle
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.pixels import get_decoder
from pydicom.uid import JPEG2000, JPEGBaseline8Bit, RLELossless

from raddino.io.dicom_write import write_dicom
from raddino.io.errors import ImageReadError
from raddino.io.images import read_image

FileFinder = Callable[[str], Path]


def minmax(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    return (values - values.min()) / (values.max() - values.min())


# --- files shipped with pydicom -------------------------------------------------------------------------


def test_ct_rescale_slope_intercept_is_applied(pydicom_file: FileFinder) -> None:
    path = pydicom_file("CT_small.dcm")
    stored = pydicom.dcmread(path).pixel_array
    image = read_image(path)
    hounsfield = stored.astype(np.float64) * 1.0 - 1024.0  # RescaleSlope 1, RescaleIntercept -1024
    assert image.record.original_min == hounsfield.min() == -896.0
    assert image.record.original_max == hounsfield.max()
    assert image.record.steps == ("decode:Explicit VR Little Endian", "modality_lut", "scale:minmax")
    np.testing.assert_allclose(image.pixels, minmax(hounsfield), atol=1e-6)
    assert (image.record.format, image.record.bits, image.record.scaling) == ("dicom", 16, "minmax")


def test_voi_auto_applies_the_window_and_false_skips_it(pydicom_file: FileFinder) -> None:
    path = pydicom_file("MR_small.dcm")  # WindowCenter 600, WindowWidth 1600
    windowed, raw = read_image(path), read_image(path, voi=False)
    assert windowed.record.voi_applied
    assert "voi:window" in windowed.record.steps
    assert not raw.record.voi_applied
    np.testing.assert_allclose(raw.pixels, minmax(pydicom.dcmread(path).pixel_array), atol=1e-6)
    assert not np.allclose(windowed.pixels, raw.pixels, atol=1e-3)
    assert read_image(path, voi=True).record.voi_applied


def test_voi_true_requires_a_window(pydicom_file: FileFinder) -> None:
    with pytest.raises(ImageReadError, match="voi=True but the file has no VOI LUT"):
        read_image(pydicom_file("CT_small.dcm"), voi=True)


@pytest.mark.parametrize(
    "name",
    ["MR_small_bigendian.dcm", "MR_small_implicit.dcm", "MR_small_RLE.dcm", "MR_small_jp2klossless.dcm"],
)
def test_same_pixels_in_every_transfer_syntax(pydicom_file: FileFinder, name: str) -> None:
    reference = read_image(pydicom_file("MR_small.dcm"))
    np.testing.assert_allclose(read_image(pydicom_file(name)).pixels, reference.pixels, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "bits", "shape"),
    [
        ("JPEG2000.dcm", 16, (1024, 256)),
        ("JPGExtended.dcm", 12, (1024, 256)),
        ("image_dfl.dcm", 8, (512, 512)),
    ],
)
def test_compressed_syntaxes_decode(pydicom_file: FileFinder, name: str, bits: int, shape: tuple) -> None:
    image = read_image(pydicom_file(name))
    assert image.record.bits == bits
    assert image.pixels.shape == shape
    assert image.pixels.min() == 0.0
    assert image.pixels.max() == 1.0


def test_multiframe_ybr_jpeg_reads_the_chosen_frame_as_grey(pydicom_file: FileFinder) -> None:
    path = pydicom_file("examples_ybr_color.dcm")  # 30 frames, YBR_FULL_422, JPEG baseline
    first, last = read_image(path), read_image(path, frame=29)
    assert (first.record.n_frames, first.record.frame, last.record.frame) == (30, 0, 29)
    assert first.pixels.shape == (240, 320)
    assert "grey:luma from YBR_FULL_422" in first.record.steps
    assert np.abs(first.pixels - last.pixels).mean() > 0.01
    with pytest.raises(ImageReadError, match="frame 30 requested but the file has 30 frame"):
        read_image(path, frame=30)


def test_rgb_and_palette_dicoms_become_grey(pydicom_file: FileFinder) -> None:
    rgb_path = pydicom_file("SC_rgb_rle_2frame.dcm")
    rgb = pydicom.pixels.pixel_array(pydicom.dcmread(rgb_path), index=1).astype(np.float64)
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    np.testing.assert_allclose(read_image(rgb_path, frame=1).pixels, minmax(luma), atol=1e-6)
    palette = read_image(pydicom_file("examples_palette.dcm"))
    assert palette.record.source_mode == "PALETTE COLOR"
    assert palette.pixels.shape == (350, 800)


def test_one_bit_dicom(pydicom_file: FileFinder) -> None:
    image = read_image(pydicom_file("liver_1frame.dcm"))
    assert image.record.bits == 1
    assert set(np.unique(image.pixels)) == {0.0, 1.0}


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("MR_truncated.dcm", "truncated or corrupt pixel data"),
        ("rtplan.dcm", r"DICOM file has no pixel data \(RT Plan Storage\)"),
        ("SC_rgb_small_odd.dcm", "3×3 px; each side must be at least 16 px"),
    ],
)
def test_bad_shipped_files(pydicom_file: FileFinder, name: str, reason: str) -> None:
    with pytest.raises(ImageReadError, match=reason):
        read_image(pydicom_file(name))


def test_a_corrupt_jpeg2000_frame_fails_once_without_tracebacks_on_stderr(
    pydicom_file: FileFinder, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # pydicom logs a traceback for every decoder plugin it tried; the command already reports the file.
    dataset = pydicom.dcmread(pydicom_file("JPEG2000.dcm"))
    stream = bytearray(dataset.PixelData)
    for position in range(len(stream) // 3, len(stream) - 100):
        stream[position] = (stream[position] * 7 + 13) % 256
    dataset.PixelData = bytes(stream)
    dataset.save_as(tmp_path / "corrupt_j2k.dcm")
    pydicom_logger = logging.getLogger("pydicom")
    level = pydicom_logger.level
    console = logging.StreamHandler(sys.stderr)  # what the command line's logging set-up does
    logging.getLogger().addHandler(console)
    try:
        with pytest.raises(ImageReadError, match=r"truncated or corrupt pixel data \(JPEG 2000"):
            read_image(tmp_path / "corrupt_j2k.dcm")
        pydicom_logger.error("after the read")  # pydicom's own logging is back as it was
    finally:
        logging.getLogger().removeHandler(console)
    assert capsys.readouterr().err == "after the read\n"
    assert pydicom_logger.level == level


def test_missing_decoder_names_the_package(pydicom_file: FileFinder, monkeypatch: pytest.MonkeyPatch) -> None:
    # Simulate an install without the dicom-codecs extra: pydicom finds no plugin for the syntax.
    monkeypatch.setattr(get_decoder(JPEG2000), "_available", {})
    path = pydicom_file("JPEG2000.dcm")
    with pytest.raises(ImageReadError, match="no decoder for it is installed") as caught:
        read_image(path)
    assert "pylibjpeg-openjpeg" in caught.value.reason
    assert "raddino[dicom-codecs]" in caught.value.reason
    assert caught.value.path == str(path)

    monkeypatch.setattr(get_decoder(JPEGBaseline8Bit), "_available", {})
    with pytest.raises(ImageReadError, match="pylibjpeg-libjpeg"):
        read_image(pydicom_file("examples_ybr_color.dcm"))


# --- DICOMs written here --------------------------------------------------------------------------------


def test_monochrome1_is_inverted(tmp_path: Path, ramp16: np.ndarray) -> None:
    image = read_image(write_dicom(tmp_path / "m1.dcm", ramp16, photometric="MONOCHROME1"))
    assert image.record.inverted
    assert image.record.steps[-1] == "invert:MONOCHROME1"
    np.testing.assert_allclose(image.pixels, 1.0 - minmax(ramp16), atol=1e-6)
    flipped = read_image(write_dicom(tmp_path / "m2.dcm", ramp16.max() - ramp16))
    np.testing.assert_allclose(image.pixels, flipped.pixels, atol=1e-6)


def test_bits_stored_masks_unused_high_bits(tmp_path: Path, ramp16: np.ndarray) -> None:
    dirty = ramp16.copy()
    dirty[::3] |= 0xF000  # overlay bits or garbage above bit 11, as some old modalities write
    image = read_image(write_dicom(tmp_path / "12bit.dcm", dirty, bits_stored=12))
    assert image.record.bits == 12
    assert image.record.original_max == ramp16.max()
    np.testing.assert_allclose(image.pixels, minmax(ramp16), atol=1e-6)


def test_signed_values_and_rescale(tmp_path: Path, ramp16: np.ndarray) -> None:
    signed = (ramp16.astype(np.int32) - 2000).astype(np.int16)
    attributes = {"RescaleSlope": "0.5", "RescaleIntercept": "-100"}
    image = read_image(write_dicom(tmp_path / "s.dcm", signed, bits_stored=13, attributes=attributes))
    assert image.record.original_min == pytest.approx(0.5 * signed.min() - 100)
    assert image.record.original_max == pytest.approx(0.5 * signed.max() - 100)
    np.testing.assert_allclose(image.pixels, minmax(signed), atol=1e-6)


def test_window_centre_width_follows_the_dicom_linear_formula(tmp_path: Path, ramp16: np.ndarray) -> None:
    centre, width = 2000.0, 1001.0
    attributes = {"WindowCenter": f"{centre:g}", "WindowWidth": f"{width:g}"}
    image = read_image(write_dicom(tmp_path / "w.dcm", ramp16, attributes=attributes))
    # DICOM PS3.3 C.11.2.1.2.1, then min-max (the data reach past both ends of the window).
    expected = np.clip((ramp16 - (centre - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    np.testing.assert_allclose(image.pixels, expected, atol=1e-5)
    assert image.record.voi_applied


def test_voi_lut_sequence_wins_over_the_window(tmp_path: Path, ramp16: np.ndarray) -> None:
    first, entries = 1000, 2001
    table = np.round(65535 * np.sqrt(np.linspace(0, 1, entries))).astype(np.uint16)
    lut = Dataset()
    lut.LUTDescriptor = [entries, first, 16]
    lut.add_new(0x00283006, "US", table.tolist())  # LUT Data
    attributes = {"VOILUTSequence": [lut], "WindowCenter": "3000", "WindowWidth": "10"}
    image = read_image(write_dicom(tmp_path / "lut.dcm", ramp16, attributes=attributes))
    expected = table[np.clip(ramp16.astype(np.int64) - first, 0, entries - 1)] / 65535.0
    np.testing.assert_allclose(image.pixels, expected, atol=1e-6)
    assert "voi:lut" in image.record.steps


def test_frames_of_a_written_multiframe_file(tmp_path: Path, ramp16: np.ndarray) -> None:
    frames = np.stack([ramp16, ramp16[::-1], ramp16[:, ::-1]])
    path = write_dicom(tmp_path / "multi.dcm", frames)
    for index in range(3):
        image = read_image(path, frame=index)
        assert (image.record.n_frames, image.record.frame) == (3, index)
        np.testing.assert_allclose(image.pixels, minmax(frames[index]), atol=1e-6)
    assert np.array_equal(read_image(path).pixels, read_image(path, frame=0).pixels)  # frame 0 by default


def test_rle_and_preambleless_files_read_like_plain_ones(tmp_path: Path, ramp16: np.ndarray) -> None:
    plain = read_image(write_dicom(tmp_path / "plain.dcm", ramp16)).pixels
    rle = read_image(write_dicom(tmp_path / "rle.dcm", ramp16, transfer_syntax=RLELossless))
    bare = write_dicom(tmp_path / "bare.dcm", ramp16, preamble=False)
    assert bare.read_bytes()[128:132] != b"DICM"
    np.testing.assert_array_equal(rle.pixels, plain)
    np.testing.assert_array_equal(read_image(bare).pixels, plain)


def test_dicom_named_png_still_reads(tmp_path: Path, ramp16: np.ndarray) -> None:
    image = read_image(write_dicom(tmp_path / "exported.png", ramp16))
    assert image.record.format == "dicom"
    assert image.record.steps[0] == "content:dicom (extension .png)"


def test_missing_pixel_data_and_truncated_file(tmp_path: Path, ramp16: np.ndarray) -> None:
    dataset = pydicom.dcmread(write_dicom(tmp_path / "full.dcm", ramp16))
    del dataset.PixelData
    dataset.save_as(tmp_path / "nopixels.dcm")
    with pytest.raises(ImageReadError, match="no pixel data"):
        read_image(tmp_path / "nopixels.dcm")
    payload = (tmp_path / "full.dcm").read_bytes()
    (tmp_path / "cut.dcm").write_bytes(payload[: len(payload) - 1000])
    with pytest.raises(ImageReadError, match="truncated or corrupt pixel data"):
        read_image(tmp_path / "cut.dcm")
    (tmp_path / "header_only.dcm").write_bytes(payload[:200])
    with pytest.raises(ImageReadError):
        read_image(tmp_path / "header_only.dcm")


def test_uniform_dicom_is_an_error_not_a_black_image(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match=r"uniform image \(every pixel is 700\)"):
        read_image(write_dicom(tmp_path / "flat.dcm", np.full((32, 32), 700, np.uint16)))


def test_record_carries_no_patient_data(tmp_path: Path, ramp16: np.ndarray) -> None:
    attributes = {"PatientName": "DOE^JANE", "PatientID": "MRN-99812", "PatientBirthDate": "19600101"}
    image = read_image(write_dicom(tmp_path / "p.dcm", ramp16, attributes=attributes))
    text = repr(image.record)
    assert "DOE" not in text
    assert "MRN-99812" not in text
    assert "19600101" not in text


def test_error_pickles_with_path_and_reason() -> None:
    error = pickle.loads(pickle.dumps(ImageReadError("/data/a.dcm", "uniform image")))
    assert isinstance(error, ValueError)
    assert (error.path, error.reason, str(error)) == (
        "/data/a.dcm",
        "uniform image",
        "/data/a.dcm: uniform image",
    )
