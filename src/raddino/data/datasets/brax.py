"""BRAX (Reis et al. 2022): ``master_spreadsheet_update.csv`` of the PhysioNet release (v1.1.0).

One row per image with both renderings' paths (``PngPath`` under ``images/``, ``DicomPath``), the patient
(``PatientID``, randomly generated), the study (``AccessionNumber``, not unique across patients, so the
study id is ``PatientID/AccessionNumber``), ``ViewPosition`` (AP, PA, LL, RL, RLD, LLD, RLO, LLO or empty),
sex, age in 5-year groups (``85 or more`` for the oldest, kept as 85) and the 14 CheXpert-style labels of a
Portuguese adaptation of the CheXpert labeller (``-1`` uncertain kept). No official split.
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

SOURCE = "brax"
SPEC = TableSpec(
    kind="BRAX master spreadsheet",
    required=("PatientID", "AccessionNumber", "ViewPosition", *CHEXPERT_LABELS),
    optional=(
        "PngPath",
        "DicomPath",
        "PatientSex",
        "PatientAge",
        "StudyDate",
        "Rows",
        "Columns",
        "Manufacturer",
    ),
    names=("master_spreadsheet_update.csv", "master_spreadsheet.csv", "master_spreadsheet*.csv.gz"),
)


def build(
    root: Path, metadata: Sequence[Path] = (), *, image_format: Literal["png", "dicom"] = "png"
) -> DatasetManifest:
    """Harmonised rows of every image in BRAX's master spreadsheet.

    Args:
        root: The release folder (holding ``images/`` and the spreadsheet).
        metadata: The spreadsheet to read instead of the one found under ``root``.
        image_format: Which rendering each row points to: the PNGs or the DICOMs.
    """
    (sheet,) = find_metadata(root, metadata, SPEC)[:1]
    column = "PngPath" if image_format == "png" else "DicomPath"
    manifest = DatasetManifest(SOURCE, [], list(CHEXPERT_FINDINGS.values()))
    candidates: list[tuple[str, str]] = []
    base = str(root)
    for line, record in iter_table(sheet, SPEC):
        where = f"{sheet}: line {line}"
        relative = record.get(column, "").strip()
        if not relative:
            raise DatasetError(f"{where}: no {column} (use the other rendering with --image-format)")
        patient = record["PatientID"].strip()
        manifest.rows.append(
            image_row(
                source=SOURCE,
                native_id=relative.rsplit(".", 1)[0],
                path=os.path.join(base, relative),
                subject_id=patient,
                study_id=f"{patient}/{record['AccessionNumber'].strip()}",
                view=canonical_view(record["ViewPosition"]),
                sex=canonical_sex(record.get("PatientSex")),
                age=canonical_age(record.get("PatientAge")),
                labels={
                    column_name: chexpert_value(record[name], sheet, line, name)
                    for name, column_name in CHEXPERT_FINDINGS.items()
                },
            )
        )
        # Paths start with the release's images/ folder; --root may also be that folder itself.
        candidates.append((os.path.join(base, relative), os.path.join(base, relative.split("/", 1)[-1])))
    if pick_layout(candidates) == 1:
        for row, options in zip(manifest.rows, candidates, strict=True):
            row["path"] = options[1]
    manifest.notes.append(f"read {sheet} ({len(manifest.rows)} images, {column})")
    return manifest
