"""Manifests held by column: the same values and messages as a row-by-row reading, without a dict per row."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from raddino.io.manifest import ManifestError, default_id, default_ids, read_manifest


def test_default_ids_by_column_equal_pathlib_row_by_row(tmp_path: Path) -> None:
    paths = [
        "a.png", "a/b.PNG", "a.b.dcm", "1.2.840.113619.2.55", "x.tif.txt", ".png", "a/.png", "a//b.png",
        "./a.png", "a/./b.jpg", "../u/y.dcm", str(tmp_path / "in.dcm"), "/elsewhere/z.jpg", "a/",
        "dir.png/x", "a b/c d.jpeg", "é/ü.dicom", "a.JPG", "x/y.dcmx",
    ]  # fmt: skip
    expected = [default_id(tmp_path / path, tmp_path) for path in paths]
    assert default_ids(pa.array(paths), tmp_path).to_pylist() == expected


def test_rows_columns_and_iter_rows_agree(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text('path,label,report\na.png,1,"two\nlines"\nb.dcm,0\n', encoding="utf-8")
    manifest = read_manifest(tmp_path / "m.csv")
    expected = [
        {"path": "a.png", "id": "a", "label": "1", "report": "two\nlines"},
        {"path": "b.dcm", "id": "b", "label": "0", "report": ""},  # a missing cell is empty, as csv reads it
    ]
    assert list(manifest.iter_rows()) == expected
    assert list(manifest.iter_rows([1])) == expected[1:]
    assert manifest.column_array("label").to_pylist() == ["1", "0"]
    assert manifest.rows == expected
    manifest.rows[0]["label"] = "9"  # the dicts are the manifest once built
    assert manifest.column("label") == ["9", "0"]


def test_a_repeated_id_after_a_multiline_cell_names_the_right_lines(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text('path,id,report\na.png,x,"one\ntwo"\nb.png,x,\n', encoding="utf-8")
    with pytest.raises(ManifestError, match="id 'x' appears on lines 2 and 4; ids must be unique"):
        read_manifest(tmp_path / "m.csv")


def test_cells_that_look_like_numbers_or_nulls_stay_text(tmp_path: Path) -> None:
    # Arrow would read these as numbers or nulls; a manifest keeps every cell as written.
    (tmp_path / "m.csv").write_text("path,age,flag\n001.png,007,NA\n002.png,1e3,null\n", encoding="utf-8")
    manifest = read_manifest(tmp_path / "m.csv")
    assert manifest.column("age") == ["007", "1e3"]
    assert manifest.column("flag") == ["NA", "null"]
    assert manifest.ids() == ["001", "002"]
