"""The pre-training images of a sweep: a pool kept apart from the evaluation's held-out subjects, and
nested subsets of it for the ``data-size`` sweep.

The pool is the ``--data`` manifest less every image whose subject (:func:`raddino.data.splits.subject_key`)
is in the evaluation manifest's validation or test split (split as ``probe`` splits it: the ``split``
column, else the subject draw with the probe's ratios and seed), and only its ``train.split`` rows when
the config sets one. So no encoder is pre-trained on an image of a patient it is graded on.

Subsets are whole subjects taken in the order of their draw (:func:`raddino.data.splits.subject_draw` with
the sweep's ``subset_seed``) until the subset holds the images asked for: a fraction ``f`` of the pool's
``n`` images asks for ``ceil(f n)``, a count for that many (at most the pool). A larger subset takes the
same subjects first and then more, so each subset contains every smaller one (Figure 2's protocol).
Subjects are never split, so a subset may hold a few images more than asked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from raddino.data.splits import canonical_split, resolve_splits, subject_draw, subject_key
from raddino.io.manifest import Manifest, load_inputs, write_manifest


def held_out_subjects(
    eval_manifest: str | Path, ratios: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> set[str]:
    """Subjects of the evaluation manifest's validation and test splits (as ``probe`` draws them)."""
    manifest = load_inputs(eval_manifest)
    splits = resolve_splits(manifest, ratios=ratios, seed=seed)
    rows = [manifest.rows[int(i)] for i in (*splits.val, *splits.test)]
    return {subject_key(row) for row in rows}


def _absolute_rows(manifest: Manifest) -> list[dict[str, str]]:
    # The pool is written elsewhere than the manifest: relative image paths must not move with it.
    return [{**row, "path": str(manifest.resolve(row))} for row in manifest.rows]


def write_pool(
    data: str | Path, out: str | Path, held_out: set[str], split: str | None = None
) -> tuple[Path, int, int]:
    """Write the pool manifest: ``data``'s rows (of ``split`` when given) whose subject is not held out.

    Returns:
        The file written, the images in it and the images left out for their subject.

    Raises:
        ValueError: no image is left; names the manifest.
    """
    manifest = load_inputs(data)
    rows = _absolute_rows(manifest)
    if split is not None:
        wanted = canonical_split(split, "train.split")
        rows = [row for row in rows if canonical_split(row.get("split", ""), str(data)) == wanted]
    kept = [row for row in rows if subject_key(row) not in held_out]
    if not kept:
        raise ValueError(f"{data}: no pre-training image left once the evaluation's subjects are held out")
    columns = list(dict.fromkeys(["path", "id", *manifest.columns]))
    return write_manifest(kept, out, columns), len(kept), len(rows) - len(kept)


def nested_subset(rows: Sequence[dict[str, str]], size: float, seed: int = 0) -> list[dict[str, str]]:
    """The rows of whole subjects, in their draw order, up to ``size`` images (a fraction or a count).

    Raises:
        ValueError: ``size`` not positive.
    """
    if size <= 0:
        raise ValueError(f"data-size {size}: must be positive")
    wanted = math.ceil(size * len(rows)) if size <= 1 else min(int(size), len(rows))
    by_subject: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_subject.setdefault(subject_key(row), []).append(row)
    order = sorted(by_subject, key=lambda subject: (subject_draw(subject, seed), subject))
    chosen: list[dict[str, str]] = []
    for subject in order:
        if len(chosen) >= wanted:
            break
        chosen += by_subject[subject]
    return chosen


def write_subset(pool: str | Path, out: str | Path, size: float, seed: int = 0) -> tuple[Path, int]:
    """Write the nested subset of ``size`` images of the pool manifest; returns the file and its images."""
    manifest = load_inputs(pool)
    rows = nested_subset(manifest.rows, size, seed)
    return write_manifest(rows, out, manifest.columns), len(rows)


__all__ = ["held_out_subjects", "nested_subset", "write_pool", "write_subset"]
