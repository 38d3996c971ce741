from __future__ import annotations

import math

import numpy as np
import pytest

from raddino.evaluate.labels import LabelError, detect_label_columns, label_matrix, parse_label
from raddino.evaluate.splits import SplitError, make_splits, resolve_splits, splits_from_column


def _subjects(count: int) -> list[str]:
    rng = np.random.default_rng(1)
    return [f"s{int(value)}" for value in rng.integers(0, count // 3, count)]


def test_made_splits_never_share_a_subject_and_follow_the_ratios() -> None:
    subjects = _subjects(300)
    splits = make_splits(subjects, (0.7, 0.15, 0.15), seed=3)
    sets = [{subjects[i] for i in getattr(splits, name)} for name in ("train", "val", "test")]
    assert not sets[0] & sets[1]
    assert not sets[0] & sets[2]
    assert not sets[1] & sets[2]
    assert sorted(np.concatenate([splits.train, splits.val, splits.test]).tolist()) == list(range(300))
    assert len(splits.train) == pytest.approx(210, abs=12)
    assert len(splits.test) == pytest.approx(45, abs=12)


def test_the_same_seed_gives_the_same_splits_and_another_seed_others() -> None:
    subjects = _subjects(120)
    first, again, other = (
        make_splits(subjects, seed=0),
        make_splits(subjects, seed=0),
        make_splits(subjects, seed=1),
    )
    assert np.array_equal(first.test, again.test)
    assert not np.array_equal(first.test, other.test)


def test_manifest_splits_are_read_and_a_shared_subject_is_refused() -> None:
    rows = [
        {"id": "a", "subject_id": "p1", "split": "train"},
        {"id": "b", "subject_id": "p2", "split": "Validation"},
        {"id": "c", "subject_id": "p3", "split": "test"},
        {"id": "d", "subject_id": "p3", "split": "test"},
    ]
    splits = resolve_splits(rows, ["id", "subject_id", "split"])
    assert splits.sizes() == {"train": 1, "val": 1, "test": 2}
    rows[3]["split"] = "train"
    with pytest.raises(SplitError, match="subject 'p3'"):
        splits_from_column(rows)


def test_bad_ratios_are_refused() -> None:
    with pytest.raises(SplitError, match="ratios"):
        make_splits(_subjects(30), (0.5, 0.2, 0.2))


def test_labels_parse_missing_and_uncertain_cells() -> None:
    assert parse_label("1", "x", "r") == 1.0
    assert parse_label(" False ", "x", "r") == 0.0
    assert math.isnan(parse_label("", "x", "r"))
    assert math.isnan(parse_label("-1", "x", "r"))
    assert parse_label("-1", "x", "r", uncertain="positive") == 1.0
    with pytest.raises(LabelError, match="column 'x', row 'r'"):
        parse_label("maybe", "x", "r")


def test_label_columns_are_detected_and_read() -> None:
    rows = [
        {"path": "a.png", "id": "a", "effusion": "1", "age": "61", "mask_heart": "m.png", "split": "train"},
        {"path": "b.png", "id": "b", "effusion": "", "age": "40", "mask_heart": "n.png", "split": "test"},
    ]
    columns = ["path", "id", "effusion", "age", "mask_heart", "split"]
    assert detect_label_columns(rows, columns) == ["effusion"]
    matrix = label_matrix(rows, columns, ["effusion"])
    assert matrix[0, 0] == 1.0
    assert math.isnan(matrix[1, 0])
    with pytest.raises(LabelError, match="no label column 'nodule'"):
        label_matrix(rows, columns, ["nodule"])
