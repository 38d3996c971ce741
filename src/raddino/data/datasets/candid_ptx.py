"""CANDID-PTX (Feng et al. 2021): pneumothorax, chest tube and acute rib fracture, each with masks.

Files: ``Pneumothorax_reports.csv`` lists every image (``SOPInstanceUID``; ``EncodedPixels`` is ``-1`` for
an image without pneumothorax, else a run-length-encoded mask, one row per region; ``filename`` starts with
the patient, ``P<number>_``), ``chest_tube.csv`` and ``acute_rib_fracture.csv`` list positive images only
(``anon_SOPUID``, one ``mask_rle`` row per tube or fracture). Images are named by their SOP instance UID
and found by name anywhere under ``--root``. The masks are kept as the source's run-length strings, a JSON
list per image and finding (``pneumothorax_rle`` ...), since decoding them needs each image's size.
No official split.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from raddino.data.datasets.findings import CANDID_LABEL_COLUMNS
from raddino.data.datasets.images import ImageIndex
from raddino.data.datasets.schema import DatasetManifest, Problem, image_row
from raddino.data.datasets.tables import TableSpec, find_metadata, iter_table

SOURCE = "candid-ptx"
# The releases' full headers are not documented beyond these columns (the report file also carries the
# report text), so other columns are ignored rather than rejected.
PNEUMOTHORAX_SPEC = TableSpec(
    kind="CANDID-PTX pneumothorax reports",
    required=("SOPInstanceUID", "EncodedPixels"),
    optional=("filename",),
    extra="ignore",
    names=("Pneumothorax_reports.csv",),
)
CHEST_TUBE_SPEC = TableSpec(
    kind="CANDID-PTX chest tubes",
    required=("anon_SOPUID", "mask_rle"),
    extra="ignore",
    names=("chest_tube.csv",),
)
RIB_FRACTURE_SPEC = TableSpec(
    kind="CANDID-PTX acute rib fractures",
    required=("anon_SOPUID", "mask_rle"),
    extra="ignore",
    names=("acute_rib_fracture.csv",),
)
_PATIENT = re.compile(r"^P?(\d+)_")


def build(root: Path, metadata: Sequence[Path] = ()) -> DatasetManifest:
    """Harmonised rows of every CANDID-PTX image, with the three findings and their run-length masks.

    Args:
        root: The folder holding the images and the three CSV files.
        metadata: The CSV files to read instead of those found under ``root``.
    """
    (reports,) = find_metadata(root, metadata, PNEUMOTHORAX_SPEC)[:1]
    masks: dict[str, dict[str, list[str]]] = {column: defaultdict(list) for column in CANDID_LABEL_COLUMNS}
    patient_of: dict[str, str] = {}
    order: dict[str, None] = {}
    for _, record in iter_table(reports, PNEUMOTHORAX_SPEC):
        image = record["SOPInstanceUID"].strip()
        order[image] = None
        match = _PATIENT.match(record.get("filename", "").strip())
        if match:
            patient_of[image] = match.group(1)
        encoded = record["EncodedPixels"].strip()
        masks["pneumothorax"].setdefault(image, [])
        if encoded and encoded != "-1":
            masks["pneumothorax"][image].append(encoded)
    manifest = DatasetManifest(
        SOURCE, [], list(CANDID_LABEL_COLUMNS), [f"{c}_rle" for c in CANDID_LABEL_COLUMNS]
    )
    found: dict[str, bool] = {}
    for column, spec in (("chest_tube", CHEST_TUBE_SPEC), ("rib_fracture", RIB_FRACTURE_SPEC)):
        files = find_metadata(root, metadata, spec, required=False)
        found[column] = bool(files)
        for file in files:
            for _, record in iter_table(file, spec):
                image = record["anon_SOPUID"].strip()
                if image not in order:
                    manifest.problems.append(Problem(image, "metadata", f"listed in {file.name} only"))
                    continue
                masks[column][image].append(record["mask_rle"].strip())
        if not files:
            manifest.notes.append(f"{spec.names[0]} not found: {column} left empty")
    index = ImageIndex(root, (".dcm", ".dicom", ".png", ".jpg", ".jpeg"))
    for image in order:
        labels, extras = {}, {}
        for column in CANDID_LABEL_COLUMNS:
            if column != "pneumothorax" and not found[column]:
                labels[column] = ""
                continue
            labels[column] = "1" if masks[column].get(image) else "0"
            if masks[column].get(image):
                extras[f"{column}_rle"] = json.dumps(masks[column][image])
        row = image_row(
            source=SOURCE,
            native_id=image,
            path=index.find(image) or root / image,
            subject_id=patient_of.get(image, ""),
            labels=labels,
        )
        row.update(extras)
        manifest.rows.append(row)
    if len(patient_of) < len(order):
        manifest.notes.append(f"{len(order) - len(patient_of)} images have no patient in 'filename'")
    manifest.notes.append(f"read {reports} ({len(order)} images)")
    return manifest
