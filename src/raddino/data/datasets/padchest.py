"""PadChest (Bustos et al. 2020): ``PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv``.

Images are 16-bit PNGs in archives named by the CSV's ``ImageDir`` (``0.zip``, ``1.zip``, ...), unpacked
either into ``ROOT/<ImageDir>/<ImageID>`` or all into ``ROOT/<ImageID>``; the layout is detected. The
``Labels`` column is a Python-style list of terms (``['pleural effusion', 'cardiomegaly']``); every term
becomes a 0/1 column (see ``findings.padchest_column``); rows whose ``Labels`` holds no term stay
unlabelled (empty cells).
``Projection`` gives the view; age is the study year minus ``PatientBirth``. No official split.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Sequence
from pathlib import Path

from raddino.data.datasets.findings import padchest_column
from raddino.data.datasets.images import pick_layout
from raddino.data.datasets.schema import (
    DatasetError,
    DatasetManifest,
    canonical_age,
    canonical_sex,
    canonical_view,
    image_row,
)
from raddino.data.datasets.tables import TableSpec, find_metadata, iter_table

SOURCE = "padchest"
SPEC = TableSpec(
    kind="PadChest labels",
    required=("ImageID", "ImageDir", "StudyID", "PatientID", "Projection", "Labels"),
    optional=(
        "StudyDate_DICOM",
        "PatientBirth",
        "PatientSex_DICOM",
        "ViewPosition_DICOM",
        "MethodProjection",
        "Pediatric",
        "Modality_DICOM",
        "Manufacturer_DICOM",
        "PhotometricInterpretation_DICOM",
        "PixelRepresentation_DICOM",
        "PixelAspectRatio_DICOM",
        "SpatialResolution_DICOM",
        "BitsStored_DICOM",
        "WindowCenter_DICOM",
        "WindowWidth_DICOM",
        "Rows_DICOM",
        "Columns_DICOM",
        "XRayTubeCurrent_DICOM",
        "Exposure_DICOM",
        "ExposureInuAs_DICOM",
        "ExposureTime",
        "RelativeXRayExposure_DICOM",
        "ReportID",
        "Report",
        "MethodLabel",
        "Localizations",
        "LabelsLocalizationsBySentence",
        "labelCUIS",
        "LocalizationsCUIS",
    ),
    names=("PADCHEST_chest_x_ray_images_labels_*.csv", "PADCHEST_chest_x_ray_images_labels_*.csv.gz"),
)


def parse_labels(text: str, where: str) -> list[str] | None:
    """The label terms of one ``Labels`` cell; ``None`` when it holds no term (unlabelled image).

    Raises:
        DatasetError: naming ``where`` when the cell is not a list of strings.
    """
    text = text.strip()
    if not text or text.lower() == "nan":
        return None
    try:
        terms = ast.literal_eval(text)
    except (ValueError, SyntaxError) as error:
        raise DatasetError(f"{where}: Labels {text[:80]!r} is not a list of terms") from error
    if not isinstance(terms, list) or not all(isinstance(term, str) for term in terms):
        raise DatasetError(f"{where}: Labels {text[:80]!r} is not a list of terms")
    kept = [term.strip() for term in terms if term.strip()]
    # 777 rows say [''] : no term at all is no label, not a negative ("normal" is PadChest's negative).
    return kept or None


def _age(record: dict[str, str]) -> str:
    study_year, birth = record.get("StudyDate_DICOM", "")[:4], record.get("PatientBirth", "")
    try:
        return canonical_age(int(study_year) - float(birth))
    except ValueError:
        return ""


def build(root: Path, metadata: Sequence[Path] = ()) -> DatasetManifest:
    """Harmonised rows of every image in the PadChest CSV, one 0/1 column per label term.

    Args:
        root: The folder holding the unpacked image archives.
        metadata: The labels CSV to read instead of the one found under ``root``.
    """
    (labels_file,) = find_metadata(root, metadata, SPEC)[:1]
    manifest = DatasetManifest(SOURCE, [], [], multi_hot=True)
    columns: dict[str, None] = {}
    candidates: list[tuple[str, str]] = []
    base = str(root)
    for line, record in iter_table(labels_file, SPEC):
        name, folder = record["ImageID"].strip(), record["ImageDir"].strip()
        terms = parse_labels(record["Labels"], f"{labels_file}: line {line}")
        row = image_row(
            source=SOURCE,
            native_id=name.rsplit(".", 1)[0],
            path=os.path.join(base, folder, name),
            subject_id=record["PatientID"].strip(),
            study_id=record["StudyID"].strip(),
            view=canonical_view(record["Projection"]),
            sex=canonical_sex(record.get("PatientSex_DICOM")),
            age=_age(record),
        )
        if terms is not None:
            positives = [padchest_column(term) for term in terms]
            columns.update(dict.fromkeys(positives))
            row["findings"] = "|".join(dict.fromkeys(positives))
        manifest.rows.append(row)
        candidates.append((row["path"], os.path.join(base, name)))
    layout = pick_layout(candidates)
    if layout == 1:
        for row, options in zip(manifest.rows, candidates, strict=True):
            row["path"] = options[1]
    # no_finding first, the rest alphabetically: a stable column order whatever the file's row order.
    manifest.finding_columns = sorted(columns, key=lambda column: (column != "no_finding", column))
    unlabelled = sum(1 for row in manifest.rows if "findings" not in row)
    manifest.notes.append(f"read {labels_file}; {unlabelled} images have no labels (label cells left empty)")
    return manifest
