"""Adapters against the real NIH, PadChest, CheXpert, VinDr-CXR and RSNA files of the torchxrayvision wheel.

Counts are checked against the files themselves (read independently with the standard library) and,
where the released checkpoint states them, against its training-data table (``RELEASE_IMAGES``, the
layout of the paper's Table B.1): NIH-CXR matches exactly; CheXpert's 223,648 is train (223,414, the file
shipped here) plus valid (234); PadChest's 136,787 is fewer than the file's 160,861 rows, the release
having filtered images by a rule it does not state (it is not the frontal count, 110,633, nor frontal +
lateral, 160,212).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import os
from collections import Counter

import pytest
from dataset_files import XRV_DATA, RealBuild

from raddino.data.datasets import RELEASE_IMAGES, assign_subject_splits, subjects_in_several_splits
from raddino.data.datasets.findings import NIH_FINDINGS, VINDR_FINDINGS, padchest_column
from raddino.data.datasets.registry import build_manifest, write_dataset_manifest
from raddino.io.manifest import read_manifest

pytestmark = pytest.mark.slow  # each fixture reads a 100k-row file once per session


def _missing(build: RealBuild) -> int:
    return sum(problem.stage == "missing" for problem in build.manifest.problems)


def test_nih_rows_subjects_and_views_match_the_file_and_the_release(nih_real: RealBuild) -> None:
    rows, raw = nih_real.manifest.rows, nih_real.raw
    assert len(rows) == len(raw) == RELEASE_IMAGES["nih-cxr"] == 112_120
    assert len({row["subject_id"] for row in rows}) == len({r["Patient ID"] for r in raw}) == 30_805
    assert Counter(row["view"] for row in rows) == Counter(r["View Position"] for r in raw)
    assert {row["frontal"] for row in rows} == {"1"}  # NIH holds frontal films only
    assert len({row["id"] for row in rows}) == len(rows)


def test_nih_images_are_found_by_name_and_missing_ones_reported(nih_real: RealBuild) -> None:
    existing = {row["path"] for row in nih_real.manifest.rows if os.path.isfile(row["path"])}
    assert existing == nih_real.on_disk  # under Kaggle's images_NNN/images/ folders
    assert _missing(nih_real) == len(nih_real.raw) - len(nih_real.on_disk)


def test_nih_findings_and_boxes_round_trip_through_the_written_csv(nih_real: RealBuild) -> None:
    on_disk = dataclasses.replace(
        nih_real.manifest, rows=[row for row in nih_real.manifest.rows if row["path"] in nih_real.on_disk]
    )
    out = nih_real.root / "nih.csv"
    write_dataset_manifest(on_disk, out)
    written = read_manifest(out)
    labels_of = {r["Image Index"]: r["Finding Labels"] for r in nih_real.raw}
    assert len(written) == len(nih_real.on_disk)
    for row in written.rows:
        assert not os.path.isabs(row["path"])
        assert written.resolve(row).is_file()
        name = os.path.basename(row["path"])
        expected = {NIH_FINDINGS[finding] for finding in labels_of[name].split("|")}
        assert {column for column in on_disk.finding_columns if row[column] == "1"} == expected
        assert {row[column] for column in on_disk.finding_columns} <= {"0", "1"}
    boxes = [json.loads(row["boxes"]) for row in nih_real.manifest.rows if row.get("boxes")]
    assert len(boxes) == 880
    assert sum(map(len, boxes)) == 984
    first = next(row for row in nih_real.manifest.rows if row["id"] == "nih-cxr/00013118_008")
    assert json.loads(first["boxes"])[0] == pytest.approx(
        {"finding": "atelectasis", "x": 225.084745762712, "y": 547.019216763771}
        | {"width": 86.7796610169491, "height": 79.1864406779661}
    )


def test_padchest_counts_views_and_unlabelled_rows(padchest_real: RealBuild) -> None:
    rows, raw = padchest_real.manifest.rows, padchest_real.raw
    assert len(rows) == len(raw) == 160_861
    assert len({row["subject_id"] for row in rows}) == len({r["PatientID"] for r in raw}) == 67_625
    assert len({row["study_id"] for row in rows}) == len({r["StudyID"] for r in raw}) == 109_931
    assert Counter(row["view"] for row in rows) == {
        "PA": 91_728,
        "LATERAL": 49_579,
        "AP_SUPINE": 14_346,  # Projection "AP_horizontal": AP of a patient lying in bed
        "AP": 4_559,
        "COSTAL": 630,
        "": 19,  # "EXCLUDE" and "UNK"
    }
    frontal = sum(row["frontal"] == "1" for row in rows)
    assert frontal == 110_633 != RELEASE_IMAGES["padchest"]
    # Unlabelled: "nan" (103 rows) or a list of empty terms, "['']" (777 rows); "normal" is the negative.
    no_terms = [r for r in raw if r["Labels"] == "nan" or not r["Labels"].replace("'", "").strip("[], ")]
    unlabelled = [row for row in rows if "findings" not in row]
    assert len(unlabelled) == len(no_terms) == 880
    cells = dataclasses.replace(padchest_real.manifest, rows=unlabelled[:50]).expanded_rows()
    assert {row[column] for row in cells for column in padchest_real.manifest.finding_columns} == {""}


def test_padchest_label_strings_become_columns_and_round_trip(padchest_real: RealBuild) -> None:
    manifest = padchest_real.manifest
    assert len(manifest.finding_columns) == 193
    assert manifest.finding_columns[0] == "no_finding"
    subset = dataclasses.replace(
        manifest, rows=[row for row in manifest.rows if row["path"] in padchest_real.on_disk]
    )
    assert len(subset.rows) == len(padchest_real.on_disk)  # the ROOT/<ImageDir>/<ImageID> layout detected
    out = padchest_real.root / "padchest.csv"
    write_dataset_manifest(subset, out)
    terms_of = {r["ImageID"]: r["Labels"] for r in padchest_real.raw}
    for row in read_manifest(out).rows:
        terms = ast.literal_eval(terms_of[os.path.basename(row["path"])] or "None")
        positives = {column for column in manifest.finding_columns if row[column] == "1"}
        if terms is None:
            assert {row[column] for column in manifest.finding_columns} == {""}
        else:
            assert positives == {padchest_column(term) for term in terms if term.strip()}


def test_padchest_subject_splits_never_share_a_subject(padchest_real: RealBuild) -> None:
    rows = [dict(row) for row in padchest_real.manifest.rows]
    assigned = assign_subject_splits(rows, (0.7, 0.15, 0.15), seed=3)
    assert assigned == len(rows)
    assert subjects_in_several_splits(rows) == {}
    subjects = {
        split: {r["subject_id"] for r in rows if r["split"] == split} for split in ("train", "val", "test")
    }
    total = sum(map(len, subjects.values()))
    assert total == 67_625
    for split, fraction in (("train", 0.7), ("val", 0.15), ("test", 0.15)):
        assert len(subjects[split]) / total == pytest.approx(fraction, abs=0.01)


def test_chexpert_counts_and_uncertain_labels_kept(chexpert_real: RealBuild) -> None:
    rows, raw = chexpert_real.manifest.rows, chexpert_real.raw
    assert len(rows) == len(raw) == 223_414 == RELEASE_IMAGES["chexpert"] - 234  # valid.csv not shipped
    assert len({row["subject_id"] for row in rows}) == 64_540
    assert len({row["study_id"] for row in rows}) == 187_641
    assert {row["split"] for row in rows} == {"train"}
    assert sum(row["frontal"] == "1" for row in rows) == 191_027
    assert sum(row["view"] == "LATERAL" for row in rows) == 32_387
    assert Counter(row["sex"] for row in rows) == {"M": 132_636, "F": 90_777, "": 1}
    as_text = {"1.0": "1", "0.0": "0", "-1.0": "-1", "": ""}
    for name, column in (
        ("Pneumonia", "pneumonia"),
        ("Atelectasis", "atelectasis"),
        ("No Finding", "no_finding"),
    ):
        assert Counter(row[column] for row in rows) == Counter(as_text[r[name]] for r in raw)
    assert sum(row["pneumonia"] == "-1" for row in rows) == 18_770


def test_chexpert_layout_and_missing_images(chexpert_real: RealBuild) -> None:
    existing = {row["path"] for row in chexpert_real.manifest.rows if os.path.isfile(row["path"])}
    assert existing == chexpert_real.on_disk
    assert _missing(chexpert_real) == len(chexpert_real.raw) - len(chexpert_real.on_disk)


def _votes(raw: list[dict[str, str]], class_name: str) -> Counter[str]:
    return Counter(
        image for image, rad in {(r["image_id"], r["rad_id"]) for r in raw if r["class_name"] == class_name}
    )


def test_vindr_majority_of_three_readers(vindr_real: RealBuild) -> None:
    rows, raw = vindr_real.manifest.rows, vindr_real.raw
    assert len(rows) == 15_000
    assert {row["readers"] for row in rows} == {"3"}
    for name in ("Cardiomegaly", "Aortic enlargement", "Pleural thickening", "Pulmonary fibrosis"):
        votes = _votes(raw, name)
        majority = {image for image, count in votes.items() if count >= 2}
        column = VINDR_FINDINGS[name]
        assert {row["subject_id"] for row in rows if row[column] == "1"} == majority
        assert 0 < len(majority) < len(votes)  # the rule matters: some findings have a single reader
    for row in rows:
        others = [row[c] for c in vindr_real.manifest.finding_columns if c != "no_finding"]
        assert row["no_finding"] == ("0" if "1" in others else "1")
    boxes = sum(len(json.loads(row["boxes"])) for row in rows if row.get("boxes"))
    assert boxes == sum(1 for r in raw if r["x_min"].strip())
    assert _missing(vindr_real) == 15_000 - len(vindr_real.on_disk)


def test_vindr_min_votes_one_is_any_reader(vindr_real: RealBuild) -> None:
    labels = XRV_DATA / "vinbigdata-train.csv.gz"
    manifest = build_manifest("vindr-cxr", vindr_real.root, [labels], check_images=False, min_votes=1)
    positives = {row["subject_id"] for row in manifest.rows if row["cardiomegaly"] == "1"}
    assert positives == set(_votes(vindr_real.raw, "Cardiomegaly"))


def test_rsna_one_row_per_patient_with_views_from_the_header_table(rsna_real: RealBuild) -> None:
    rows, raw = rsna_real.manifest.rows, rsna_real.raw
    assert len(rows) == len({r["patientId"] for r in raw}) == 26_684
    positives = {r["patientId"] for r in raw if r["Target"] == "1"}
    assert {row["subject_id"] for row in rows if row["pneumonia"] == "1"} == positives
    assert sum(len(json.loads(row["boxes"])) for row in rows if row.get("boxes")) == 9_555
    assert Counter(row["view"] for row in rows) == {"PA": 14_511, "AP": 12_173}
    assert all(row["age"] == "" or 0 <= int(row["age"]) <= 120 for row in rows)
    existing = {row["path"] for row in rows if os.path.isfile(row["path"])}
    assert existing == rsna_real.on_disk
