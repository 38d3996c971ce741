"""NIH ChestX-ray14 (Wang et al. 2017): ``Data_Entry_2017*.csv``, the official split lists, bounding boxes.

Files: ``Data_Entry_2017.csv`` (the original, with a trailing empty column) or ``Data_Entry_2017_v2020.csv``
(``Patient Gender`` renamed ``Patient Sex`` in some copies); ``train_val_list.txt`` / ``test_list.txt``
(the official patient-wise split: train_val becomes ``train``, carve a validation set by subject with
``--split``); ``BBox_List_2017.csv`` (984 boxes on 880 images, in 1024-pixel image coordinates).
Images are found by name anywhere under ``--root`` (``images/``, or Kaggle's ``images_001/images/``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from raddino.data.datasets.findings import NIH_FINDINGS, NIH_LABEL_COLUMNS
from raddino.data.datasets.images import ImageIndex
from raddino.data.datasets.schema import (
    DatasetError,
    DatasetManifest,
    Problem,
    canonical_age,
    canonical_sex,
    canonical_view,
    image_row,
)
from raddino.data.datasets.tables import TableSpec, find_metadata, iter_table

SOURCE = "nih-cxr"
ENTRY_SPEC = TableSpec(
    kind="NIH Data_Entry_2017",
    required=("Image Index", "Finding Labels", "Patient ID", "View Position"),
    optional=(
        "Follow-up #",
        "Patient Age",
        "Patient Gender",
        "Patient Sex",
        "OriginalImage[Width",
        "Height]",
        "OriginalImagePixelSpacing[x",
        "y]",
    ),
    names=("Data_Entry_2017*.csv", "Data_Entry_2017*.csv.gz"),
)
BOX_SPEC = TableSpec(
    kind="NIH BBox_List_2017",
    required=("Image Index", "Finding Label", "Bbox [x", "y", "w", "h]"),
    names=("BBox_List_2017*.csv", "BBox_List_2017*.csv.gz"),
)
SPLIT_LISTS = {"train": ("train_val_list*.txt",), "test": ("test_list*.txt",)}


def _split_lists(root: Path, metadata: Sequence[Path]) -> dict[str, str]:
    """Image name -> split from the official lists (empty when the lists are absent)."""
    split_of: dict[str, str] = {}
    for split, patterns in SPLIT_LISTS.items():
        spec = TableSpec(kind=f"NIH {patterns[0]}", required=(), names=patterns)
        for file in find_metadata(root, [p for p in metadata if p.suffix == ".txt"], spec, required=False):
            for line in file.read_text(encoding="utf-8").split():
                if line in split_of and split_of[line] != split:
                    raise DatasetError(f"{file}: {line} is in both the train_val and the test list")
                split_of[line] = split
    return split_of


def _boxes(root: Path, metadata: Sequence[Path]) -> dict[str, list[dict[str, object]]]:
    boxes: dict[str, list[dict[str, object]]] = defaultdict(list)
    for file in find_metadata(root, metadata, BOX_SPEC, required=False):
        for line, record in iter_table(file, BOX_SPEC):
            name = record["Finding Label"].strip()
            if name not in NIH_FINDINGS:
                raise DatasetError(f"{file}: line {line}: unknown finding {name!r}")
            try:
                x, y, w, h = (float(record[key]) for key in ("Bbox [x", "y", "w", "h]"))
            except ValueError as error:
                raise DatasetError(f"{file}: line {line}: box coordinates are not numbers") from error
            boxes[record["Image Index"].strip()].append(
                {"finding": NIH_FINDINGS[name], "x": x, "y": y, "width": w, "height": h}
            )
    return boxes


def build(root: Path, metadata: Sequence[Path] = ()) -> DatasetManifest:
    """Harmonised rows of every image in ``Data_Entry_2017*.csv``, with splits and boxes when available.

    Args:
        root: The folder the NIH archives were unpacked into.
        metadata: Data entry, split list and box files to read instead of those found under ``root``.
    """
    # The v2020 revision corrects ages over 120; prefer it when both versions are present.
    entry_file = max(find_metadata(root, metadata, ENTRY_SPEC), key=lambda path: "v2020" in path.name)
    split_of = _split_lists(root, metadata)
    boxes = _boxes(root, metadata)
    index = ImageIndex(root, (".png",))
    manifest = DatasetManifest(SOURCE, [], list(NIH_LABEL_COLUMNS), ["boxes"], multi_hot=True)
    names: set[str] = set()
    for line, record in iter_table(entry_file, ENTRY_SPEC):
        name = record["Image Index"].strip()
        names.add(name)
        positives = []
        for finding in record["Finding Labels"].split("|"):
            if finding.strip() not in NIH_FINDINGS:
                raise DatasetError(f"{entry_file}: line {line}: unknown finding {finding!r}")
            positives.append(NIH_FINDINGS[finding.strip()])
        row = image_row(
            source=SOURCE,
            native_id=name.rsplit(".", 1)[0],
            path=index.find(name) or root / "images" / name,
            subject_id=record["Patient ID"].strip(),
            study_id=name.rsplit(".", 1)[0],  # one image per visit: the follow-up number is in the name
            view=canonical_view(record["View Position"]),
            split=split_of.get(name, ""),
            sex=canonical_sex(record.get("Patient Gender") or record.get("Patient Sex")),
            age=canonical_age(record.get("Patient Age")),
        )
        row["findings"] = "|".join(positives)
        if name in boxes:
            row["boxes"] = json.dumps(boxes[name])
        manifest.rows.append(row)
    for name in sorted(set(boxes) - names):
        manifest.problems.append(
            Problem(name, "metadata", "has bounding boxes but is not in the data entry file")
        )
    if split_of:
        unlisted = sum(1 for row in manifest.rows if not row["split"])
        if unlisted:
            manifest.notes.append(f"{unlisted} images are in neither official split list")
    else:
        manifest.notes.append("no train_val_list.txt / test_list.txt found: split left empty")
    manifest.notes.append(f"read {entry_file}")
    return manifest
