"""A labelled manifest with its cached frozen features and split by subject: read by probe and kNN."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raddino.data.splits import Splits, resolve_splits
from raddino.evaluate.labels import LabelError, UncertainPolicy, detect_label_columns, label_matrix
from raddino.features.cache import FeatureConfig, FeatureTable, extract_features
from raddino.io.manifest import ManifestError, load_inputs

logger = logging.getLogger(__name__)


@dataclass
class LabelledFeatures:
    """Rows that have features and at least one known label, in manifest order."""

    ids: list[str]
    paths: list[Path]
    """Image files, aligned with ``ids``."""
    names: list[str]
    """Finding (label column) names."""
    labels: np.ndarray
    """(N, C) 0/1, NaN where missing."""
    table: FeatureTable
    splits: Splits
    feature_file: Path
    embedded_now: int
    """Images embedded by this call (0 when the cache already held them all)."""
    without_features: int
    """Manifest rows whose image could not be embedded (listed in the cache's errors CSV)."""
    without_labels: int

    def features(self, choice: str, split: str) -> np.ndarray:
        """(n, D) features of one split."""
        indices = getattr(self.splits, split)
        return self.table.matrix(choice, [self.ids[i] for i in indices])

    def split_labels(self, split: str) -> np.ndarray:
        return self.labels[getattr(self.splits, split)]


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
    table = FeatureTable.load(feature_file, choices)
    available = set(table.ids)
    has_features = np.asarray([row["id"] in available for row in manifest.rows], bool)
    has_label = ~np.isnan(all_labels).all(axis=1)
    keep = np.flatnonzero(has_features & has_label)
    if keep.size == 0:
        raise LabelError(f"{input}: no image has both features and a known label")
    rows = [manifest.rows[i] for i in keep]
    splits = resolve_splits(rows, manifest.columns, split_ratios, split_seed)
    result = LabelledFeatures(
        ids=[row["id"] for row in rows],
        paths=[manifest.resolve(row) for row in rows],
        names=names,
        labels=all_labels[keep],
        table=table,
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
