"""Merging dataset manifests into one pre-training manifest, minus every evaluation subject.

The release excluded its evaluation images from pre-training; a subject-level exclusion is stricter and is
what keeps an encoder from having seen a test patient's other films. A row is dropped when its subject
appears in an evaluation manifest (matched as ``(source, subject_id)`` when the evaluation row names its
source, else by ``subject_id`` alone) or when its image file is one of the evaluation images.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from raddino.data.datasets.counts import SourceCounts, count_sources
from raddino.data.datasets.images import relative_to_folder
from raddino.data.datasets.schema import HARMONISED_COLUMNS, canonical_view, frontal_flag
from raddino.io.manifest import Manifest, read_manifest, write_manifest

EXCLUDED, NOT_FRONTAL, DUPLICATE = "excluded", "not frontal", "duplicate"


@dataclass
class MergeResult:
    """A merged manifest before it is written.

    Attributes:
        rows: Kept rows; ``path`` and ``mask_*`` values absolute.
        columns: Harmonised columns first, then every other column in first-seen order.
        counts: Per source: kept images, subjects, views, and images dropped by reason.
    """

    rows: list[dict[str, str]]
    columns: list[str]
    counts: dict[str, SourceCounts] = field(default_factory=dict)


def _absolute_rows(manifest: Manifest) -> list[dict[str, str]]:
    rows = []
    for row in manifest.rows:
        row = dict(row)
        for column in manifest.columns:
            if (column == "path" or column.startswith("mask_")) and row.get(column):
                row[column] = str(manifest.resolve(row, column))
        if not row.get("source") and manifest.source is not None:
            row["source"] = manifest.source.stem
        rows.append(row)
    return rows


def _is_frontal(row: dict[str, str]) -> bool:
    flag = row.get("frontal", "").strip().lower()
    if flag in ("1", "true", "yes"):
        return True
    if flag in ("0", "false", "no"):
        return False
    return frontal_flag(canonical_view(row.get("view"))) == "1"


def merge_manifests(
    inputs: Sequence[str | Path], *, frontal_only: bool = False, exclude: Sequence[str | Path] = ()
) -> MergeResult:
    """Concatenate manifests, dropping evaluation subjects, duplicates and (optionally) non-frontal views.

    Args:
        inputs: Manifest CSVs (those of ``raddino manifest DATASET`` or any with a ``path`` column; a
            missing ``source`` is taken from the file name).
        frontal_only: Keep frontal images only (``frontal`` = 1, or a PA/AP view when ``frontal`` is empty).
        exclude: Evaluation manifests whose subjects and images must not be pre-trained on.

    Raises:
        raddino.io.manifest.ManifestError: an input cannot be read (naming the file).
    """
    excluded_pairs: set[tuple[str, str]] = set()
    excluded_subjects: set[str] = set()
    excluded_paths: set[str] = set()
    for path in exclude:
        evaluation = read_manifest(path)
        for row in _absolute_rows(evaluation):
            excluded_paths.add(row["path"])
            subject = row.get("subject_id", "")
            if subject and "source" in evaluation.columns:
                excluded_pairs.add((row["source"], subject))
            elif subject:
                excluded_subjects.add(subject)

    kept: list[dict[str, str]] = []
    columns: dict[str, None] = dict.fromkeys(HARMONISED_COLUMNS)
    dropped: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    seen_paths: set[str] = set()
    seen_ids: set[str] = set()
    for path in inputs:
        manifest = read_manifest(path)
        columns.update(dict.fromkeys(manifest.columns))
        for row in _absolute_rows(manifest):
            source, subject = row.get("source", ""), row.get("subject_id", "")
            if (
                row["path"] in excluded_paths
                or (source, subject) in excluded_pairs
                or subject in excluded_subjects
            ):
                dropped[source][EXCLUDED] += 1
            elif row["path"] in seen_paths:
                dropped[source][DUPLICATE] += 1
            elif frontal_only and not _is_frontal(row):
                dropped[source][NOT_FRONTAL] += 1
            else:
                if not row.get("frontal"):  # plain manifests: derive the flag from the view when there is one
                    row["frontal"] = frontal_flag(canonical_view(row.get("view")))
                seen_paths.add(row["path"])
                if row["id"] in seen_ids:  # ids of plain manifests may repeat across files
                    row["id"] = f"{source}/{row['id']}"
                seen_ids.add(row["id"])
                kept.append(row)
    counts = count_sources(kept)
    for source, reasons in dropped.items():
        counts.setdefault(source, SourceCounts(source)).dropped = dict(reasons)
    return MergeResult(kept, list(columns), counts)


def write_merged(result: MergeResult, out: str | Path) -> Path:
    """Write a merged manifest atomically, paths inside its folder made relative to it."""
    out = Path(out).expanduser().resolve()
    path_columns = [c for c in result.columns if c == "path" or c.startswith("mask_")]
    rows = (
        {**row, **{column: relative_to_folder(row.get(column, ""), out.parent) for column in path_columns}}
        for row in result.rows
    )
    return write_manifest(rows, out, result.columns)
