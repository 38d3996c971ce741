"""MIMIC-CXR (Johnson et al. 2019), JPG or DICOM layout, with MIMIC-CXR-JPG's metadata, split and labels.

Files (MIMIC-CXR-JPG 2.0.0 / 2.1.0): ``mimic-cxr-2.0.0-metadata.csv.gz`` (one row per image, with
``ViewPosition``), ``mimic-cxr-2.0.0-split.csv.gz`` (official split; ``validate`` becomes ``val``),
``mimic-cxr-2.0.0-chexpert.csv.gz`` (CheXpert-labeller labels per study; ``-1`` uncertain kept). The DICOM
release (MIMIC-CXR 2.0.0) adds ``cxr-record-list.csv.gz`` with each DICOM's path. Optional: MIMIC-IV's
``patients.csv.gz`` for sex and age (``anchor_age`` at ``anchor_year``, shifted consistently with
``StudyDate``).

Images: ``files/p10/p10000032/s50414267/<dicom_id>.jpg`` (JPG) or ``.dcm`` (DICOM); ``layout="auto"``
decides from what is on disk.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from raddino.data.datasets.findings import CHEXPERT_FINDINGS, CHEXPERT_LABELS
from raddino.data.datasets.images import pick_layout
from raddino.data.datasets.schema import (
    DatasetError,
    DatasetManifest,
    canonical_age,
    canonical_sex,
    canonical_view,
    chexpert_value,
    image_row,
)
from raddino.data.datasets.tables import TableSpec, find_metadata, iter_table

SOURCE = "mimic-cxr"
METADATA_SPEC = TableSpec(
    kind="MIMIC-CXR-JPG metadata",
    required=("dicom_id", "subject_id", "study_id", "ViewPosition"),
    optional=(
        "PerformedProcedureStepDescription",
        "Rows",
        "Columns",
        "StudyDate",
        "StudyTime",
        "ProcedureCodeSequence_CodeMeaning",
        "ViewCodeSequence_CodeMeaning",
        "PatientOrientationCodeSequence_CodeMeaning",
    ),
    names=("mimic-cxr-*-metadata.csv", "mimic-cxr-*-metadata.csv.gz"),
)
SPLIT_SPEC = TableSpec(
    kind="MIMIC-CXR-JPG split",
    required=("dicom_id", "study_id", "subject_id", "split"),
    names=("mimic-cxr-*-split.csv", "mimic-cxr-*-split.csv.gz"),
)
LABELS_SPEC = TableSpec(
    kind="MIMIC-CXR-JPG CheXpert labels",
    required=("subject_id", "study_id", *CHEXPERT_LABELS),
    names=("mimic-cxr-*-chexpert.csv", "mimic-cxr-*-chexpert.csv.gz"),
)
RECORDS_SPEC = TableSpec(
    kind="MIMIC-CXR record list",
    required=("subject_id", "study_id", "dicom_id", "path"),
    names=("cxr-record-list.csv", "cxr-record-list.csv.gz"),
)
PATIENTS_SPEC = TableSpec(
    kind="MIMIC-IV patients",
    required=("subject_id", "gender", "anchor_age", "anchor_year"),
    optional=("anchor_year_group", "dod"),
    names=("patients.csv", "patients.csv.gz"),
)
_SPLITS = {"train": "train", "validate": "val", "test": "test"}


def _image_relative(subject: str, study: str, dicom_id: str, extension: str) -> str:
    return f"files/p{subject[:2]}/p{subject}/s{study}/{dicom_id}{extension}"


def _age(patient: dict[str, str], study_date: str) -> str:
    """Age at the study: MIMIC-IV's ``anchor_age`` at ``anchor_year``, both shifted like ``StudyDate``."""
    try:
        return canonical_age(int(patient["anchor_age"]) + int(study_date[:4]) - int(patient["anchor_year"]))
    except (KeyError, ValueError):
        return ""


def build(
    root: Path, metadata: Sequence[Path] = (), *, layout: Literal["auto", "jpg", "dicom"] = "auto"
) -> DatasetManifest:
    """Harmonised rows of every MIMIC-CXR image in the metadata file (or the DICOM record list).

    Args:
        root: The release folder (holding ``files/``).
        metadata: MIMIC-CXR-JPG's metadata / split / label files, the record list, MIMIC-IV patients.
        layout: ``jpg`` (MIMIC-CXR-JPG), ``dicom`` (MIMIC-CXR) or ``auto`` (whichever is on disk).
    """
    meta_files = find_metadata(root, metadata, METADATA_SPEC, required=False)
    record_files = find_metadata(root, metadata, RECORDS_SPEC, required=False)
    if not meta_files and not record_files:
        raise DatasetError(
            f"{root}: neither mimic-cxr-2.0.0-metadata.csv.gz nor cxr-record-list.csv.gz found; "
            "pass them with --metadata"
        )
    manifest = DatasetManifest(SOURCE, [], list(CHEXPERT_FINDINGS.values()))
    dicom_path_of = {
        record["dicom_id"]: record["path"]
        for file in record_files
        for _, record in iter_table(file, RECORDS_SPEC)
    }
    split_of: dict[str, str] = {}
    for file in find_metadata(root, metadata, SPLIT_SPEC, required=False):
        for line, record in iter_table(file, SPLIT_SPEC):
            if record["split"] not in _SPLITS:
                raise DatasetError(
                    f"{file}: line {line}: split {record['split']!r} is not train/validate/test"
                )
            split_of[record["dicom_id"]] = _SPLITS[record["split"]]
    labels_of: dict[str, dict[str, str]] = {}
    for file in find_metadata(root, metadata, LABELS_SPEC, required=False):
        for line, record in iter_table(file, LABELS_SPEC):
            labels_of[record["study_id"]] = {
                column: chexpert_value(record[name], file, line, name)
                for name, column in CHEXPERT_FINDINGS.items()
            }
    patients = {
        record["subject_id"]: record
        for file in find_metadata(root, metadata, PATIENTS_SPEC, required=False)
        for _, record in iter_table(file, PATIENTS_SPEC)
    }
    for name, table in (("split", split_of), ("CheXpert label", labels_of)):
        if not table:
            manifest.notes.append(f"no {name} file found: those columns are left empty")

    if meta_files:
        images = (record for _, record in iter_table(meta_files[0], METADATA_SPEC))
        manifest.notes.append(f"read {meta_files[0]}")
    else:
        images = (
            {**record, "ViewPosition": ""}
            for file in record_files
            for _, record in iter_table(file, RECORDS_SPEC)
        )
        manifest.notes.append("no metadata file: views unknown (ViewPosition comes from the metadata file)")
    # Rows are built as the metadata streams in (377k of them); the DICOM path of each is kept aside
    # until the layout on disk is known.
    base = str(root)
    dicom_paths: list[str] = []
    for image in images:
        subject, study, dicom_id = image["subject_id"], image["study_id"], image["dicom_id"]
        patient = patients.get(subject, {})
        manifest.rows.append(
            image_row(
                source=SOURCE,
                native_id=dicom_id,
                path=os.path.join(base, _image_relative(subject, study, dicom_id, ".jpg")),
                subject_id=subject,
                study_id=study,
                view=canonical_view(image["ViewPosition"]),
                split=split_of.get(dicom_id, ""),
                sex=canonical_sex(patient.get("gender")),
                age=_age(patient, image.get("StudyDate", "")),
                labels=labels_of.get(study),
            )
        )
        relative = dicom_path_of.get(dicom_id) or _image_relative(subject, study, dicom_id, ".dcm")
        dicom_paths.append(os.path.join(base, relative))
    chosen = {"jpg": 0, "dicom": 1}.get(layout, -1)
    if chosen < 0:
        chosen = pick_layout(
            [(row["path"], dicom) for row, dicom in zip(manifest.rows, dicom_paths, strict=True)]
        )
    if chosen == 1:
        for row, dicom in zip(manifest.rows, dicom_paths, strict=True):
            row["path"] = dicom
    manifest.notes.append(f"layout: {'jpg' if chosen == 0 else 'dicom'} ({len(manifest.rows)} images)")
    return manifest
