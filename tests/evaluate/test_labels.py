"""Label cells and label columns of a manifest (splits: tests/data/test_splits.py)."""

from __future__ import annotations

import math

import pytest

from raddino.evaluate.labels import LabelError, detect_label_columns, label_matrix, parse_label


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
