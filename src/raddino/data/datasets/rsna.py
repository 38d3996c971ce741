"""RSNA Pneumonia Detection Challenge (Shih et al. 2019): ``stage_2_train_labels.csv`` and its DICOMs.

Files: ``stage_2_train_labels.csv`` (one row per box, or one row with empty box for a negative image;
``Target`` 1 = pneumonia), optionally ``stage_2_detailed_class_info.csv`` (``Lung Opacity`` / ``Normal`` /
``No Lung Opacity / Not Normal``, kept as ``rsna_class``). Images: ``stage_2_train_images/<patientId>.dcm``,
one per patient. View, sex and age live only in the DICOM headers: they come from a header table given with
``--metadata`` (columns ``PatientID``, ``ViewPosition``, ``PatientSex``, ``PatientAge``, as in the table
torchxrayvision ships) or are read from each file's header (``read_headers``; pixel data is not read).
No official split for the labelled images.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from raddino.data.datasets.images import pick_layout
from raddino.data.datasets.schema import (
    DatasetError,
    DatasetManifest,
    Problem,
    canonical_age,
    canonical_sex,
    canonical_view,
    frontal_flag,
    image_row,
)
from raddino.data.datasets.tables import TableSpec, find_metadata, iter_table
from raddino.io.progress import progress_bar

SOURCE = "rsna-pneumonia"
LABELS_SPEC = TableSpec(
    kind="RSNA pneumonia labels",
    required=("patientId", "x", "y", "width", "height", "Target"),
    names=("stage_2_train_labels.csv", "stage_2_train_labels.csv.zip", "stage_1_train_labels.csv"),
)
CLASS_SPEC = TableSpec(
    kind="RSNA detailed class info",
    required=("patientId", "class"),
    names=("stage_2_detailed_class_info.csv", "stage_1_detailed_class_info.csv"),
)
HEADER_SPEC = TableSpec(
    kind="RSNA DICOM header table",
    required=("PatientID", "ViewPosition"),
    optional=("PatientSex", "PatientAge"),
    extra="ignore",  # a dump of DICOM tags: any other tag may be there
    names=("*dicom_headers*.csv", "*dicom_headers*.csv.gz"),
)
_IMAGE_FOLDERS = ("stage_2_train_images", "stage_1_train_images", ".")


def _read_headers(manifest: DatasetManifest) -> int:
    """Fill view, sex and age from each existing DICOM's header; returns how many were read."""
    import pydicom

    read = 0
    reading = "rsna-pneumonia: reading DICOM headers"
    for row in progress_bar(manifest.rows, desc=reading, unit="file", disable=None):
        path = Path(row["path"])
        if not path.is_file():
            continue
        try:
            header = pydicom.dcmread(
                path, stop_before_pixels=True, specific_tags=["ViewPosition", "PatientSex", "PatientAge"]
            )
        except Exception as error:  # pydicom raises many types for a damaged or non-DICOM file
            manifest.problems.append(Problem(str(path), "header", f"cannot read the DICOM header: {error}"))
            continue
        row["view"] = canonical_view(str(header.get("ViewPosition", "")))
        row["frontal"] = frontal_flag(row["view"])
        row["sex"] = canonical_sex(str(header.get("PatientSex", "")))
        row["age"] = canonical_age(str(header.get("PatientAge", "")))
        read += 1
    return read


def build(root: Path, metadata: Sequence[Path] = (), *, read_headers: bool = True) -> DatasetManifest:
    """Harmonised rows of every labelled RSNA image, one per ``patientId``, boxes as JSON.

    Args:
        root: The competition folder (holding ``stage_2_train_images/`` and the label files).
        metadata: Label, class and DICOM header tables to read instead of those found under ``root``.
        read_headers: Without a header table, read view/sex/age from each image's DICOM header.
    """
    (labels_file,) = find_metadata(root, metadata, LABELS_SPEC)[:1]
    target: dict[str, str] = {}
    boxes: dict[str, list[dict[str, float]]] = {}
    for line, record in iter_table(labels_file, LABELS_SPEC):
        patient = record["patientId"].strip()
        value = record["Target"].strip()
        if value not in ("0", "1"):
            raise DatasetError(f"{labels_file}: line {line}: Target {value!r} is not 0 or 1")
        target[patient] = "1" if value == "1" or target.get(patient) == "1" else "0"
        boxes.setdefault(patient, [])
        if record["x"].strip():
            boxes[patient].append({key: float(record[key]) for key in ("x", "y", "width", "height")})
    classes = {
        record["patientId"].strip(): record["class"].strip()
        for file in find_metadata(root, metadata, CLASS_SPEC, required=False)
        for _, record in iter_table(file, CLASS_SPEC)
    }
    header_files = find_metadata(root, metadata, HEADER_SPEC, required=False)
    headers = {
        record["PatientID"].strip(): record
        for file in header_files
        for _, record in iter_table(file, HEADER_SPEC)
    }
    manifest = DatasetManifest(SOURCE, [], ["pneumonia"], ["rsna_class", "boxes"])
    candidates = []
    base = str(root)
    for patient, positive in target.items():
        header = headers.get(patient, {})
        row = image_row(
            source=SOURCE,
            native_id=patient,
            path=os.path.join(base, _IMAGE_FOLDERS[0], f"{patient}.dcm"),
            subject_id=patient,
            view=canonical_view(header.get("ViewPosition")),
            sex=canonical_sex(header.get("PatientSex")),
            age=canonical_age(header.get("PatientAge")),
            labels={"pneumonia": positive},
        )
        row["rsna_class"] = classes.get(patient, "")
        if boxes[patient]:
            row["boxes"] = json.dumps(boxes[patient])
        manifest.rows.append(row)
        candidates.append(
            [os.path.normpath(os.path.join(base, folder, f"{patient}.dcm")) for folder in _IMAGE_FOLDERS]
        )
    layout = pick_layout(candidates)
    for row, options in zip(manifest.rows, candidates, strict=True):
        row["path"] = options[layout]
    manifest.notes.append(f"read {labels_file} ({len(manifest.rows)} images)")
    if header_files:
        manifest.notes.append(f"views from {header_files[0]}")
    elif read_headers:
        manifest.notes.append(f"views from {_read_headers(manifest)} DICOM headers")
    else:
        manifest.notes.append("no DICOM header table and read_headers off: view, sex and age left empty")
    return manifest
