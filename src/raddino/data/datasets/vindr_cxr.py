"""VinDr-CXR (Nguyen et al. 2022): per-radiologist labels aggregated by a stated rule, plus boxes.

Files, PhysioNet release 1.0.0: ``annotations/image_labels_{train,test}.csv`` (image-level labels, one row
per image and radiologist for train, one consensus row per image for test) and
``annotations/annotations_{train,test}.csv`` (boxes). The Kaggle competition's ``train.csv`` (boxes with
``class_id``) is read as per-radiologist labels when no image label file is given; it has only the 14
local findings, so diagnoses such as tuberculosis are absent from such a manifest. Images:
``{train,test}/<image_id>.dicom``. Every scan is a posteroanterior film (Nguyen et al. 2022); patient ids
were removed, so each image is its own subject.

Aggregation rule: each training image was read by three of seventeen radiologists. A finding is positive
when at least ``min_votes`` of the image's readers marked it (default 2: the majority of three); for the
test set's single consensus row, one vote suffices. ``no_finding`` is derived after aggregation: 1 exactly
when no other label is positive, so the labels of one image never contradict each other.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from raddino.data.datasets.findings import VINDR_FINDINGS, VINDR_LABEL_COLUMNS, VINDR_LABELS
from raddino.data.datasets.images import pick_layout
from raddino.data.datasets.schema import DatasetError, DatasetManifest, image_row
from raddino.data.datasets.tables import TableSpec, find_metadata, iter_table

SOURCE = "vindr-cxr"
LABELS_SPEC = TableSpec(
    kind="VinDr-CXR image labels",
    required=("image_id",),
    optional=("rad_id", "rad_ID", *VINDR_LABELS),
    names=("image_labels_train.csv", "image_labels_test.csv"),
)
BOXES_SPEC = TableSpec(
    kind="VinDr-CXR box annotations",
    required=("image_id", "class_name", "x_min", "y_min", "x_max", "y_max"),
    optional=("rad_id", "rad_ID", "class_id"),
    names=("annotations_train.csv", "annotations_test.csv", "train.csv"),
)


def _split_of(file: Path) -> str:
    name = file.name.lower()
    if "test" in name:
        return "test"
    if "train" in name:
        return "train"
    raise DatasetError(f"{file}: cannot tell train from test by the file name")


def build(root: Path, metadata: Sequence[Path] = (), *, min_votes: int = 2) -> DatasetManifest:
    """Harmonised rows of every VinDr-CXR image with labels, votes aggregated by ``min_votes``.

    Args:
        root: The release folder (holding ``train/``, ``test/`` and ``annotations/``).
        metadata: Label and box files to read instead of those found under ``root``.
        min_votes: Readers needed for a positive label (capped at the image's number of readers).
    """
    if min_votes < 1:
        raise DatasetError(f"min_votes must be at least 1, got {min_votes}")
    label_files = find_metadata(root, metadata, LABELS_SPEC, required=False)
    box_files = find_metadata(root, metadata, BOXES_SPEC, required=not label_files)
    # votes[(split, image)][column] = readers marking it; readers[(split, image)] = who read the image
    votes: dict[tuple[str, str], dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    readers: dict[tuple[str, str], set[str]] = defaultdict(set)
    columns: dict[str, None] = {}
    for file in label_files:
        split = _split_of(file)
        for line, record in iter_table(file, LABELS_SPEC):
            key = (split, record["image_id"].strip())
            reader = (record.get("rad_id") or record.get("rad_ID") or "consensus").strip()
            readers[key].add(reader)
            for name, column in VINDR_FINDINGS.items():
                if name not in record:
                    continue
                columns[column] = None
                value = record[name].strip()
                if value not in ("0", "1", "0.0", "1.0", ""):
                    raise DatasetError(f"{file}: line {line}, column {name!r}: value {value!r} is not 0 or 1")
                if value in ("1", "1.0"):
                    votes[key][column].add(reader)
    boxes: dict[tuple[str, str], list[dict[str, object]]] = defaultdict(list)
    for file in box_files:
        split = _split_of(file)
        for line, record in iter_table(file, BOXES_SPEC):
            key = (split, record["image_id"].strip())
            name = record["class_name"].strip()
            if name not in VINDR_FINDINGS:
                raise DatasetError(f"{file}: line {line}: unknown class_name {name!r}")
            reader = (record.get("rad_id") or record.get("rad_ID") or "consensus").strip()
            if not label_files:  # the boxes are the only labels: a box (or "No finding") is a vote
                readers[key].add(reader)
                columns[VINDR_FINDINGS[name]] = None
                votes[key][VINDR_FINDINGS[name]].add(reader)
            if record["x_min"].strip():
                corners = {corner: float(record[corner]) for corner in ("x_min", "y_min", "x_max", "y_max")}
                boxes[key].append({"finding": VINDR_FINDINGS[name], "rad_id": reader, **corners})

    finding_columns = [
        column for column in VINDR_LABEL_COLUMNS if column in columns or column == "no_finding"
    ]
    manifest = DatasetManifest(SOURCE, [], finding_columns, ["readers", "boxes"])
    candidates: list[tuple[str, str]] = []
    base = str(root)
    for (split, image_id), marked in sorted(readers.items()):
        needed = min(min_votes, len(marked))
        labels = {column: "0" for column in finding_columns}
        for column, voters in votes[(split, image_id)].items():
            if column != "no_finding" and len(voters) >= needed:
                labels[column] = "1"
        labels["no_finding"] = (
            "0" if any(labels[c] == "1" for c in finding_columns if c != "no_finding") else "1"
        )
        row = image_row(
            source=SOURCE,
            native_id=f"{split}/{image_id}",
            path=os.path.join(base, split, f"{image_id}.dicom"),
            subject_id=image_id,
            view="PA",
            split=split,
            labels=labels,
        )
        row["readers"] = str(len(marked))
        if boxes[(split, image_id)]:
            row["boxes"] = json.dumps(boxes[(split, image_id)])
        manifest.rows.append(row)
        candidates.append((row["path"], os.path.join(base, split, f"{image_id}.png")))
    if pick_layout(candidates) == 1:  # a PNG conversion of the release, same names
        for row, options in zip(manifest.rows, candidates, strict=True):
            row["path"] = options[1]
    read = [str(file) for file in (label_files or box_files)]
    manifest.notes.append(f"labels from {read}; positive when >= {min_votes} readers agree")
    if "tuberculosis" not in columns:
        manifest.notes.append("no tuberculosis column: the label files read hold local findings only")
    return manifest
