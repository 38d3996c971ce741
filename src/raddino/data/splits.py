"""Train / validation / test splits by subject: one rule for every command.

Images of one subject never fall in two splits: a model that saw a patient's earlier X-ray would be
graded on a near-copy (paper §4: every split is made by subject).

The rule, the same for ``raddino manifest --split``, ``probe``, ``knn`` and ``segment`` (``metadata``
cross-validates in folds grouped by the same subject keys):

1. A manifest with a ``split`` column is split as the column says (``train``, ``val``, ``test``;
   ``validation``, ``valid``, ``dev``, ``training`` and ``testing`` are read as those); a row whose cell is
   empty is in no split. Official splits are kept as the datasets publish them; ``raddino manifest
   --split`` fills the empty cells by step 2, so the column it writes is the split the others draw.
2. Without the column, every row takes its subject's draw ``u``, the first 64 bits of
   ``sha256("{seed}/{subject}")`` over 2^64 (a number in [0, 1)), where the subject is
   ``SOURCE/SUBJECT_ID`` (``SUBJECT_ID`` in a manifest without a ``source`` column; a row without a
   subject id is its own subject, its ``id`` standing in). The subject goes to ``train`` if
   ``u < f_train``, to ``val`` if ``u < f_train + f_val``, else to ``test``.
3. A split asked for a positive fraction that drew no subject (only in sets of a few dozen subjects) is
   given the subject whose draw lies nearest its interval, taken from a split with more than one subject.

The draw depends on nothing but the subject and the seed, so a split is the same on every machine, in any
row order, and a subject keeps its split when more subjects are added (which matters when a test set
must stay unseen across versions of a data set). Fractions therefore hold in expectation, by subject:
with ``n`` subjects a split's count is binomial, about ``n f ± sqrt(n f (1 - f))``. An exact count per
split would need ranks over the whole set, and ranks move subjects across splits when the set grows.

>>> from raddino.data.splits import resolve_splits
>>> splits = resolve_splits(rows, columns, (0.7, 0.15, 0.15), seed=0)  # doctest: +SKIP
>>> splits.sizes(), splits.source                                       # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass

import numpy as np

from raddino.io.manifest import SPLIT_NAMES, SPLIT_SPELLINGS

logger = logging.getLogger(__name__)


class SplitError(ValueError):
    """Splits cannot be made or read as asked; the message names the column, row, subject or fractions."""


@dataclass(frozen=True)
class Splits:
    """Row indices (into the manifest, or the feature matrix aligned to it) of each split."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    source: str
    """``"manifest"`` when every row's split came from the ``split`` column, else how they were made."""

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}


def parse_fractions(text: str) -> tuple[float, float, float]:
    """``"0.7,0.15,0.15"`` or ``"70/15/15"`` -> train, val and test fractions that sum to 1.

    Raises:
        SplitError: not three non-negative numbers with a positive sum.
    """
    parts = [part for part in text.replace("/", ",").split(",") if part.strip()]
    try:
        values = [float(part) for part in parts]
    except ValueError as error:
        raise SplitError(f"split fractions {text!r}: expected three numbers like 0.7,0.15,0.15") from error
    if len(values) != 3 or min(values) < 0 or sum(values) <= 0 or not all(map(math.isfinite, values)):
        raise SplitError(f"split fractions {text!r}: expected three non-negative numbers like 0.7,0.15,0.15")
    total = sum(values)
    return values[0] / total, values[1] / total, values[2] / total


def check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    """``fractions`` as a train, val, test triple, refused unless three non-negative numbers summing to 1.

    Raises:
        SplitError: naming the fractions given.
    """
    values = [float(value) for value in fractions]
    if len(values) != 3 or min(values) < 0 or not math.isclose(sum(values), 1.0, abs_tol=1e-6):
        raise SplitError(
            f"split fractions {list(fractions)}: expected three non-negative numbers (train, val, test) "
            "summing to 1"
        )
    return values[0], values[1], values[2]


def subject_key(row: Mapping[str, str]) -> str:
    """The subject of a row: ``SOURCE/SUBJECT_ID``, or ``SUBJECT_ID`` without a source; ``id`` if no subject.

    The source is part of the key because merged data sets number their patients independently.
    """
    subject = row.get("subject_id") or row["id"]
    source = row.get("source") or ""
    return f"{source}/{subject}" if source else subject


def subjects_of(rows: Sequence[Mapping[str, str]]) -> list[str]:
    """The subject key (:func:`subject_key`) of each row."""
    return [subject_key(row) for row in rows]


def subject_draw(subject: str, seed: int) -> float:
    """A number in [0, 1) fixed by the subject key and the seed: the subject's place in the split."""
    digest = hashlib.sha256(f"{seed}/{subject}".encode()).hexdigest()
    return int(digest[:16], 16) / float(1 << 64)


def draw_subject_splits(subjects: Iterable[str], fractions: Sequence[float], seed: int = 0) -> dict[str, str]:
    """The split of each subject key by the module's rule (steps 2 and 3).

    Args:
        subjects: Subject keys (:func:`subject_key`); repeats are fine.
        fractions: Train, val and test fractions summing to 1.
        seed: Changes the draw.

    Returns:
        Subject key → ``train``, ``val`` or ``test``.

    Raises:
        SplitError: fractions not three non-negative numbers summing to 1.
    """
    train, val, test = check_fractions(fractions)
    intervals = {"train": (0.0, train), "val": (train, train + val), "test": (train + val, 1.0)}
    draws = {subject: subject_draw(subject, seed) for subject in set(subjects)}
    split_of = {
        subject: "train" if draw < train else "val" if draw < train + val else "test"
        for subject, draw in draws.items()
    }
    for name, wanted in zip(SPLIT_NAMES, (train, val, test), strict=True):
        counts = _counts(split_of)
        if wanted == 0 or counts[name] > 0:
            continue
        donors = [subject for subject, split in split_of.items() if counts[split] > 1]
        if not donors:
            break
        low, high = intervals[name]
        # nearest to the empty interval; ties (never in practice) by key, so the choice is order-free
        moved = min(donors, key=lambda s: (max(low - draws[s], draws[s] - high, 0.0), s))
        split_of[moved] = name
    return split_of


def _counts(split_of: Mapping[str, str]) -> dict[str, int]:
    counts = dict.fromkeys(SPLIT_NAMES, 0)
    for split in split_of.values():
        counts[split] += 1
    return counts


def canonical_split(value: str, where: str) -> str:
    """``train``, ``val``, ``test`` for a ``split`` cell (its accepted spellings), ``""`` for an empty one.

    Raises:
        SplitError: naming ``where`` and the value when it is none of them.
    """
    text = value.strip()
    if not text:
        return ""
    canonical = SPLIT_SPELLINGS.get(text.lower())
    if canonical is None:
        raise SplitError(f"{where}: split {value!r} is not one of {list(SPLIT_NAMES)} (or empty)")
    return canonical


def check_disjoint(subjects: Sequence[str], splits: Splits) -> None:
    """Raise naming a subject that appears in two splits."""
    owner: dict[str, str] = {}
    for name in SPLIT_NAMES:
        for index in getattr(splits, name):
            subject = subjects[int(index)]
            if owner.setdefault(subject, name) != name:
                raise SplitError(
                    f"subject '{subject}' has images in both '{owner[subject]}' and '{name}'; "
                    "splits must be made by subject"
                )


def make_splits(
    subjects: Sequence[str], ratios: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> Splits:
    """Splits of rows whose subject keys are ``subjects`` (one per row), drawn by the module's rule.

    Raises:
        SplitError: bad fractions, or too few subjects to give every split with a positive fraction one.
    """
    drawn = draw_subject_splits(subjects, ratios, seed)
    members: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for index, subject in enumerate(subjects):
        members[drawn[subject]].append(index)
    wanted = dict(zip(SPLIT_NAMES, check_fractions(ratios), strict=True))
    empty = [name for name in SPLIT_NAMES if wanted[name] > 0 and not members[name]]
    if empty:
        raise SplitError(
            f"{len(drawn)} subject(s) cannot fill split(s) {empty} by subject; add subjects or give the "
            "manifest a split column"
        )
    train, val, test = (np.asarray(members[name], np.int64) for name in SPLIT_NAMES)
    fractions = [round(float(r), 4) for r in ratios]
    return Splits(train, val, test, source=f"by subject, sha256 draw, fractions {fractions}, seed {seed}")


def resolve_splits(
    rows: Sequence[Mapping[str, str]],
    columns: Sequence[str],
    ratios: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    column: str = "split",
) -> Splits:
    """Splits of manifest rows: the manifest's ``split`` column when it has one, else the rule.

    A row whose cell in the column is empty is in no split (``raddino manifest --split`` fills them).

    Args:
        rows: Manifest rows (``id``, optional ``subject_id``, ``source``, ``split``).
        columns: The manifest's columns.
        ratios: Train, val and test fractions of the subjects (summing to 1), checked in either case.
        seed: Seed of the draw.
        column: Name of the split column.

    Raises:
        SplitError: an unknown split value, a subject in two splits, fractions that do not sum to 1, or a
            split left without rows; the message names the row, subject or split.
    """
    check_fractions(ratios)
    if column not in columns:
        return make_splits(subjects_of(rows), ratios, seed)
    members: dict[str, list[int]] = {name: [] for name in SPLIT_NAMES}
    for index, row in enumerate(rows):
        split = canonical_split(row.get(column, ""), f"row '{row['id']}'")
        if split:
            members[split].append(index)
    train, val, test = (np.asarray(members[name], np.int64) for name in SPLIT_NAMES)
    splits = Splits(train, val, test, source="manifest")
    check_disjoint(subjects_of(rows), splits)
    empty = [name for name in SPLIT_NAMES if not members[name]]
    if empty:
        raise SplitError(
            f"column '{column}' has no rows for split(s) {empty}; fill them (raddino manifest … --split "
            "70/15/15 draws the empty cells by subject) or drop the column to have them drawn"
        )
    unsplit = len(rows) - sum(splits.sizes().values())
    if unsplit:
        logger.info("%d row(s) with an empty '%s' cell are in no split", unsplit, column)
    return splits


def assign_subject_splits(
    rows: Iterable[MutableMapping[str, str]],
    fractions: Sequence[float],
    *,
    seed: int = 0,
    only_empty: bool = True,
) -> int:
    """Write each row's split by the module's rule: every row of a subject gets the same one.

    Args:
        rows: Harmonised rows (``source``, ``subject_id``, ``id``, ``split``); modified in place.
        fractions: Train, val and test fractions summing to 1.
        seed: Changes the draw.
        only_empty: Keep official splits; assign only rows whose ``split`` is empty.

    Returns:
        The number of rows assigned.

    Raises:
        SplitError: fractions not three non-negative numbers summing to 1.
    """
    chosen = [row for row in rows if not (only_empty and row.get("split"))]
    drawn = draw_subject_splits((subject_key(row) for row in chosen), fractions, seed)
    for row in chosen:
        row["split"] = drawn[subject_key(row)]
    return len(chosen)


def subjects_in_several_splits(rows: Iterable[Mapping[str, str]]) -> dict[str, set[str]]:
    """Subjects (keyed as :func:`subject_key`) whose images fall in more than one non-empty split."""
    splits_of: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row.get("split") and row.get("subject_id"):
            splits_of[subject_key(row)].add(row["split"])
    return {subject: splits for subject, splits in splits_of.items() if len(splits) > 1}
