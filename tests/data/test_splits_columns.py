"""Splits of a manifest read by column equal the splits of its rows, message for message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from raddino.data.splits import SplitError, resolve_splits
from raddino.io.manifest import read_manifest, write_manifest

FRACTIONS = (0.7, 0.15, 0.15)


def _write(tmp_path: Path, split: bool) -> Path:
    rows = [
        {
            "path": f"{source}/{subject}_{image}.png",
            "subject_id": str(subject) if subject % 7 else "",  # some rows are their own subject
            "source": source,
            **({"split": ("train", "Validation", " test ", "")[subject % 4]} if split else {}),
        }
        for source in ("nih-cxr", "padchest")
        for subject in range(60)
        for image in range(1 + subject % 3)
    ]
    return write_manifest(rows, tmp_path / "m.csv")


@pytest.mark.parametrize("split", [False, True])
def test_a_manifest_by_column_splits_as_its_rows(tmp_path: Path, split: bool) -> None:
    manifest = read_manifest(_write(tmp_path, split))
    by_column = resolve_splits(manifest, ratios=FRACTIONS, seed=3)
    by_rows = resolve_splits(manifest.rows, manifest.columns, FRACTIONS, seed=3)
    for name in ("train", "val", "test"):
        np.testing.assert_array_equal(getattr(by_column, name), getattr(by_rows, name))
    assert by_column.source == by_rows.source
    assert sum(by_column.sizes().values()) == len(manifest) - (
        manifest.column("split").count("") if split else 0
    )


def test_a_shared_subject_and_a_wrong_spelling_give_the_row_messages(tmp_path: Path) -> None:
    write_manifest(
        [
            {"path": "a.png", "subject_id": "p1", "split": "val"},
            {"path": "b.png", "subject_id": "p2", "split": "train"},
            {"path": "c.png", "subject_id": "p1", "split": "test"},
            {"path": "d.png", "subject_id": "p2", "split": "test"},
        ],
        tmp_path / "m.csv",
    )
    manifest = read_manifest(tmp_path / "m.csv")
    with pytest.raises(SplitError, match="subject 'p1' has images in both 'val' and 'test'") as caught:
        resolve_splits(manifest)
    with pytest.raises(SplitError) as by_rows:
        resolve_splits(manifest.rows, manifest.columns)
    assert str(caught.value) == str(by_rows.value)
    manifest.rows[2]["split"] = "tset"
    manifest.rows[3]["split"] = "trian"
    with pytest.raises(SplitError, match=r"^row 'c': split 'tset' is not one of"):
        resolve_splits(manifest)
