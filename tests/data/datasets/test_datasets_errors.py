"""Bad metadata fails with the file and the columns named; images missing on disk are reported, not lost."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import pytest
from dataset_files import copy_fixture, touch

from raddino.data.datasets import DatasetError, build_manifest, write_dataset_manifest
from raddino.data.datasets.tables import TableSpec, iter_table


def _nih(tmp_path: Path, skip: tuple[str, ...] = ()) -> Path:
    root = copy_fixture("nih_cxr", tmp_path / "nih")
    lines = (root / "Data_Entry_2017.csv").read_text().splitlines()[1:]
    touch(root / "images" / line.split(",")[0] for line in lines if line.split(",")[0] not in skip)
    return root


def _rewrite(
    path: Path, edit: dict[str, str] | None = None, drop: str | None = None, add: str | None = None
) -> None:
    """Rewrite a CSV: set cells of the first data row, drop a column, or add a column."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = [c for c in rows[0] if c != drop] + ([add] if add else [])
    rows[0].update(edit or {})
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns, extrasaction="ignore", restval="x")
        writer.writeheader()
        writer.writerows(rows)


def test_unexpected_columns_are_named_with_the_file(tmp_path: Path) -> None:
    root = copy_fixture("chexpert", tmp_path / "CheXpert-v1.0")
    _rewrite(root / "train.csv", add="Comment")
    with pytest.raises(
        DatasetError, match=r"train\.csv: unexpected columns \['Comment'\] for a CheXpert labels"
    ):
        build_manifest("chexpert", root)


def test_missing_columns_are_named_with_the_columns_found(tmp_path: Path) -> None:
    root = copy_fixture("chexpert", tmp_path / "CheXpert-v1.0")
    _rewrite(root / "valid.csv", drop="Edema")
    with pytest.raises(
        DatasetError, match=r"valid\.csv: not a CheXpert labels .* missing columns \['Edema'\]"
    ):
        build_manifest("chexpert", root)


def test_a_bad_label_value_names_file_line_and_column(tmp_path: Path) -> None:
    root = copy_fixture("mimic_cxr", tmp_path / "mimic")
    _rewrite(root / "mimic-cxr-2.0.0-chexpert.csv", edit={"Cardiomegaly": "2.0"})
    with pytest.raises(
        DatasetError, match=r"chexpert\.csv: line 2, column 'Cardiomegaly': '2\.0' is not 1, 0, -1"
    ):
        build_manifest("mimic-cxr", root, check_images=False)


def test_an_unknown_nih_finding_and_a_malformed_padchest_label_are_errors(tmp_path: Path) -> None:
    root = _nih(tmp_path)
    _rewrite(root / "Data_Entry_2017.csv", edit={"Finding Labels": "Cardiomegaly|Covid"})
    with pytest.raises(DatasetError, match=r"Data_Entry_2017\.csv: line 2: unknown finding 'Covid'"):
        build_manifest("nih-cxr", root)
    padchest = tmp_path / "padchest"
    padchest.mkdir()
    (padchest / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv").write_text(
        "ImageID,ImageDir,StudyID,PatientID,Projection,Labels\na.png,0,s1,p1,PA,\"['normal'\"\n"
    )
    with pytest.raises(DatasetError, match=r"160K_01\.02\.19\.csv: line 2: Labels .* is not a list of terms"):
        build_manifest("padchest", padchest)


def test_missing_images_go_to_the_errors_csv_and_the_rest_to_the_manifest(tmp_path: Path) -> None:
    root = _nih(tmp_path, skip=("00000003_000.png",))
    manifest = build_manifest("nih-cxr", root)
    assert len(manifest.rows) == 5
    errors = write_dataset_manifest(manifest, tmp_path / "out" / "nih.csv")
    with open(errors, newline="") as handle:
        reported = list(csv.DictReader(handle))
    assert len(reported) == 1
    assert reported[0]["stage"] == "missing"
    assert reported[0]["path"].endswith("images/00000003_000.png")
    assert "nih-cxr/00000003_000" in reported[0]["reason"]
    kept = build_manifest("nih-cxr", root, keep_missing=True)
    assert len(kept.rows) == 6
    assert len(kept.problems) == 1
    touch([root / "images" / "00000003_000.png"])  # the download completed: a clean rerun removes the report
    write_dataset_manifest(build_manifest("nih-cxr", root), tmp_path / "out" / "nih.csv")
    assert errors.read_text() == "path,stage,reason\n"  # nothing to report: the header alone


def test_a_subject_across_official_splits_is_reported(tmp_path: Path) -> None:
    root = _nih(tmp_path)
    (root / "test_list.txt").write_text("00000003_000.png\n")
    (root / "train_val_list.txt").write_text("00000003_001.png\n")
    manifest = build_manifest("nih-cxr", root)
    assert [(p.stage, p.path) for p in manifest.problems] == [("split", "nih-cxr/3")]
    (root / "test_list.txt").write_text("00000003_001.png\n")
    with pytest.raises(DatasetError, match=r"test_list\.txt: 00000003_001\.png is in both"):
        build_manifest("nih-cxr", root)


def test_bad_calls_are_explained(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown dataset 'chexpert14'"):
        build_manifest("chexpert14", tmp_path)
    with pytest.raises(DatasetError, match="not a folder"):
        build_manifest("chexpert", tmp_path / "absent")
    with pytest.raises(DatasetError, match=r"no CheXpert labels .* file found .* pass it with --metadata"):
        build_manifest("chexpert", tmp_path)
    root = _nih(tmp_path)
    with pytest.raises(DatasetError, match=r"nih-cxr: .*unexpected keyword argument 'layout'"):
        build_manifest("nih-cxr", root, layout="jpg")
    with pytest.raises(DatasetError, match=r"absent\.csv: metadata file not found"):
        build_manifest("nih-cxr", root, [tmp_path / "absent.csv"])


def test_tables_reject_zips_with_several_csvs_and_rows_longer_than_the_header(tmp_path: Path) -> None:
    spec = TableSpec(kind="test", required=("a", "b"))
    archive = tmp_path / "two.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.writestr("one.csv", "a,b\n1,2\n")
        handle.writestr("two.csv", "a,b\n1,2\n")
    with pytest.raises(DatasetError, match=r"two\.zip: expected one CSV file inside the zip archive"):
        list(iter_table(archive, spec))
    long = tmp_path / "long.csv"
    long.write_text("a,b\n1,2\n1,2,3\n")
    with pytest.raises(DatasetError, match=r"long\.csv: line 3 has 3 values but the header has 2"):
        list(iter_table(long, spec))
    long.write_text("a,b,\n1,2,\n1,2\n")  # NIH's trailing comma: a blank column, short rows padded
    assert list(iter_table(long, spec)) == [(2, {"a": "1", "b": "2"}), (3, {"a": "1", "b": "2"})]
