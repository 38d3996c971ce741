"""Writing one phantom to disk and describing it as a manifest row.

Layout under the output folder (paths in the manifest are relative to it, so the folder can be moved):

    images/<id>.png          8-bit PNG (format ``png8``)
    images16/<id>.png        16-bit PNG (``png16``)
    dicom/<id>.dcm           DICOM (``dicom``)
    masks/<id>/<name>.png    one 1-bit PNG per structure (0 background, 1 inside)

Every file appears atomically: images through a temporary file and a rename, and an image's masks are
written into a temporary folder renamed into place, so a phantom is complete when all its files exist and
a resumed run can trust them. The image in the first format is written last.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from raddino.data.phantoms.dicom import write_dicom
from raddino.data.phantoms.settings import FINDINGS, LABELS, STRUCTURES
from raddino.data.phantoms.spec import Phantom, PhantomSpec
from raddino.io.atomic import atomic_directory
from raddino.io.png import write_png

FOLDERS = {"png8": "images", "png16": "images16", "dicom": "dicom"}
SUFFIXES = {"png8": ".png", "png16": ".png", "dicom": ".dcm"}
METADATA_COLUMNS = ("sex", "age", "weight", "bmi")


def image_path(spec: PhantomSpec, fmt: str) -> str:
    """Relative path of an image in ``fmt``."""
    return f"{FOLDERS[fmt]}/{spec.image_id}{SUFFIXES[fmt]}"


def mask_path(spec: PhantomSpec, structure: str) -> str:
    """Relative path of one mask."""
    return f"masks/{spec.image_id}/{structure}.png"


def is_complete(root: Path, spec: PhantomSpec, formats: Sequence[str], masks: bool) -> bool:
    """Whether every file of this phantom exists (a resumed run skips it)."""
    if masks and not (root / "masks" / spec.image_id).is_dir():
        return False
    return all((root / image_path(spec, fmt)).is_file() for fmt in formats)


def write_masks(root: Path, spec: PhantomSpec, masks: dict[str, np.ndarray]) -> None:
    """Write all masks of one phantom as 1-bit PNGs into ``masks/<id>/``, atomically as a folder."""
    with atomic_directory(root / "masks" / spec.image_id) as staging:
        for name in STRUCTURES:
            Image.fromarray(masks[name]).save(staging / f"{name}.png", format="PNG", compress_level=1)


def write_phantom(root: Path, phantom: Phantom, formats: Sequence[str], masks: bool = True) -> None:
    """Write one phantom's images and masks under ``root``."""
    spec = phantom.spec
    if masks:
        write_masks(root, spec, phantom.masks)
    # The first format is written last: its presence marks the phantom as complete for a resumed run.
    for fmt in [*formats[1:], formats[0]]:
        target = root / image_path(spec, fmt)
        if fmt == "dicom":
            write_dicom(target, phantom.image, spec)
        else:
            write_png(target, phantom.image, bits=8 if fmt == "png8" else 16, compress_level=1)


def manifest_columns(formats: Sequence[str], masks: bool) -> list[str]:
    """The manifest's columns, in order."""
    columns = ["path", "id", "subject_id", "study_id", "view", "split", *LABELS, *METADATA_COLUMNS]
    columns += [f"path_{fmt}" for fmt in formats[1:]]
    if masks:
        columns += [f"mask_{name}" for name in STRUCTURES]
    columns += [f"severity_{name}" for name in FINDINGS]
    return [*columns, "report"]


def manifest_row(spec: PhantomSpec, formats: Sequence[str], masks: bool) -> dict[str, object]:
    """One manifest row (relative paths)."""
    metadata = spec.metadata()
    row: dict[str, object] = {
        "path": image_path(spec, formats[0]),
        "id": spec.image_id,
        "subject_id": metadata["subject_id"],
        "study_id": metadata["study_id"],
        "view": metadata["view"],
        "split": metadata["split"],
    }
    row.update({name: spec.labels[name] for name in LABELS})
    row.update({name: metadata[name] for name in METADATA_COLUMNS})
    row.update({f"path_{fmt}": image_path(spec, fmt) for fmt in formats[1:]})
    if masks:
        row.update({f"mask_{name}": mask_path(spec, name) for name in STRUCTURES})
    row.update({f"severity_{name}": spec.findings.severities.get(name, "") for name in FINDINGS})
    row["report"] = spec.report
    return row
