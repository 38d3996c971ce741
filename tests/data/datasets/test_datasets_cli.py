"""``raddino manifest DATASET`` and ``raddino manifest merge`` as a user runs them."""

from __future__ import annotations

from pathlib import Path

from dataset_files import copy_fixture, touch
from typer.testing import CliRunner

from raddino.cli import app
from raddino.io.manifest import read_manifest

runner = CliRunner()


def _brax(tmp_path: Path, skip_last: bool = False) -> Path:
    root = copy_fixture("brax", tmp_path / "brax")
    lines = (root / "master_spreadsheet_update.csv").read_text().splitlines()[1:]
    touch(root / line.split(",")[2] for line in lines[: -1 if skip_last else None])
    return root


def test_manifest_command_writes_the_csv_and_prints_the_table(tmp_path: Path) -> None:
    root = _brax(tmp_path)
    out = root / "manifest.csv"
    result = runner.invoke(
        app, ["manifest", "brax", "--root", str(root), "--out", str(out), "--split", "60/20/20"]
    )
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    assert len(manifest) == 5
    # written relative to the CSV's folder, so the dataset folder can move with its manifest
    assert manifest.rows[0]["path"] == "images/id_a1/Study_1001/Series_1/image-0001.png"
    assert {row["split"] for row in manifest.rows} <= {"train", "val", "test"}
    splits_of = {
        row["subject_id"]: {r["split"] for r in manifest.rows if r["subject_id"] == row["subject_id"]}
        for row in manifest.rows
    }
    assert all(len(splits) == 1 for splits in splits_of.values())
    table_line = next(line for line in result.output.splitlines() if line.startswith("brax "))
    assert table_line.split() == ["brax", "5", "3", "2", "1", "41,260"]  # images, subjects, frontal, lateral
    assert f"wrote {out} (5 images)" in result.output


def test_missing_images_are_counted_and_strict_fails(tmp_path: Path) -> None:
    root = _brax(tmp_path, skip_last=True)
    out = tmp_path / "brax.csv"
    result = runner.invoke(app, ["manifest", "brax", "-r", str(root), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"1 rows reported (1 missing): see {tmp_path / 'brax.errors.csv'}" in result.output
    assert len(read_manifest(out)) == 4
    strict = runner.invoke(app, ["manifest", "brax", "-r", str(root), "-o", str(out), "--strict"])
    assert strict.exit_code == 1


def test_bad_metadata_exits_2_with_the_file_named(tmp_path: Path) -> None:
    root = _brax(tmp_path)
    sheet = root / "master_spreadsheet_update.csv"
    sheet.write_text(sheet.read_text().replace("Manufacturer", "Manufacturer,Hospital", 1))
    result = runner.invoke(app, ["manifest", "brax", "-r", str(root), "-o", str(tmp_path / "x.csv")])
    assert result.exit_code == 2
    assert "error: " in result.output
    assert "master_spreadsheet_update.csv: unexpected columns ['Hospital']" in result.output
    assert not (tmp_path / "x.csv").exists()


def test_merge_command_excludes_and_filters(tmp_path: Path) -> None:
    root = _brax(tmp_path)
    runner.invoke(app, ["manifest", "brax", "-r", str(root), "-o", str(root / "manifest.csv")])
    evaluation = tmp_path / "eval.csv"
    evaluation.write_text("path,subject_id,source\nx.png,c3,brax\n")
    out = tmp_path / "pretrain.csv"
    result = runner.invoke(
        app,
        [
            "manifest",
            "merge",
            str(root / "manifest.csv"),
            "--out",
            str(out),
            "--frontal-only",
            "--exclude",
            str(evaluation),
        ],
    )
    assert result.exit_code == 0, result.output
    merged = read_manifest(out)
    assert [row["view"] for row in merged.rows] == ["PA", "AP"]  # LL and unknown dropped; c3 (RLD) excluded
    brax_line = next(line for line in result.output.splitlines() if line.startswith("brax "))
    assert brax_line.split() == ["brax", "2", "2", "2", "0", "1", "2", "41,260"]
    missing = runner.invoke(app, ["manifest", "merge", str(tmp_path / "none.csv"), "--out", str(out)])
    assert missing.exit_code == 2
    assert "none.csv" in missing.output
