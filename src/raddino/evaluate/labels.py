"""Finding labels from manifest columns: 0/1 per image and finding, NaN where a label is missing.

Accepted cells: ``1``/``1.0``/``true``/``yes``/``positive`` and ``0``/``0.0``/``false``/``no``/``negative``;
an empty cell (or ``nan``) is missing. ``-1`` marks an uncertain label (CheXpert's convention) and is read
as missing unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np

from raddino.io.manifest import RESERVED_COLUMNS

UncertainPolicy = Literal["missing", "positive", "negative"]
_POSITIVE = {"1", "1.0", "true", "yes", "positive"}
_NEGATIVE = {"0", "0.0", "false", "no", "negative"}
_MISSING = {"", "nan", "na", "none", "null"}
_UNCERTAIN = {"-1", "-1.0", "uncertain"}


class LabelError(ValueError):
    """A label column is absent or holds a value that is not a label; the message names it."""


def parse_label(value: str, column: str, row_id: str, uncertain: UncertainPolicy = "missing") -> float:
    """One cell as 1.0, 0.0 or NaN (missing)."""
    text = value.strip().lower()
    if text in _POSITIVE:
        return 1.0
    if text in _NEGATIVE:
        return 0.0
    if text in _MISSING:
        return float("nan")
    if text in _UNCERTAIN:
        return {"missing": float("nan"), "positive": 1.0, "negative": 0.0}[uncertain]
    raise LabelError(f"column '{column}', row '{row_id}': {value!r} is not a label (1, 0, -1 or empty)")


def detect_label_columns(rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> list[str]:
    """Columns whose every cell parses as a label and that hold at least one positive."""
    found = []
    for column in columns:
        if column in RESERVED_COLUMNS or column.startswith("mask_"):
            continue
        cells = {row.get(column, "").strip().lower() for row in rows}
        if cells <= _POSITIVE | _NEGATIVE | _MISSING | _UNCERTAIN and cells & _POSITIVE:
            found.append(column)
    return found


def label_matrix(
    rows: Sequence[Mapping[str, str]],
    columns: Sequence[str],
    names: Sequence[str],
    uncertain: UncertainPolicy = "missing",
) -> np.ndarray:
    """(N, C) float32 labels of ``names`` for ``rows``, NaN where missing.

    Raises:
        LabelError: a name is not a column, or a cell is not a label.
    """
    for name in names:
        if name not in columns:
            raise LabelError(f"no label column '{name}' in the manifest (columns: {', '.join(columns)})")
    matrix = np.empty((len(rows), len(names)), np.float32)  # (N, C)
    for index, row in enumerate(rows):
        for position, name in enumerate(names):
            matrix[index, position] = parse_label(row.get(name, ""), name, row["id"], uncertain)
    return matrix
