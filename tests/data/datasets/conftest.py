"""Real public metadata files (from the torchxrayvision wheel) built into manifests once per session.

A fixture reads the raw CSV with the standard library (the oracle the adapter is checked against), creates
a subset of the images on disk (every ``STEP``-th row; empty files, since adapters only check existence)
and builds the manifest once with ``keep_missing``, so that both the full-file counts and the
missing-image reports can be checked without a tree of 100k+ files.
"""

from __future__ import annotations

import pytest
from dataset_files import STEP, XRV_DATA, RealBuild, read_raw, touch

from raddino.data.datasets import build_manifest


@pytest.fixture(scope="session")
def nih_real(tmp_path_factory: pytest.TempPathFactory) -> RealBuild:
    root = tmp_path_factory.mktemp("nih")
    entry = XRV_DATA / "Data_Entry_2017_v2020.csv.gz"
    raw = read_raw(entry, ["Image Index", "Patient ID", "Finding Labels", "View Position"])
    # Kaggle's layout: images_001/images/..., images_002/images/...
    paths = {
        root / f"images_{1 + index // 10_000:03d}" / "images" / row["Image Index"]
        for index, row in enumerate(raw)
        if index % STEP == 0
    }
    touch(paths)
    manifest = build_manifest("nih-cxr", root, [entry, XRV_DATA / "BBox_List_2017.csv.gz"], keep_missing=True)
    return RealBuild(root, raw, {str(path) for path in paths}, manifest)


@pytest.fixture(scope="session")
def padchest_real(tmp_path_factory: pytest.TempPathFactory) -> RealBuild:
    root = tmp_path_factory.mktemp("padchest")
    labels = XRV_DATA / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz"
    raw = read_raw(labels, ["ImageID", "ImageDir", "PatientID", "StudyID", "Labels"])
    paths = {root / row["ImageDir"] / row["ImageID"] for row in raw[::STEP]}
    touch(paths)
    manifest = build_manifest("padchest", root, [labels], keep_missing=True)
    return RealBuild(root, raw, {str(path) for path in paths}, manifest)


@pytest.fixture(scope="session")
def chexpert_real(tmp_path_factory: pytest.TempPathFactory) -> RealBuild:
    root = tmp_path_factory.mktemp("chexpert")
    labels = XRV_DATA / "chexpert_train.csv.gz"
    raw = read_raw(labels, ["Path", "Pneumonia", "Atelectasis", "No Finding"])
    paths = {root / row["Path"] for row in raw[::STEP]}  # --root is the folder holding CheXpert-v1.0-small
    touch(paths)
    manifest = build_manifest("chexpert", root, [labels], keep_missing=True)
    return RealBuild(root, raw, {str(path) for path in paths}, manifest)


@pytest.fixture(scope="session")
def vindr_real(tmp_path_factory: pytest.TempPathFactory) -> RealBuild:
    root = tmp_path_factory.mktemp("vindr")
    labels = XRV_DATA / "vinbigdata-train.csv.gz"
    raw = read_raw(labels, ["image_id", "rad_id", "class_name", "x_min"])
    images = sorted({row["image_id"] for row in raw})
    paths = {root / "train" / f"{image}.dicom" for image in images[::STEP]}
    touch(paths)
    manifest = build_manifest("vindr-cxr", root, [labels], keep_missing=True)
    return RealBuild(root, raw, {str(path) for path in paths}, manifest)


@pytest.fixture(scope="session")
def rsna_real(tmp_path_factory: pytest.TempPathFactory) -> RealBuild:
    root = tmp_path_factory.mktemp("rsna")
    labels = XRV_DATA / "kaggle_stage_2_train_labels.csv.zip"
    raw = read_raw(labels, ["patientId", "Target", "x"])
    patients = sorted({row["patientId"] for row in raw})
    paths = {root / "stage_2_train_images" / f"{patient}.dcm" for patient in patients[::STEP]}
    touch(paths)
    headers = XRV_DATA / "kaggle_stage_2_train_images_dicom_headers.csv.gz"
    manifest = build_manifest("rsna-pneumonia", root, [labels, headers], keep_missing=True)
    return RealBuild(root, raw, {str(path) for path in paths}, manifest)
