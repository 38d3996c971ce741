"""DICOM copies of phantoms: Digital X-Ray (for presentation), MONOCHROME1 or MONOCHROME2, with modality
LUT (rescale slope/intercept) and VOI (window centre/width) attributes, so readers get exercised.

Round trip with ``raddino.io.images.read_image``: the reader applies the modality LUT and the window, then
scales min-max to [0, 1] and inverts MONOCHROME1. Stored values are ``round(p × 4095)`` (12 bits), inverted
for MONOCHROME1; the window covers the whole rescaled range, so the VOI step is affine with no clipping,
and since every phantom has pixels at exactly 0 and 1, the picture read back is ``round(p × 4095) / 4095``:
within 0.5 / 4095 of the rendered image, i.e. within 1/4095 of the 16-bit PNG and 1/255 of the 8-bit PNG.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

from raddino.data.phantoms.canvas import MM_PER_UNIT
from raddino.data.phantoms.spec import PhantomSpec
from raddino.io.atomic import atomic_path

DX_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
BITS_STORED = 12
# (slope, intercept) pairs cycled through by image index: identity, a CT-like offset, a coarse slope.
RESCALES = ((1.0, 0.0), (1.0, -1024.0), (0.5, 100.0))
VIEW_POSITIONS = {"PA": "PA", "AP": "AP", "LATERAL": "LL"}


def stored_values(pixels: np.ndarray, photometric: str) -> np.ndarray:
    """The 12-bit stored values of a [0, 1] image (MONOCHROME1 stores white as 0): uint16 (H, W)."""
    top = 2**BITS_STORED - 1
    values = np.rint(np.clip(pixels, 0.0, 1.0) * top).astype(np.uint16)
    return (top - values).astype(np.uint16) if photometric == "MONOCHROME1" else values


def write_dicom(path: str | Path, pixels: np.ndarray, spec: PhantomSpec) -> Path:
    """Write ``pixels`` (H, W in [0, 1]) as a DICOM file, atomically; UIDs are deterministic per image."""
    top = 2**BITS_STORED - 1
    slope, intercept = RESCALES[spec.index % len(RESCALES)]
    low, high = intercept, intercept + slope * top  # the rescaled range (modality values)
    entropy = [str(spec.seed), spec.image_id]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(DX_FOR_PRESENTATION)
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[*entropy, "instance"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = DX_FOR_PRESENTATION
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[str(spec.seed), spec.study_id])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[*entropy, "series"])
    ds.Modality = "DX"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = VIEW_POSITIONS[spec.view]
    ds.PatientID = spec.subject.subject_id
    ds.PatientName = f"Phantom^{spec.subject.subject_id}"
    ds.PatientSex = spec.subject.sex
    ds.PatientAge = f"{spec.age:03d}Y"
    ds.PatientWeight = f"{spec.subject.weight_kg:.1f}"
    ds.PatientSize = f"{spec.subject.height_cm / 100:.2f}"
    ds.StudyID = spec.study_id[-16:]
    ds.SeriesNumber = 1
    ds.InstanceNumber = 1
    rows, columns = pixels.shape
    spacing = f"{2 * MM_PER_UNIT / columns:.4f}"
    ds.ImagerPixelSpacing = [spacing, spacing]
    ds.PixelSpacing = [spacing, spacing]
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = spec.photometric
    ds.BitsAllocated = 16
    ds.BitsStored = BITS_STORED
    ds.HighBit = BITS_STORED - 1
    ds.PixelRepresentation = 0
    ds.RescaleSlope = f"{slope:g}"
    ds.RescaleIntercept = f"{intercept:g}"
    ds.RescaleType = "US"
    # DICOM PS3.3 C.11.2.1.2.1 linear window: values at or below c - 0.5 - (w - 1) / 2 map to black. With
    # w = range + 2 and c = midpoint + 0.5 the thresholds fall half a unit outside [low, high]: no clipping.
    ds.WindowCenter = f"{(low + high) / 2 + 0.5:g}"
    ds.WindowWidth = f"{high - low + 2:g}"
    ds.VOILUTFunction = "LINEAR"
    ds.PresentationLUTShape = "INVERSE" if spec.photometric == "MONOCHROME1" else "IDENTITY"
    ds.PixelData = stored_values(pixels, spec.photometric).astype("<u2").tobytes()
    with atomic_path(path) as temporary:
        ds.save_as(temporary, enforce_file_format=True)
    return Path(path)
