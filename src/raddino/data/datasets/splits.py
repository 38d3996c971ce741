"""Splits by subject: the paper's rule that no patient has images on both sides of an evaluation.

Official splits are kept as the datasets publish them; for datasets without one (PadChest, BRAX, RSNA,
CANDID-PTX) :func:`assign_subject_splits` draws train/val/test by subject (the paper's segmentation
protocol uses 70/15/15 by subject). The draw hashes the subject id, so it is the same on every machine, and
a subject keeps its split when more images are added later.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence

from raddino.data.datasets.schema import SPLITS, DatasetError


def parse_fractions(text: str) -> tuple[float, float, float]:
    """``"0.7,0.15,0.15"`` or ``"70/15/15"`` -> train, val and test fractions that sum to 1.

    Raises:
        DatasetError: not three non-negative numbers with a positive sum.
    """
    parts = [part for part in text.replace("/", ",").split(",") if part.strip()]
    try:
        values = [float(part) for part in parts]
    except ValueError as error:
        raise DatasetError(f"split fractions {text!r}: expected three numbers like 0.7,0.15,0.15") from error
    if len(values) != 3 or min(values) < 0 or sum(values) <= 0:
        raise DatasetError(
            f"split fractions {text!r}: expected three non-negative numbers like 0.7,0.15,0.15"
        )
    total = sum(values)
    return values[0] / total, values[1] / total, values[2] / total


def subject_draw(source: str, subject: str, seed: int) -> float:
    """A number in [0, 1) fixed by (seed, source, subject): the subject's place in the split."""
    digest = hashlib.sha256(f"{seed}/{source}/{subject}".encode()).hexdigest()
    return int(digest[:16], 16) / float(1 << 64)


def assign_subject_splits(
    rows: Iterable[dict[str, str]], fractions: Sequence[float], *, seed: int = 0, only_empty: bool = True
) -> int:
    """Give every row of a subject the same split, drawn by hashing the subject id.

    Args:
        rows: Harmonised rows (``source``, ``subject_id``, ``split``); modified in place. A row without a
            subject id is its own subject (its ``id`` stands in).
        fractions: Train, val and test fractions (normalised to sum to 1).
        seed: Changes the draw.
        only_empty: Keep official splits; assign only rows whose ``split`` is empty.

    Returns:
        The number of rows assigned.
    """
    total = float(sum(fractions))
    bounds = (fractions[0] / total, (fractions[0] + fractions[1]) / total)
    assigned = 0
    for row in rows:
        if only_empty and row.get("split"):
            continue
        draw = subject_draw(row.get("source", ""), row.get("subject_id") or row["id"], seed)
        row["split"] = SPLITS[0] if draw < bounds[0] else SPLITS[1] if draw < bounds[1] else SPLITS[2]
        assigned += 1
    return assigned


def subjects_in_several_splits(rows: Iterable[Mapping[str, str]]) -> dict[str, set[str]]:
    """Subjects (keyed ``source/subject``) whose images fall in more than one non-empty split."""
    splits_of: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row.get("split") and row.get("subject_id"):
            splits_of[f"{row.get('source', '')}/{row['subject_id']}"].add(row["split"])
    return {subject: splits for subject, splits in splits_of.items() if len(splits) > 1}


def check_split_names(rows: Iterable[Mapping[str, str]], where: str) -> None:
    """Raise ``DatasetError`` naming ``where`` if a split is not train, val, test or empty."""
    for row in rows:
        if row.get("split") and row["split"] not in SPLITS:
            raise DatasetError(f"{where}: split {row['split']!r} of {row['id']} is not one of {list(SPLITS)}")
