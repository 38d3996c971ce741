"""CheXpert (Irvin et al. 2019): ``train.csv`` and ``valid.csv`` (and CheXlocalize's test labels).

Layout: ``CheXpert-v1.0[-small]/{train,valid}/patientNNNNN/studyN/viewN_{frontal,lateral}.jpg``; the CSVs'
``Path`` column starts with the release folder (``CheXpert-v1.0-small/train/...``), the test labels'
with ``test/``. ``--root`` may be the release folder or the folder holding it. The split is the folder
after the release folder (``valid`` becomes ``val``); uncertain labels stay ``-1``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

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

SOURCE = "chexpert"
LABELS_SPEC = TableSpec(
    kind="CheXpert labels (train.csv / valid.csv)",
    required=("Path", *CHEXPERT_LABELS),
    optional=("Sex", "Age", "Frontal/Lateral", "AP/PA"),
    names=("train.csv", "valid.csv", "test_labels.csv", "test.csv"),
)
_SPLIT_FOLDERS = {"train": "train", "valid": "val", "val": "val", "test": "test"}


def _split_of(parts: tuple[str, ...], file: Path, line: int) -> tuple[str, tuple[str, ...]]:
    """The split and the parts after the split folder (``patientNNNNN/studyN/file``)."""
    for index, part in enumerate(parts[:2]):
        if part in _SPLIT_FOLDERS:
            return _SPLIT_FOLDERS[part], parts[index + 1 :]
    raise DatasetError(f"{file}: line {line}: Path {'/'.join(parts)!r} has no train/valid/test folder")


def build(root: Path, metadata: Sequence[Path] = ()) -> DatasetManifest:
    """Harmonised rows of every image listed in CheXpert's label files.

    Args:
        root: The ``CheXpert-v1.0[-small]`` folder or its parent.
        metadata: Label files to read instead of those found under ``root``.
    """
    files = find_metadata(root, metadata, LABELS_SPEC)
    manifest = DatasetManifest(SOURCE, [], list(CHEXPERT_FINDINGS.values()))
    base = str(root)
    releases = sorted(
        entry.name for entry in root.iterdir() if entry.is_dir() and entry.name.startswith("CheXpert")
    )
    for file in files:
        rows: list[dict[str, str]] = []
        candidates: list[tuple[str, ...]] = []
        for line, record in iter_table(file, LABELS_SPEC):
            # Plain string handling, not pathlib: ~20x faster on CheXpert's 223k rows.
            relative = record["Path"].strip()
            parts = tuple(relative.split("/"))
            split, tail = _split_of(parts, file, line)
            if len(tail) != 3:
                raise DatasetError(f"{file}: line {line}: Path {relative!r} is not .../patient/study/file")
            patient, study, _ = tail
            frontal_lateral = record.get("Frontal/Lateral", "").strip().lower()
            projection = record.get("AP/PA", "").strip().upper()
            if frontal_lateral == "lateral":
                view, frontal = "LATERAL", "0"
            elif frontal_lateral == "frontal":
                # 17 training images are "Frontal" with AP/PA "LL" or "RL": frontal by file name, projection
                # unknown.
                view = canonical_view(projection) if projection in ("AP", "PA") else ""
                frontal = "1"
            else:
                view = canonical_view(projection)
                frontal = None
            labels = {
                column: chexpert_value(record[name], file, line, name)
                for name, column in CHEXPERT_FINDINGS.items()
            }
            native = "/".join((split, *tail)).rsplit(".", 1)[0]
            rows.append(
                image_row(
                    source=SOURCE,
                    native_id=native,
                    path=os.path.join(base, relative),
                    subject_id=patient,
                    study_id=f"{patient}/{study}",
                    view=view,
                    frontal=frontal,
                    split=split,
                    sex=canonical_sex(record.get("Sex")),
                    age=canonical_age(record.get("Age")),
                    labels=labels,
                )
            )
            # The Path under --root as written, without its first folder (--root is the release folder), or
            # under a release folder (test Paths start at test/ while --root holds the release).
            stripped = "/".join(parts[1:]) if len(parts) > 1 else relative
            candidates.append(
                (
                    os.path.join(base, relative),
                    os.path.join(base, stripped),
                    *(os.path.join(base, folder, relative) for folder in releases),
                )
            )
        # Decided per file: CheXlocalize's test Paths lack the release folder the train/valid Paths have.
        layout = pick_layout(candidates)
        for row, options in zip(rows, candidates, strict=True):
            row["path"] = options[layout]
        manifest.rows.extend(rows)
        manifest.notes.append(f"read {file} ({len(rows)} images)")
    return manifest
