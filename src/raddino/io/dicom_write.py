"""``write_dicom``: a minimal, valid DICOM file from a pixel array (synthetic data, tests, benchmarks).

Real archives are what ``read_image`` is for; this writer exists so that tests and benchmarks can make
DICOMs with exactly the properties they need (MONOCHROME1, 12 bits stored in 16, rescale, windows, VOI
LUTs, several frames, RLE compression) without shipping or downloading any.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from raddino.io.atomic import atomic_path


def write_dicom(
    path: str | Path,
    stored: np.ndarray,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    attributes: Mapping[str, Any] | None = None,
    transfer_syntax: UID = ExplicitVRLittleEndian,
    preamble: bool = True,
) -> Path:
    """Write stored pixel values as a Secondary Capture DICOM, atomically.

    Args:
        path: Target file.
        stored: Stored values: (H, W) or (frames, H, W) for grey, (H, W, 3) for ``photometric="RGB"``;
            dtype uint8/uint16/int16 (signed dtypes set PixelRepresentation 1).
        photometric: ``MONOCHROME2``, ``MONOCHROME1`` or ``RGB``.
        bits_stored: Bits used of each sample (e.g. 12 in 16); defaults to the dtype's width.
        attributes: Extra elements by keyword, e.g. ``{"RescaleSlope": "2", "WindowCenter": "1024"}``.
        transfer_syntax: Native syntaxes are written as is; RLE Lossless is compressed with pydicom.
        preamble: ``False`` writes a bare dataset without preamble and file meta (as some archives do).

    Returns:
        ``path`` as a Path.
    """
    stored = np.ascontiguousarray(stored)
    if stored.dtype not in (np.uint8, np.uint16, np.int16):
        raise ValueError(f"stored values must be uint8, uint16 or int16, got {stored.dtype}")
    colour = photometric == "RGB"
    frames = stored.shape[0] if (stored.ndim == 3 and not colour) else 1
    rows, columns = stored.shape[1:3] if frames > 1 or (stored.ndim == 3 and not colour) else stored.shape[:2]
    allocated = stored.dtype.itemsize * 8

    dataset = Dataset()
    dataset.SOPClassUID = SecondaryCaptureImageStorage
    dataset.SOPInstanceUID = generate_uid()
    dataset.Modality = "OT"
    dataset.Rows, dataset.Columns = int(rows), int(columns)
    dataset.SamplesPerPixel = 3 if colour else 1
    if colour:
        dataset.PlanarConfiguration = 0
    dataset.PhotometricInterpretation = photometric
    dataset.BitsAllocated = allocated
    dataset.BitsStored = bits_stored or allocated
    dataset.HighBit = dataset.BitsStored - 1
    dataset.PixelRepresentation = int(stored.dtype.kind == "i")
    if frames > 1:
        dataset.NumberOfFrames = frames
    for keyword, value in (attributes or {}).items():
        setattr(dataset, keyword, value)
    dataset.PixelData = stored.tobytes()

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = dataset.SOPClassUID
    meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset.file_meta = meta
    if transfer_syntax != ExplicitVRLittleEndian:
        dataset.compress(transfer_syntax)
    with atomic_path(path) as temporary:
        if preamble:
            dataset.save_as(temporary, enforce_file_format=True)
        else:
            del dataset.file_meta
            dataset.save_as(temporary, implicit_vr=False, little_endian=True)
    return Path(path)
