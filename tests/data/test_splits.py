"""The one split rule: the same split of a manifest from every command, by subject, in any row order."""

from __future__ import annotations

import copy
import csv
import logging
import math
import random
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from raddino.cli import app
from raddino.data.splits import (
    SplitError,
    assign_subject_splits,
    draw_subject_splits,
    make_splits,
    parse_fractions,
    resolve_splits,
    subject_key,
    subjects_in_several_splits,
)
from raddino.io.manifest import load_inputs

FRACTIONS = (0.7, 0.15, 0.15)
COLUMNS = ["path", "id", "subject_id", "source", "split"]
NO_SPLIT = COLUMNS[:-1]  # a manifest without a split column: the rule draws every row


def _rows(subjects: range, source: str = "padchest", images: int = 2) -> list[dict[str, str]]:
    return [
        {
            "path": f"{s}-{i}.png",
            "id": f"{source}/{s}-{i}",
            "subject_id": str(s),
            "source": source,
            "split": "",
        }
        for s in subjects
        for i in range(images)
    ]


def _split_by_id(rows: list[dict[str, str]], columns: list[str], seed: int = 0) -> dict[str, str]:
    splits = resolve_splits(rows, columns, FRACTIONS, seed)
    return {rows[int(i)]["id"]: name for name in ("train", "val", "test") for i in getattr(splits, name)}


def _mixed_manifest() -> list[dict[str, str]]:
    """Two sources numbering their patients alike, 1-3 images each, no split column."""
    generator = np.random.default_rng(4)
    rows = []
    for source in ("nih-cxr", "padchest"):
        for subject in range(150):
            for image in range(int(generator.integers(1, 4))):
                rows.append(
                    {
                        "path": f"{source}/{subject}_{image}.png",
                        "id": f"{source}/{subject}_{image}",
                        "subject_id": str(subject),
                        "source": source,
                    }
                )
    return rows


def test_the_evaluation_path_and_the_dataset_manifest_path_give_the_same_split(tmp_path: Path) -> None:
    rows = _mixed_manifest()
    # raddino probe / knn / segment on a manifest without a split column: the rule draws
    evaluated = _split_by_id(copy.deepcopy(rows), NO_SPLIT, seed=3)
    # raddino manifest --split 70/15/15 --seed 3 writes the split column, which the evaluation then reads
    written = [{**row, "split": ""} for row in rows]
    assert assign_subject_splits(written, parse_fractions("70/15/15"), seed=3) == len(rows)
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(written)
    loaded = load_inputs(str(manifest))
    splits = resolve_splits(loaded.rows, loaded.columns, FRACTIONS, seed=3)
    assert splits.source == "manifest"
    from_file = {loaded.rows[int(i)]["id"]: n for n in ("train", "val", "test") for i in getattr(splits, n)}
    assert from_file == evaluated


def test_no_subject_falls_in_two_splits_and_sources_number_patients_apart() -> None:
    rows = _mixed_manifest()
    split_of = _split_by_id(rows, NO_SPLIT)
    splits_of_subject = defaultdict(set)
    for row in rows:
        splits_of_subject[subject_key(row)].add(split_of[row["id"]])
    assert all(len(found) == 1 for found in splits_of_subject.values())
    assert len(splits_of_subject) == 300  # patient 7 of NIH is not patient 7 of PadChest
    written = copy.deepcopy(rows)
    assign_subject_splits(written, FRACTIONS, only_empty=False)
    assert subjects_in_several_splits(written) == {}


def test_split_fractions_hold_within_binomial_bounds_by_subject() -> None:
    subjects = [f"s{i}" for i in range(4000)]
    for seed in range(3):
        counts = Counter(draw_subject_splits(subjects, FRACTIONS, seed).values())
        for name, fraction in zip(("train", "val", "test"), FRACTIONS, strict=True):
            expected = fraction * len(subjects)
            bound = 4.5 * math.sqrt(len(subjects) * fraction * (1 - fraction))  # ~1e-5 two-sided per count
            assert abs(counts[name] - expected) <= bound, (seed, name, counts)


def test_the_split_does_not_depend_on_row_order() -> None:
    for subjects in (range(300), range(12)):  # 12 subjects: the small-set fill runs too
        rows = _rows(subjects)
        first = _split_by_id(rows, NO_SPLIT)
        shuffled = rows[::-1]
        random.Random(0).shuffle(shuffled)
        assert _split_by_id(shuffled, NO_SPLIT) == first


def test_a_subject_keeps_its_split_when_more_subjects_arrive() -> None:
    rows = _rows(range(2000))
    assign_subject_splits(rows, FRACTIONS, seed=0)
    split_of = {row["subject_id"]: row["split"] for row in rows}
    more = _rows(range(3000))
    assign_subject_splits(more, FRACTIONS, seed=0)
    assert all(split_of[row["subject_id"]] == row["split"] for row in more if row["subject_id"] in split_of)
    reseeded = _rows(range(2000))
    assign_subject_splits(reseeded, FRACTIONS, seed=1)
    changed = sum(split_of[row["subject_id"]] != row["split"] for row in reseeded) / len(reseeded)
    assert 0.3 < changed < 0.6  # 1 - (0.7^2 + 2 * 0.15^2) = 0.465 expected for independent draws


def test_the_rule_is_pinned() -> None:
    """A split written today must be the split drawn by any later version (sha256 of seed/source/subject)."""
    drawn = draw_subject_splits(["padchest/1", "padchest/6", "padchest/11", "p1"], FRACTIONS, seed=0)
    assert drawn == {"padchest/1": "train", "padchest/6": "test", "padchest/11": "val", "p1": "train"}


def test_small_sets_get_every_split_and_too_few_subjects_are_refused() -> None:
    for count in range(3, 30):
        for seed in range(3):
            sizes = make_splits([f"s{i}" for i in range(count)], FRACTIONS, seed).sizes()
            assert min(sizes.values()) >= 1, (count, seed, sizes)
    with pytest.raises(SplitError, match=r"2 subject\(s\) cannot fill split\(s\) \['(val|test)'"):
        make_splits(["a", "a", "b"], FRACTIONS)
    assert make_splits(["a", "b"], (0.5, 0.5, 0.0)).sizes() == {"train": 1, "val": 1, "test": 0}


def test_manifest_splits_are_read_and_a_shared_subject_is_refused() -> None:
    rows = [
        {"id": "a", "subject_id": "p1", "split": "train"},
        {"id": "b", "subject_id": "p2", "split": "Validation"},
        {"id": "c", "subject_id": "p3", "split": "test"},
        {"id": "d", "subject_id": "p3", "split": "test"},
    ]
    splits = resolve_splits(rows, ["id", "subject_id", "split"])
    assert splits.sizes() == {"train": 1, "val": 1, "test": 2}
    assert splits.source == "manifest"
    rows[3]["split"] = "train"
    with pytest.raises(SplitError, match="subject 'p3' has images in both 'train' and 'test'"):
        resolve_splits(rows, ["id", "subject_id", "split"])


def test_an_unknown_split_value_or_a_split_without_rows_is_refused() -> None:
    rows = [{"id": "a", "split": "train"}, {"id": "b", "split": "tset"}, {"id": "c", "split": "val"}]
    with pytest.raises(SplitError, match=r"row 'b': split 'tset' is not one of \['train', 'val', 'test'\]"):
        resolve_splits(rows, ["id", "split"])
    rows[1]["split"] = "train"
    with pytest.raises(SplitError, match=r"column 'split' has no rows for split\(s\) \['test'\]"):
        resolve_splits(rows, ["id", "split"])


def test_a_row_with_an_empty_split_cell_is_in_no_split(caplog: pytest.LogCaptureFixture) -> None:
    rows = [
        {"id": "a", "split": "train"},
        {"id": "b", "split": ""},
        {"id": "c", "split": "val"},
        {"id": "d", "split": " Test "},
    ]
    with caplog.at_level(logging.INFO, logger="raddino.data.splits"):
        splits = resolve_splits(rows, ["id", "split"])
    assert [splits.train.tolist(), splits.val.tolist(), splits.test.tolist()] == [[0], [2], [3]]
    assert "1 row(s) with an empty 'split' cell are in no split" in caplog.text
    for row in rows:
        row["split"] = ""  # what raddino manifest writes without --split
    with pytest.raises(SplitError, match=r"no rows for split\(s\) \['train', 'val', 'test'\]; .*--split"):
        resolve_splits(rows, ["id", "split"])


def test_fractions_are_parsed_and_bad_ones_refused() -> None:
    assert parse_fractions("70/15/15") == pytest.approx((0.7, 0.15, 0.15))
    assert parse_fractions("0.8,0.1,0.1") == pytest.approx((0.8, 0.1, 0.1))
    for bad in ("70/30", "a/b/c", "-1/1/1", "0/0/0", "nan/1/1"):
        with pytest.raises(SplitError, match="split fractions"):
            parse_fractions(bad)
    with pytest.raises(SplitError, match=r"split fractions \[0.5, 0.2, 0.2\].*summing to 1"):
        make_splits([f"s{i}" for i in range(30)], (0.5, 0.2, 0.2))


def test_official_splits_are_kept_unless_asked() -> None:
    rows = _rows(range(10))
    rows[0]["split"] = "test"
    assert assign_subject_splits(rows, (1.0, 0.0, 0.0)) == 19
    assert rows[0]["split"] == "test"
    assert {row["split"] for row in rows[1:]} == {"train"}
    assign_subject_splits(rows, (0.0, 0.0, 1.0), only_empty=False)
    assert {row["split"] for row in rows} == {"test"}


def test_manifest_command_refuses_bad_fractions_in_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "manifest",
            "rsna-pneumonia",
            "--root",
            str(tmp_path),
            "--out",
            str(tmp_path / "m.csv"),
            "--split",
            "70/30",
        ],
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "error: split fractions '70/30': expected three non-negative numbers like 0.7,0.15,0.15"
    ]
