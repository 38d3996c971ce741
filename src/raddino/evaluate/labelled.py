"""A labelled manifest with its cached frozen features and split by subject: read by probe and kNN.

What is kept is arrays only (labels, split indices, each row's position in the feature cache, ids and
paths as Arrow strings): the manifest's per-row dictionaries are dropped once read, and the features stay
in the cache's memory-mapped copy until a chunk of them is asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raddino.data.splits import Splits, resolve_splits
from raddino.evaluate.labels import LabelError, UncertainPolicy, detect_label_columns, label_matrix
from raddino.features.cache import FeatureConfig, FeatureTable, extract_features
from raddino.features.vectors import FeatureView, TextColumn
from raddino.io.manifest import ManifestError, load_inputs

logger = logging.getLogger(__name__)


@dataclass
class LabelledFeatures:
    """Rows that have features and at least one known label, in manifest order."""

    ids: TextColumn
    paths: TextColumn
    """Image files as the manifest gives them (relative ones from ``root``), aligned with ``ids``."""
    root: Path
    """The folder relative paths are taken from."""
    names: list[str]
    """Finding (label column) names."""
    labels: np.ndarray
    """(N, C) 0/1, NaN where missing."""
    table: FeatureTable
    rows: np.ndarray
    """(N,) each row's position in ``table``."""
    splits: Splits
    feature_file: Path
    embedded_now: int
    """Images embedded by this call (0 when the cache already held them all)."""
    without_features: int
    """Manifest rows whose image could not be embedded (listed in the cache's errors CSV)."""
    without_labels: int

    def view(self, choice: str, split: str) -> FeatureView:
        """The features of one split, read from the cache in chunks when asked."""
        return self.table.view(choice, self.rows[getattr(self.splits, split)])

    def features(self, choice: str, split: str) -> np.ndarray:
        """(n, D) float32 features of one split, in memory."""
        return self.view(choice, split).load()

    def split_labels(self, split: str) -> np.ndarray:
        return self.labels[getattr(self.splits, split)]

    def image_paths(self, indices: Sequence[int] | np.ndarray) -> list[Path]:
        """Absolute image files of the rows at ``indices``."""
        found = [Path(self.paths[int(index)]) for index in indices]
        return [path if path.is_absolute() else self.root / path for path in found]


def load_labelled(
    input: str | Path,
    features: FeatureConfig,
    choices: Sequence[str],
    label_names: Sequence[str] = (),
    uncertain: UncertainPolicy = "missing",
    split_ratios: Sequence[float] = (0.7, 0.15, 0.15),
    split_seed: int = 0,
) -> LabelledFeatures:
    """Extract (or reuse) features of a labelled manifest and split its rows by subject.

    Raises:
        ManifestError, LabelError, FeatureError, SplitError: with the file, column or subject at fault.
    """
    manifest = load_inputs(input)
    if manifest.source is None or Path(manifest.source).is_dir():
        raise ManifestError(f"{input}: evaluation needs a manifest CSV with label columns, not a folder")
    names = list(label_names) or detect_label_columns(manifest.rows, manifest.columns)
    if not names:
        raise LabelError(f"{input}: no label columns found; name them with 'labels'")
    all_labels = label_matrix(manifest.rows, manifest.columns, names, uncertain)  # checks every cell first
    feature_file, embedded_now = extract_features(input, features, choices)
    table = FeatureTable.load(feature_file, choices, features.storage, features.cache_dir)
    positions = table.ids.positions_of(manifest.ids())  # (rows,) -1 where the image has no features
    has_features = positions >= 0
    has_label = ~np.isnan(all_labels).all(axis=1)
    keep = np.flatnonzero(has_features & has_label)
    if keep.size == 0:
        raise LabelError(f"{input}: no image has both features and a known label")
    rows = [manifest.rows[i] for i in keep]
    splits = resolve_splits(rows, manifest.columns, split_ratios, split_seed)
    result = LabelledFeatures(
        ids=TextColumn([row["id"] for row in rows]),
        paths=TextColumn([row["path"] for row in rows]),
        root=manifest.root,
        names=names,
        labels=all_labels[keep],
        table=table,
        rows=positions[keep],
        splits=splits,
        feature_file=feature_file,
        embedded_now=embedded_now,
        without_features=int((~has_features).sum()),
        without_labels=int((has_features & ~has_label).sum()),
    )
    logger.info(
        "%d images with features and labels (%d without features, %d without labels); splits %s (%s)",
        len(rows),
        result.without_features,
        result.without_labels,
        splits.sizes(),
        splits.source,
    )
    return result
