"""Merging dataset manifests: evaluation subjects dropped, frontal filter, per-source table."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from dataset_files import copy_fixture, touch

from raddino.data.datasets import (
    HARMONISED_COLUMNS,
    build_manifest,
    format_counts,
    merge_manifests,
    write_dataset_manifest,
    write_merged,
)
from raddino.io.manifest import read_manifest


@pytest.fixture
def two_sources(tmp_path: Path) -> tuple[Path, Path]:
    """NIH and CheXpert fixture manifests written inside their dataset folders."""
    nih = copy_fixture("nih_cxr", tmp_path / "nih")
    touch(
        nih / "images" / line.split(",")[0]
        for line in (nih / "Data_Entry_2017.csv").read_text().splitlines()[1:]
    )
    chexpert = copy_fixture("chexpert", tmp_path / "chexpert" / "CheXpert-v1.0")
    for name in ("train.csv", "valid.csv"):
        touch(chexpert.parent / line.split(",")[0] for line in (chexpert / name).read_text().splitlines()[1:])
    (chexpert / "test_labels.csv").unlink()
    outputs = []
    for dataset, root in (("nih-cxr", nih), ("chexpert", chexpert.parent)):
        write_dataset_manifest(build_manifest(dataset, root), root / "manifest.csv")
        outputs.append(root / "manifest.csv")
    return outputs[0], outputs[1]


def _evaluation(path: Path, rows: list[dict[str, str]], columns: list[str]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_merge_keeps_every_image_once_with_unique_ids(two_sources: tuple[Path, Path], tmp_path: Path) -> None:
    result = merge_manifests([*two_sources, two_sources[0]])  # the NIH manifest given twice
    assert len(result.rows) == 6 + 6
    assert len({row["id"] for row in result.rows}) == 12
    assert result.counts["nih-cxr"].dropped == {"duplicate": 6}
    assert (result.counts["nih-cxr"].subjects, result.counts["chexpert"].subjects) == (4, 5)
    out = write_merged(result, tmp_path / "pretrain.csv")
    merged = read_manifest(out)
    assert all(merged.resolve(row).is_file() for row in merged.rows)
    assert {row["source"] for row in merged.rows} == {"nih-cxr", "chexpert"}
    assert tuple(merged.columns[:10]) == HARMONISED_COLUMNS


def test_merge_drops_evaluation_subjects_and_lateral_views(
    two_sources: tuple[Path, Path], tmp_path: Path
) -> None:
    # An evaluation set holding one image of NIH patient 3: both of that patient's images must go.
    evaluation = _evaluation(
        tmp_path / "eval.csv",
        [{"path": "elsewhere/x.png", "subject_id": "3", "source": "nih-cxr"}],
        ["path", "subject_id", "source"],
    )
    result = merge_manifests(two_sources, frontal_only=True, exclude=[evaluation])
    nih, chexpert = result.counts["nih-cxr"], result.counts["chexpert"]
    assert (nih.images, nih.dropped) == (4, {"excluded": 2})
    assert (chexpert.images, chexpert.dropped) == (4, {"not frontal": 2})  # the two laterals
    assert all(row["frontal"] == "1" for row in result.rows)
    assert "3" not in {row["subject_id"] for row in result.rows if row["source"] == "nih-cxr"}
    table = format_counts(result.counts, ["excluded", "not frontal"])
    lines = table.splitlines()
    assert lines[0].split() == [
        "Dataset",
        "Images",
        "Subjects",
        "Frontal",
        "Lateral",
        "Dropped:",
        "excluded",
        "Dropped:",
        "not",
        "frontal",
        "Release",
        "images",
    ]
    assert lines[2].split() == ["nih-cxr", "4", "3", "4", "0", "2", "0", "112,120"]
    assert lines[3].split() == ["chexpert", "4", "4", "4", "0", "0", "2", "223,648"]
    assert lines[-1].split() == ["Total", "8", "7", "8", "0", "2", "2", "-"]


def test_subjects_without_a_source_match_every_source(two_sources: tuple[Path, Path], tmp_path: Path) -> None:
    evaluation = _evaluation(
        tmp_path / "eval.csv", [{"path": "y.png", "subject_id": "patient00002"}], ["path", "subject_id"]
    )
    result = merge_manifests(two_sources, exclude=[evaluation])
    assert result.counts["chexpert"].dropped == {"excluded": 2}
    assert result.counts["nih-cxr"].dropped is None
    same_image = _evaluation(
        tmp_path / "same.csv",
        [{"path": str(two_sources[0].parent / "images" / "00000001_000.png")}],
        ["path"],
    )
    assert merge_manifests(two_sources, exclude=[same_image]).counts["nih-cxr"].dropped == {"excluded": 1}


def test_merge_of_plain_manifests_takes_the_source_from_the_file_name(tmp_path: Path) -> None:
    for name in ("hospital_a", "hospital_b"):
        folder = tmp_path / name
        touch([folder / "img1.png"])
        _evaluation(folder / f"{name}.csv", [{"path": "img1.png", "view": "PA"}], ["path", "view"])
    result = merge_manifests(
        [tmp_path / "hospital_a" / "hospital_a.csv", tmp_path / "hospital_b" / "hospital_b.csv"],
        frontal_only=True,
    )
    assert [row["source"] for row in result.rows] == ["hospital_a", "hospital_b"]
    assert [row["id"] for row in result.rows] == ["img1", "hospital_b/img1"]  # the repeated id made unique
    assert [row["frontal"] for row in result.rows] == ["1", "1"]  # derived from their PA view
