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
>>> splits = resolve_splits(manifest, ratios=(0.7, 0.15, 0.15), seed=0)  # doctest: +SKIP
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
import pyarrow as pa
import pyarrow.compute as pc

from raddino.io.manifest import SPLIT_NAMES, SPLIT_SPELLINGS, Manifest

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


def subject_keys(table: pa.Table) -> pa.Array:
    """:func:`subject_key` of every row of a manifest table (``id``, optional ``subject_id``, ``source``)."""
    ids = table.column("id").combine_chunks()
    subjects = ids
    if "subject_id" in table.column_names:
        given = table.column("subject_id").combine_chunks()
        subjects = pc.if_else(pc.greater(pc.utf8_length(given), 0), given, ids)
    if "source" not in table.column_names:
        return subjects
    source = table.column("source").combine_chunks()
    joined = pc.binary_join_element_wise(source, subjects, "/")
    return pc.if_else(pc.greater(pc.utf8_length(source), 0), joined, subjects)


def subject_draw(subject: str, seed: int) -> float:
    """A number in [0, 1) fixed by the subject key and the seed: the subject's place in the split."""
    digest = hashlib.sha256(f"{seed}/{subject}".encode()).hexdigest()
    return int(digest[:16], 16) / float(1 << 64)


def _draw_codes(subjects: Sequence[str], fractions: Sequence[float], seed: int) -> np.ndarray:
    """The split (0 train, 1 val, 2 test) of each distinct subject key by the module's steps 2 and 3."""
    train, val, test = check_fractions(fractions)
    # one sha256 per subject: Python's hashlib, there is no array form of it
    draws = np.fromiter((subject_draw(subject, seed) for subject in subjects), np.float64, len(subjects))
    codes = np.where(draws < train, 0, np.where(draws < train + val, 1, 2)).astype(np.int8)
    bounds = ((0.0, train), (train, train + val), (train + val, 1.0))
    for code, wanted in enumerate((train, val, test)):
        counts = np.bincount(codes, minlength=3)
        if wanted == 0 or counts[code] > 0:
            continue
        donors = np.flatnonzero(counts[codes] > 1)
        if not len(donors):
            break
        low, high = bounds[code]
        distance = np.maximum(np.maximum(low - draws[donors], draws[donors] - high), 0.0)
        nearest = donors[distance == distance.min()]
        # nearest to the empty interval; ties (never in practice) by key, so the choice is order-free
        moved = min(nearest.tolist(), key=lambda index: subjects[index])
        codes[moved] = code
    return codes


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
    distinct = sorted(set(subjects))
    codes = _draw_codes(distinct, fractions, seed)
    return {subject: SPLIT_NAMES[code] for subject, code in zip(distinct, codes.tolist(), strict=True)}


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


def _encode(keys: pa.Array | Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Each row's position in the list of distinct keys, and that list (first-seen order)."""
    array = keys if isinstance(keys, pa.Array) else pa.array(list(keys), pa.string())
    encoded = array.dictionary_encode()
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary.to_pylist()


def check_disjoint(subjects: pa.Array | Sequence[str], splits: Splits) -> None:
    """Raise naming a subject that appears in two splits (the first such row, train then val then test)."""
    codes, distinct = _encode(subjects)
    owner = np.full(len(distinct), len(SPLIT_NAMES), np.int64)  # the first split each subject is seen in
    for number, name in enumerate(SPLIT_NAMES):
        members = getattr(splits, name)
        if not len(members):
            continue
        owners = owner[codes[members]]
        clash = np.flatnonzero(owners < number)
        if len(clash):
            subject = distinct[int(codes[members[clash[0]]])]
            raise SplitError(
                f"subject '{subject}' has images in both '{SPLIT_NAMES[owners[clash[0]]]}' and '{name}'; "
                "splits must be made by subject"
            )
        owner[codes[members]] = np.minimum(owner[codes[members]], number)


def make_splits(
    subjects: pa.Array | Sequence[str], ratios: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> Splits:
    """Splits of rows whose subject keys are ``subjects`` (one per row), drawn by the module's rule.

    Raises:
        SplitError: bad fractions, or too few subjects to give every split with a positive fraction one.
    """
    codes, distinct = _encode(subjects)
    drawn = _draw_codes(distinct, ratios, seed)[codes]  # (rows,) 0 train, 1 val, 2 test
    members = {name: np.flatnonzero(drawn == number) for number, name in enumerate(SPLIT_NAMES)}
    wanted = dict(zip(SPLIT_NAMES, check_fractions(ratios), strict=True))
    empty = [name for name in SPLIT_NAMES if wanted[name] > 0 and not len(members[name])]
    if empty:
        raise SplitError(
            f"{len(distinct)} subject(s) cannot fill split(s) {empty} by subject; add subjects or give the "
            "manifest a split column"
        )
    train, val, test = (members[name].astype(np.int64) for name in SPLIT_NAMES)
    fractions = [round(float(r), 4) for r in ratios]
    return Splits(train, val, test, source=f"by subject, sha256 draw, fractions {fractions}, seed {seed}")


def _rows_table(rows: Sequence[Mapping[str, str]], names: Iterable[str]) -> pa.Table:
    columns = {name: pa.array([row.get(name) or "" for row in rows], pa.string()) for name in names}
    columns["id"] = pa.array([row["id"] for row in rows], pa.string())
    return pa.table(columns)


def resolve_splits(
    rows: Sequence[Mapping[str, str]] | Manifest,
    columns: Sequence[str] | None = None,
    ratios: Sequence[float] = (0.7, 0.15, 0.15),
    seed: int = 0,
    column: str = "split",
) -> Splits:
    """Splits of manifest rows: the manifest's ``split`` column when it has one, else the rule.

    A row whose cell in the column is empty is in no split (``raddino manifest --split`` fills them).

    Args:
        rows: Manifest rows (``id``, optional ``subject_id``, ``source``, ``split``), or a whole
            :class:`Manifest`, read by column (no dict per row).
        columns: The manifest's columns (a :class:`Manifest`'s own when omitted).
        ratios: Train, val and test fractions of the subjects (summing to 1), checked in either case.
        seed: Seed of the draw.
        column: Name of the split column.

    Raises:
        SplitError: an unknown split value, a subject in two splits, fractions that do not sum to 1, or a
            split left without rows; the message names the row, subject or split.
    """
    check_fractions(ratios)
    if columns is None:
        columns = rows.columns if isinstance(rows, Manifest) else []
    wanted = [name for name in ("subject_id", "source", column) if name in columns]
    table = rows.table if isinstance(rows, Manifest) else _rows_table(rows, wanted)
    if column not in columns:
        return make_splits(subject_keys(table), ratios, seed)
    values = table.column(column).combine_chunks()
    cells, spellings = _encode(values)
    canonical = []
    for spelling in spellings:  # a few distinct spellings; the first row of a wrong one is named
        try:
            canonical.append(canonical_split(spelling, ""))
        except SplitError:
            first = int(np.flatnonzero(cells == len(canonical))[0])
            canonical_split(spelling, f"row '{table.column('id')[first].as_py()}'")
    split_of = np.array([SPLIT_NAMES.index(name) if name else -1 for name in canonical], np.int64)[cells]
    train, val, test = (np.flatnonzero(split_of == number) for number in range(len(SPLIT_NAMES)))
    splits = Splits(train, val, test, source="manifest")
    check_disjoint(subject_keys(table), splits)
    empty = [name for name, size in splits.sizes().items() if not size]
    if empty:
        raise SplitError(
            f"column '{column}' has no rows for split(s) {empty}; fill them (raddino manifest … --split "
            "70/15/15 draws the empty cells by subject) or drop the column to have them drawn"
        )
    unsplit = len(table) - sum(splits.sizes().values())
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
