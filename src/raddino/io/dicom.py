"""DICOM through pydicom, into one grey float image, the way the release prepared its training data.

Order (DICOM PS3.4 grayscale pipeline): decode the stored values of one frame (pydicom masks them to
BitsStored and sign-extends signed data) → modality LUT (rescale slope/intercept or a Modality LUT
Sequence) → VOI LUT or window centre/width → min-max to [0, 1] → MONOCHROME1 inverted so that bone is
bright, as in MONOCHROME2. RGB, YBR and palette-colour files become grey with ITU-R 601 luma.

Multi-frame rule: ``frame`` picks one frame (0, the first, by default) and only that frame is decoded;
``record.n_frames`` says how many there were. Per-frame windows of enhanced multi-frame objects are not
read; the first window of the top-level VOI module is used.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, get_decoder
from pydicom.uid import UID, ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from raddino.io.errors import ImageReadError
from raddino.io.record import ReadRecord, XrayImage, check_dimensions, scale_to_unit

VoiMode = bool | Literal["auto"]

_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
# Which packages of the `dicom-codecs` extra decode each family of compressed transfer syntaxes.
_LIBJPEG = "pylibjpeg + pylibjpeg-libjpeg"
_OPENJPEG = "pylibjpeg + pylibjpeg-openjpeg"
_CODEC_PACKAGES = {
    "1.2.840.10008.1.2.4.50": _LIBJPEG,  # JPEG baseline
    "1.2.840.10008.1.2.4.51": _LIBJPEG,  # JPEG extended (12-bit)
    "1.2.840.10008.1.2.4.57": _LIBJPEG,  # JPEG lossless
    "1.2.840.10008.1.2.4.70": _LIBJPEG,  # JPEG lossless SV1, the usual one for radiographs
    "1.2.840.10008.1.2.4.80": _LIBJPEG,  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.81": _LIBJPEG,  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.90": _OPENJPEG,  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91": _OPENJPEG,  # JPEG 2000
    "1.2.840.10008.1.2.4.201": _OPENJPEG,  # HTJ2K lossless
    "1.2.840.10008.1.2.4.202": _OPENJPEG,  # HTJ2K lossless RPCL
    "1.2.840.10008.1.2.4.203": _OPENJPEG,  # HTJ2K
    "1.2.840.10008.1.2.5": "pylibjpeg + pylibjpeg-rle",  # RLE (pydicom also decodes it natively)
}
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R 601, the weights Pillow's convert("L") uses
# Loggers of pydicom and its decoder plugins. A corrupt frame makes pydicom log a traceback per plugin it
# tried; the failure is already reported once (an ImageReadError, a row of errors.csv), so while a file is
# read these loggers are raised to CRITICAL.
_DECODER_LOGGERS = ("pydicom", "pylibjpeg", "openjpeg", "libjpeg", "rle")
_quiet_lock = threading.Lock()
_quiet_readers = 0
_saved_levels: dict[str, int] = {}


@contextlib.contextmanager
def _quiet_decoder_logs() -> Iterator[None]:
    """Silence ``_DECODER_LOGGERS`` below CRITICAL while at least one thread is reading a DICOM."""
    global _quiet_readers
    with _quiet_lock:
        if _quiet_readers == 0:
            for name in _DECODER_LOGGERS:
                logger = logging.getLogger(name)
                _saved_levels[name] = logger.level
                logger.setLevel(logging.CRITICAL)
        _quiet_readers += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_readers -= 1
            if _quiet_readers == 0:
                for name, level in _saved_levels.items():
                    logging.getLogger(name).setLevel(level)
                _saved_levels.clear()


def _load(path: str | Path) -> Dataset:
    try:
        # force=True: some archives write DICOM without the 128-byte preamble and "DICM" marker.
        dataset = pydicom.dcmread(path, force=True)
    except Exception as error:  # a damaged header can raise InvalidDicomError, EOFError, struct.error...
        raise ImageReadError(path, f"not a readable DICOM file: {type(error).__name__}: {error}") from error
    if not any(keyword in dataset for keyword in _PIXEL_KEYWORDS):
        kind = dataset.get("SOPClassUID")
        described = f" ({UID(str(kind)).name})" if kind else ""
        raise ImageReadError(path, f"DICOM file has no pixel data{described}")
    meta = dataset.get("file_meta") or FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        # A file without meta information: take the encoding pydicom found while parsing it.
        implicit, little = dataset.original_encoding
        meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if implicit else ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        )
        dataset.file_meta = meta
    return dataset


def _require_decoder(path: str | Path, syntax: UID) -> None:
    """Fail with the name of the package to install when a compressed syntax has no decoder."""
    if not syntax.is_compressed:
        return
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError as error:
        raise ImageReadError(
            path, f"transfer syntax {syntax.name} ({syntax}) has no pixel decoder"
        ) from error
    if not decoder.is_available:
        packages = _CODEC_PACKAGES.get(str(syntax), "pylibjpeg and its plugins")
        raise ImageReadError(
            path,
            f"pixel data is compressed as {syntax.name} ({syntax}) and no decoder for it is installed: "
            f"install {packages} (pip install 'raddino[dicom-codecs]'); "
            f"pydicom reports missing: {'; '.join(decoder.missing_dependencies) or 'none listed'}",
        )


def _apply_voi(
    path: str | Path, values: np.ndarray, dataset: Dataset, voi: VoiMode
) -> tuple[np.ndarray, str]:
    has_lut = "VOILUTSequence" in dataset
    has_window = "WindowCenter" in dataset and "WindowWidth" in dataset
    if voi is False or (voi == "auto" and not (has_lut or has_window)):
        return values, ""
    if not (has_lut or has_window):
        raise ImageReadError(path, "voi=True but the file has no VOI LUT Sequence or window centre/width")
    # prefer_lut: a VOI LUT, when present, is what the modality's own viewer shows.
    return apply_voi_lut(values, dataset, index=0, prefer_lut=True), "voi:lut" if has_lut else "voi:window"


def read_dicom(
    path: str | Path, *, voi: VoiMode, frame: int, min_side: int, max_pixels: int | None
) -> XrayImage:
    """Read one frame of a DICOM file as a grey image in [0, 1] (see the module docstring for the rules).

    Raises:
        ImageReadError: not DICOM, no pixel data, missing decoder, truncated pixel data, too small or
            too large, uniform, ``frame`` out of range, or ``voi=True`` without a VOI in the file.
    """
    with warnings.catch_warnings(), _quiet_decoder_logs():
        # pydicom warns about every non-conformant header value; across a million files that floods the
        # terminal, and a value that matters fails below with a reason instead.
        warnings.simplefilter("ignore")
        dataset = _load(path)
        try:
            rows, columns = int(dataset.get("Rows") or 0), int(dataset.get("Columns") or 0)
            n_frames = int(dataset.get("NumberOfFrames") or 1)
        except (TypeError, ValueError) as error:
            raise ImageReadError(path, f"invalid Rows, Columns or NumberOfFrames: {error}") from error
        check_dimensions(path, rows, columns, min_side=min_side, max_pixels=max_pixels)
        if not 0 <= frame < n_frames:
            raise ImageReadError(path, f"frame {frame} requested but the file has {n_frames} frame(s)")
        syntax = UID(str(dataset.file_meta.TransferSyntaxUID))
        _require_decoder(path, syntax)
        try:
            # index=frame decodes only that frame; YBR is converted to RGB by pydicom (as_rgb default).
            stored = pydicom.pixels.pixel_array(dataset, index=frame)
        except Exception as error:  # decoders raise ValueError, RuntimeError, OSError... all per-file
            reason = str(error).split(" - ")[0]
            raise ImageReadError(
                path, f"truncated or corrupt pixel data ({syntax.name}): {type(error).__name__}: {reason}"
            ) from error
        photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
        steps = [f"decode:{syntax.name}"] + ([f"frame:{frame}"] if n_frames > 1 else [])
        values: np.ndarray
        voi_step = ""
        if photometric == "PALETTE COLOR":
            values = apply_color_lut(stored, dataset) @ _LUMA
            steps.append("grey:luma from PALETTE COLOR")
        elif stored.ndim == 3:  # RGB, or YBR already turned into RGB by pydicom
            values = stored @ _LUMA
            steps.append(f"grey:luma from {photometric}")
        else:
            values = stored
            if "RescaleSlope" in dataset or "RescaleIntercept" in dataset or "ModalityLUTSequence" in dataset:
                values = apply_modality_lut(values, dataset)
                steps.append("modality_lut")
            values, voi_step = _apply_voi(path, values, dataset, voi)
            if voi_step:
                steps.append(voi_step)
    bits = int(dataset.get("BitsStored") or dataset.get("BitsAllocated") or 0)
    pixels, low, high = scale_to_unit(values, path=path, scaling="minmax", bits=bits)
    steps.append("scale:minmax")
    inverted = photometric == "MONOCHROME1"
    if inverted:
        # MONOCHROME1 stores low values as white; after min-max, 1 - x is the exact inversion.
        pixels = np.float32(1.0) - pixels
        steps.append("invert:MONOCHROME1")
    record = ReadRecord(
        path=str(path),
        format="dicom",
        bits=bits,
        scaling="minmax",
        original_shape=tuple(int(side) for side in stored.shape),
        original_min=low,
        original_max=high,
        inverted=inverted,
        voi_applied=bool(voi_step),
        n_frames=n_frames,
        frame=frame,
        steps=tuple(steps),
        source_mode=photometric,
    )
    return XrayImage(pixels=pixels, record=record)
