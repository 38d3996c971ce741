"""Adapters on hand-written fixtures in each dataset's documented layout (credentialed datasets)."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dataset_files import copy_fixture, touch
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from raddino.data.datasets import DatasetManifest, build_manifest, subjects_in_several_splits
from raddino.data.datasets.findings import RIB_NAMES

MIMIC_IDS = {
    "0a1b2c3d-11111111-22222222-33333333-44444444": ("10000001", "50000001"),
    "0a1b2c3d-11111111-22222222-33333333-55555555": ("10000001", "50000001"),
    "0a1b2c3d-11111111-22222222-33333333-66666666": ("10000001", "50000002"),
    "0b2c3d4e-11111111-22222222-33333333-77777777": ("11000002", "50000003"),
    "0b2c3d4e-11111111-22222222-33333333-88888888": ("11000002", "50000003"),
    "0c3d4e5f-11111111-22222222-33333333-99999999": ("12000003", "50000004"),
}


def _mimic_tree(root: Path, extension: str) -> None:
    touch(
        root / f"files/p{subject[:2]}/p{subject}/s{study}/{dicom}{extension}"
        for dicom, (subject, study) in MIMIC_IDS.items()
    )


def _by_id(manifest: DatasetManifest) -> dict[str, dict[str, str]]:
    """Rows as written (every column filled), by id without the source prefix."""
    return {row["id"].split("/", 1)[1]: row for row in manifest.expanded_rows()}


def test_mimic_jpg_layout_views_splits_labels_and_age(tmp_path: Path) -> None:
    root = copy_fixture("mimic_cxr", tmp_path / "mimic-cxr-jpg")
    _mimic_tree(root, ".jpg")
    manifest = build_manifest("mimic-cxr", root)
    rows = _by_id(manifest)
    assert len(rows) == 6
    assert all(row["path"].endswith(".jpg") for row in rows.values())
    assert [rows[d]["view"] for d in MIMIC_IDS] == ["PA", "LATERAL", "AP", "PA", "LL", "AP_AXIAL"]
    assert [rows[d]["frontal"] for d in MIMIC_IDS] == ["1", "0", "1", "1", "0", "0"]
    assert [rows[d]["split"] for d in MIMIC_IDS] == ["train", "train", "train", "val", "val", "test"]
    portable = rows["0a1b2c3d-11111111-22222222-33333333-66666666"]  # study 50000002's labels
    assert (portable["atelectasis"], portable["cardiomegaly"], portable["edema"], portable["fracture"]) == (
        "1",
        "-1",  # uncertain kept
        "0",
        "",  # not mentioned
    )
    assert rows["0c3d4e5f-11111111-22222222-33333333-99999999"]["no_finding"] == ""  # study without labels
    # MIMIC-IV: anchor_age 52 at anchor_year 2180, study in 2180 -> 52; study in 2153 for 70 at 2150 -> 73
    assert (portable["sex"], portable["age"]) == ("F", "52")
    assert rows["0b2c3d4e-11111111-22222222-33333333-77777777"]["age"] == "73"
    assert subjects_in_several_splits(manifest.rows) == {}


def test_mimic_dicom_layout_uses_the_record_list_and_gzipped_files(tmp_path: Path) -> None:
    root = copy_fixture("mimic_cxr", tmp_path / "mimic-cxr")
    for name in ("mimic-cxr-2.0.0-metadata.csv", "cxr-record-list.csv"):
        with open(root / name, "rb") as source, gzip.open(root / f"{name}.gz", "wb") as target:
            shutil.copyfileobj(source, target)
        (root / name).unlink()
    _mimic_tree(root, ".dcm")
    manifest = build_manifest("mimic-cxr", root)
    assert "layout: dicom (6 images)" in manifest.notes
    assert len(manifest.rows) == 6
    assert not manifest.problems
    assert all(row["path"].endswith(".dcm") for row in manifest.rows)


def test_mimic_layout_can_be_forced_and_then_reports_missing_files(tmp_path: Path) -> None:
    root = copy_fixture("mimic_cxr", tmp_path / "mimic")
    _mimic_tree(root, ".jpg")
    manifest = build_manifest("mimic-cxr", root, layout="dicom")
    assert manifest.rows == []
    assert [problem.stage for problem in manifest.problems] == ["missing"] * 6


def test_chexpert_train_valid_and_test_files_with_either_root(tmp_path: Path) -> None:
    parent = tmp_path / "stanford"
    release = copy_fixture("chexpert", parent / "CheXpert-v1.0")
    touch(
        parent / line.split(",")[0]
        for name in ("train.csv", "valid.csv")
        for line in _data_lines(release / name)
    )
    touch(release / line.split(",")[0] for line in _data_lines(release / "test_labels.csv"))
    for root in (parent, release):  # the folder holding the release, or the release folder itself
        manifest = build_manifest("chexpert", root)
        rows = _by_id(manifest)
        assert not manifest.problems
        assert sorted(rows) == [
            "test/patient64741/study1/view1_frontal",
            "train/patient00001/study1/view1_frontal",
            "train/patient00002/study2/view1_frontal",
            "train/patient00002/study2/view2_lateral",
            "train/patient00003/study1/view1_frontal",
            "val/patient64541/study1/view1_frontal",
            "val/patient64542/study1/view2_lateral",
        ]
    frontal_ll = rows["train/patient00003/study1/view1_frontal"]  # "Frontal" with AP/PA "LL"
    assert (frontal_ll["view"], frontal_ll["frontal"]) == ("", "1")
    lateral = rows["train/patient00002/study2/view2_lateral"]
    assert (lateral["view"], lateral["frontal"], lateral["cardiomegaly"], lateral["fracture"]) == (
        "LATERAL",
        "0",
        "-1",
        "1",
    )
    assert rows["test/patient64741/study1/view1_frontal"]["cardiomegaly"] == "1"
    assert rows["val/patient64541/study1/view1_frontal"]["study_id"] == "patient64541/study1"
    assert subjects_in_several_splits(manifest.rows) == {}  # the official splits are patient-wise


def _data_lines(path: Path) -> list[str]:
    return path.read_text().splitlines()[1:]


def test_nih_official_lists_boxes_and_the_original_trailing_column(tmp_path: Path) -> None:
    root = copy_fixture("nih_cxr", tmp_path / "nih")
    touch(root / "images" / line.split(",")[0] for line in _data_lines(root / "Data_Entry_2017.csv"))
    manifest = build_manifest("nih-cxr", root)
    rows = {row["id"]: row for row in manifest.expanded_rows()}
    assert [
        rows[f"nih-cxr/0000000{i}"]["split"] for i in ("1_000", "1_001", "2_000", "3_000", "3_001", "4_000")
    ] == [
        "train",
        "train",
        "train",
        "test",
        "test",
        "train",
    ]
    effusion = rows["nih-cxr/00000003_001"]
    positives = {c for c in manifest.finding_columns if effusion[c] == "1"}
    assert positives == {"pleural_effusion", "infiltration", "pleural_thickening"}
    assert rows["nih-cxr/00000002_000"]["no_finding"] == "1"
    assert rows["nih-cxr/00000002_000"]["cardiomegaly"] == "0"
    assert json.loads(effusion["boxes"])[0] == {
        "finding": "infiltration",  # "Infiltrate" in the box file
        "x": 225.08,
        "y": 547.01,
        "width": 86.77,
        "height": 79.18,
    }
    assert (effusion["sex"], effusion["age"], effusion["view"]) == ("F", "74", "AP")


def test_brax_png_and_dicom_renderings_and_study_ids(tmp_path: Path) -> None:
    root = copy_fixture("brax", tmp_path / "brax")
    lines = _data_lines(root / "master_spreadsheet_update.csv")
    touch(root / line.split(",")[2] for line in lines)
    manifest = build_manifest("brax", root)
    rows = manifest.rows
    assert len(rows) == 5
    assert not manifest.problems
    assert [row["view"] for row in rows] == ["PA", "LL", "AP", "", "RLD"]
    assert [row["frontal"] for row in rows] == ["1", "0", "1", "", "0"]
    # AccessionNumber 1001 is reused by two patients: the study id keeps them apart
    assert [row["study_id"] for row in rows][:3] == ["a1/1001", "a1/1001", "b2/1001"]
    assert [row["age"] for row in rows] == ["45", "45", "85", "85", "20"]  # "85 or more" -> 85
    assert [row["sex"] for row in rows] == ["F", "F", "M", "M", "O"]
    assert (rows[2]["lung_opacity"], rows[3]["pneumonia"], rows[3]["edema"]) == ("-1", "-1", "0")
    dicom = build_manifest("brax", root, image_format="dicom")
    assert [p.stage for p in dicom.problems] == ["missing"] * 5  # only the PNGs are on disk
    assert dicom.rows == []


def test_vindr_physionet_layout_votes_and_test_consensus(tmp_path: Path) -> None:
    root = copy_fixture("vindr_cxr", tmp_path / "vindr" / "annotations").parent
    touch(root / split / f"{image}.dicom" for split, image in [("train", "aaaa0001"), ("train", "bbbb0002")])
    touch(root / "test" / f"{image}.dicom" for image in ("cccc0003", "dddd0004"))
    rows = _by_id(build_manifest("vindr-cxr", root))
    assert sorted(rows) == ["test/cccc0003", "test/dddd0004", "train/aaaa0001", "train/bbbb0002"]
    two_of_three = rows["train/aaaa0001"]
    assert (two_of_three["cardiomegaly"], two_of_three["tuberculosis"], two_of_three["no_finding"]) == (
        "1",
        "0",
        "0",
    )
    one_of_three = rows["train/bbbb0002"]
    assert (one_of_three["lung_opacity"], one_of_three["no_finding"]) == ("0", "1")
    consensus = rows["test/cccc0003"]
    assert (consensus["aortic_enlargement"], consensus["pleural_thickening"], consensus["readers"]) == (
        "1",
        "1",
        "1",
    )
    assert consensus["other_diseases"] == "0"  # the test file's "Other disease" column
    assert len(json.loads(two_of_three["boxes"])) == 2
    assert {row["split"] for row in rows.values()} == {"train", "test"}
    loose = _by_id(build_manifest("vindr-cxr", root, min_votes=1))
    assert (loose["train/aaaa0001"]["tuberculosis"], loose["train/bbbb0002"]["lung_opacity"]) == ("1", "1")


def _dicom_header(path: Path, view: str, sex: str, age: str) -> None:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    header = Dataset()
    header.file_meta = meta
    header.SOPClassUID = meta.MediaStorageSOPClassUID
    header.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    header.ViewPosition, header.PatientSex, header.PatientAge = view, sex, age
    path.parent.mkdir(parents=True, exist_ok=True)
    header.save_as(path, enforce_file_format=True)


def test_rsna_reads_views_from_dicom_headers_without_pixels(tmp_path: Path) -> None:
    root = tmp_path / "rsna"
    root.mkdir()
    (root / "stage_2_train_labels.csv").write_text(
        "patientId,x,y,width,height,Target\n"
        "p-0001,,,,,0\n"
        "p-0002,264.0,152.0,213.0,379.0,1\n"
        "p-0002,562.0,152.0,256.0,453.0,1\n"
        "p-0003,,,,,0\n"
    )
    (root / "stage_2_detailed_class_info.csv").write_text(
        "patientId,class\np-0001,Normal\np-0002,Lung Opacity\np-0002,Lung Opacity\n"
        "p-0003,No Lung Opacity / Not Normal\n"
    )
    _dicom_header(root / "stage_2_train_images" / "p-0001.dcm", "PA", "F", "051Y")
    _dicom_header(root / "stage_2_train_images" / "p-0002.dcm", "AP", "M", "155Y")
    touch([root / "stage_2_train_images" / "p-0003.dcm"])  # not a DICOM: reported, row kept
    manifest = build_manifest("rsna-pneumonia", root)
    rows = _by_id(manifest)
    assert [(rows[p]["view"], rows[p]["sex"], rows[p]["age"]) for p in ("p-0001", "p-0002", "p-0003")] == [
        ("PA", "F", "51"),  # DICOM age string "051Y"
        ("AP", "M", ""),  # 155 years is not an age
        ("", "", ""),
    ]
    assert [rows[p]["pneumonia"] for p in ("p-0001", "p-0002", "p-0003")] == ["0", "1", "0"]
    assert len(json.loads(rows["p-0002"]["boxes"])) == 2
    assert rows["p-0003"]["rsna_class"] == "No Lung Opacity / Not Normal"
    assert [(p.stage, Path(p.path).name) for p in manifest.problems] == [("header", "p-0003.dcm")]
    assert pydicom.dcmread(rows["p-0001"]["path"]).ViewPosition == "PA"


def test_candid_ptx_labels_masks_and_patients(tmp_path: Path) -> None:
    root = copy_fixture("candid_ptx", tmp_path / "candid")
    touch(root / "dataset" / f"1.2.826.0.1.3680043.8.498.1000{i}.dcm" for i in range(1, 5))
    manifest = build_manifest("candid-ptx", root)
    rows = [row for row in manifest.expanded_rows()]
    assert [row["subject_id"] for row in rows] == ["1001", "1001", "2002", "3003"]
    assert [(row["pneumothorax"], row["chest_tube"], row["rib_fracture"]) for row in rows] == [
        ("0", "0", "0"),
        ("1", "0", "0"),
        ("0", "1", "1"),
        ("0", "0", "0"),
    ]
    assert json.loads(rows[1]["pneumothorax_rle"]) == ["75 2 3 2", "120 4"]  # two regions, one image
    assert json.loads(rows[2]["chest_tube_rle"]) == ["10 5 20 5", "40 3"]
    assert rows[0]["pneumothorax_rle"] == ""
    # a chest tube listed for an image the report file does not have is reported
    assert [(p.stage, p.path) for p in manifest.problems] == [
        ("metadata", "1.2.826.0.1.3680043.8.498.99999.dcm")
    ]


def test_vindr_ribcxr_draws_twenty_rib_masks_per_image(tmp_path: Path) -> None:
    root = tmp_path / "VinDr-RibCXR"
    copy_fixture("vindr_ribcxr", root / "Annotations")
    for split, count in (("train", 2), ("val", 1)):
        for index in range(count):
            target = root / "data" / split / "img" / f"VinDr_RibCXR_{split}_{index:03d}.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((48, 16), 100, np.uint8)).save(target)  # 16 wide, 48 high
    masks = tmp_path / "masks"
    manifest = build_manifest("vindr-ribcxr", root, masks_dir=masks)
    rows = _by_id(manifest)
    assert sorted(rows) == [
        "train/VinDr_RibCXR_train_000",
        "train/VinDr_RibCXR_train_001",
        "val/VinDr_RibCXR_val_000",
    ]
    assert {row["split"] for row in rows.values()} == {"train", "val"}
    first = rows["train/VinDr_RibCXR_train_000"]
    for k, rib in enumerate(RIB_NAMES):
        mask = np.asarray(Image.open(first[f"mask_{rib.lower()}"]))
        assert mask.shape == (48, 16)
        expected = np.zeros((48, 16), np.uint8)
        expected[2 * k : 2 * k + 2, 2:11] = 255  # the polygon (2, 2k)-(10, 2k+1), boundary included
        np.testing.assert_array_equal(mask, expected)
    polygons = _by_id(build_manifest("vindr-ribcxr", root))
    assert json.loads(polygons["val/VinDr_RibCXR_val_000"]["polygon_l10"]) == [
        [2, 38],
        [10, 38],
        [10, 39],
        [2, 39],
    ]


def test_vindr_ribcxr_rejects_an_annotation_without_all_ribs(tmp_path: Path) -> None:
    root = tmp_path / "ribs"
    root.mkdir()
    (root / "broken.json").write_text(
        json.dumps({"img": {"0": "data/train/img/a.png"}, "R1": {"0": []}, "X": {}})
    )
    with pytest.raises(ValueError, match=r"broken\.json: missing rib keys \['R2'.*unexpected keys \['X'\]"):
        build_manifest("vindr-ribcxr", root)
