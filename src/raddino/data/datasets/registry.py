"""One entry per public dataset, and the two calls every command makes: build a manifest, write it.

>>> from raddino.data.datasets import build_manifest, write_dataset_manifest
>>> manifest = build_manifest("nih-cxr", "/data/nih")            # doctest: +SKIP
>>> write_dataset_manifest(manifest, "/data/nih/manifest.csv")   # doctest: +SKIP
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raddino.data.datasets import (
    brax,
    candid_ptx,
    chexpert,
    mimic,
    nih,
    padchest,
    rsna,
    vindr_cxr,
    vindr_ribcxr,
)
from raddino.data.datasets.images import drop_missing, relative_to_folder
from raddino.data.datasets.schema import DatasetError, DatasetManifest, Problem
from raddino.data.splits import assign_subject_splits, subjects_in_several_splits
from raddino.io.atomic import atomic_open
from raddino.io.failures import ERROR_COLUMNS


@dataclass(frozen=True)
class DatasetAdapter:
    """A public dataset raddino can make a manifest of.

    Attributes:
        name: Command-line name and ``source`` value (``nih-cxr``).
        title: The dataset's published name.
        build: ``build(root, metadata, **options) -> DatasetManifest``.
    """

    name: str
    title: str
    build: Callable[..., DatasetManifest]


DATASETS: dict[str, DatasetAdapter] = {
    adapter.name: adapter
    for adapter in (
        DatasetAdapter("mimic-cxr", "MIMIC-CXR", mimic.build),
        DatasetAdapter("chexpert", "CheXpert", chexpert.build),
        DatasetAdapter("nih-cxr", "NIH ChestX-ray14", nih.build),
        DatasetAdapter("padchest", "PadChest", padchest.build),
        DatasetAdapter("brax", "BRAX", brax.build),
        DatasetAdapter("vindr-cxr", "VinDr-CXR", vindr_cxr.build),
        DatasetAdapter("rsna-pneumonia", "RSNA Pneumonia", rsna.build),
        DatasetAdapter("candid-ptx", "CANDID-PTX", candid_ptx.build),
        DatasetAdapter("vindr-ribcxr", "VinDr-RibCXR", vindr_ribcxr.build),
    )
}


def build_manifest(
    dataset: str,
    root: str | Path,
    metadata: Sequence[str | Path] = (),
    *,
    check_images: bool = True,
    keep_missing: bool = False,
    split_fractions: Sequence[float] | None = None,
    seed: int = 0,
    **options: Any,
) -> DatasetManifest:
    """Read a public dataset's own metadata files into a harmonised manifest (nothing is written).

    Args:
        dataset: A key of ``DATASETS`` (``mimic-cxr``, ``chexpert``, ``nih-cxr``, ...).
        root: The dataset's folder as downloaded and unpacked.
        metadata: Metadata files to use instead of (or in addition to) those found under ``root``.
        check_images: Check every image exists (rows whose image is missing are reported as problems).
        keep_missing: Keep rows whose image is missing (still reported) instead of dropping them.
        split_fractions: Train/val/test fractions drawn by subject for rows without an official split.
        seed: Seed of that draw.
        **options: Dataset-specific options (``layout`` for MIMIC-CXR, ``min_votes`` for VinDr-CXR,
            ``masks_dir`` for VinDr-RibCXR, ``read_headers`` for RSNA, ``image_format`` for BRAX).

    Raises:
        DatasetError: unknown dataset or option, missing root, or malformed metadata (naming the file).
    """
    if dataset not in DATASETS:
        raise DatasetError(f"unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}")
    root = Path(root).expanduser().resolve()
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (expected the {DATASETS[dataset].title} folder)")
    files = [Path(path).expanduser().resolve() for path in metadata]
    for path in files:
        if not path.is_file():
            raise DatasetError(f"{path}: metadata file not found")
    try:
        manifest = DATASETS[dataset].build(root, files, **options)
    except TypeError as error:
        if "unexpected keyword argument" in str(error):
            raise DatasetError(f"{dataset}: {error}") from error
        raise
    if check_images:
        drop_missing(manifest, keep_missing=keep_missing)
    if split_fractions is not None:
        assigned = assign_subject_splits(manifest.rows, split_fractions, seed=seed)
        manifest.notes.append(f"{assigned} images without an official split drawn by subject (seed {seed})")
    for subject, splits in sorted(subjects_in_several_splits(manifest.rows).items()):
        manifest.problems.append(Problem(subject, "split", f"subject has images in {sorted(splits)}"))
    return manifest


def write_dataset_manifest(
    manifest: DatasetManifest, out: str | Path, errors: str | Path | None = None
) -> Path:
    """Write the manifest CSV (atomically) and its problems to an errors CSV beside it.

    Paths (``path`` and ``mask_*`` columns) inside the CSV's folder are written relative to it, so the
    folder can move as a whole; others stay absolute.

    Args:
        manifest: From :func:`build_manifest`.
        out: The manifest CSV.
        errors: The errors CSV (``path, stage, reason``); default ``OUT`` with ``.errors.csv``. The header
            alone when there is nothing to report, so a stale one never outlives a clean rerun.

    Returns:
        The errors CSV path.
    """
    out = Path(out).expanduser().resolve()
    folder = out.parent
    path_columns = [c for c in manifest.columns if c == "path" or c.startswith("mask_")]

    def relative_rows() -> Iterator[dict[str, str]]:
        for row in manifest.expanded_rows():
            for column in path_columns:
                row[column] = relative_to_folder(row[column], folder)
            yield row

    # Streamed row by row rather than through io.manifest.write_manifest, which lists its rows first:
    # PadChest expanded to its 193 finding columns would take gigabytes as a list.
    with atomic_open(out, "w") as handle:
        table = csv.DictWriter(handle, fieldnames=manifest.columns, extrasaction="raise")
        table.writeheader()
        table.writerows(relative_rows())
    # Written in one go (not through FailureLog, which syncs every line for long runs): a partial download
    # can leave 100k rows to report.
    errors_path = Path(errors) if errors else out.with_name(out.stem + ".errors.csv")
    with atomic_open(errors_path, "w") as handle:
        writer = csv.writer(handle)
        writer.writerow(ERROR_COLUMNS)
        for problem in manifest.problems:
            writer.writerow([problem.path, problem.stage, " ".join(problem.reason.split())])
    return errors_path
