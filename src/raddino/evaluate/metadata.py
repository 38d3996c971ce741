"""``raddino metadata``: how much patient metadata a frozen encoder's embeddings reveal (paper Table 7).

For each target, a scikit-learn logistic regression on the frozen embeddings is scored by 5-fold
cross-validation (folds by subject, stratified by class), accuracy mean ± std over the folds. Sex is a binary
variable; age, weight and BMI are binned into 5 intervals. Any other column is taken as categorical.

Default bin edges (inner edges; 4 edges make 5 intervals, each closed on the left). The paper states
5 intervals but not the edges; these are the project's defaults, override them with ``bins``:

- age (years): 40, 55, 65, 75
- weight (kg): 60, 70, 80, 90
- BMI (kg/m²): 18.5, 25, 30, 35 (the WHO categories, obesity split at 35)

``binning: quantile`` uses the quintiles of the data instead (balanced classes) for those targets.
"""

from __future__ import annotations

import itertools
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from raddino.config import save_config
from raddino.data.splits import subjects_of
from raddino.evaluate.metrics import MeanStd, mean_std
from raddino.evaluate.results import encoder_name, format_mean_std, markdown_table, write_results
from raddino.features.cache import FeatureConfig, FeatureTable, extract_features
from raddino.io.manifest import ManifestError, load_inputs

logger = logging.getLogger(__name__)

DEFAULT_BINS: dict[str, list[float]] = {
    "age": [40.0, 55.0, 65.0, 75.0],
    "weight": [60.0, 70.0, 80.0, 90.0],
    "bmi": [18.5, 25.0, 30.0, 35.0],
}
_SEX = {"m": "M", "male": "M", "man": "M", "f": "F", "female": "F", "woman": "F"}


class MetadataError(ValueError):
    """A metadata column is absent or holds a value that cannot be used; the message names it."""


@dataclass
class MetadataConfig:
    """Settings of ``raddino metadata``."""

    input: str = ""
    """Manifest CSV with metadata columns (``sex``, ``age``, ``weight``, ``bmi``, ...)."""
    out: str = "metadata"
    """Output folder."""
    features: FeatureConfig = field(default_factory=FeatureConfig)
    feature: str = "cls"
    """Feature the regression reads (``cls``, ``patch_mean`` or ``cls+patch_mean``)."""
    targets: list[str] = field(default_factory=lambda: ["sex", "age", "weight", "bmi"])
    """Columns to predict; default targets absent from the manifest are skipped."""
    bins: dict[str, list[float]] = field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_BINS.items()}
    )
    """Inner bin edges of numeric targets (4 edges -> 5 intervals)."""
    binning: Literal["edges", "quantile"] = "edges"
    """edges: the edges given in ``bins``; quantile: the data's quintiles (balanced classes)."""
    folds: int = 5
    """Cross-validation folds, by subject (paper: 5)."""
    c: float = 1.0
    """Inverse regularisation strength of the logistic regression (scikit-learn's default)."""
    seed: int = 0
    """Seed of the fold assignment."""
    figure: bool = True
    """Write ``metadata.png`` (accuracy per target)."""

    def __post_init__(self) -> None:
        if self.folds < 2:
            raise ValueError(f"folds must be at least 2, got {self.folds}")
        if self.c <= 0:
            raise ValueError(f"c must be positive, got {self.c}")
        for name, edges in self.bins.items():
            if list(edges) != sorted(edges):
                raise ValueError(f"bins.{name}: edges must increase, got {edges}")


def bin_values(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Interval index of each value: 0 below ``edges[0]``, i for ``edges[i-1] <= v < edges[i]``."""
    return np.searchsorted(np.asarray(edges, np.float64), values, side="right")


def interval_names(edges: list[float]) -> list[str]:
    """``<40``, ``40–55``, ..., ``≥75``."""
    inner = [f"{low:g}–{high:g}" for low, high in itertools.pairwise(edges)]
    return [f"<{edges[0]:g}", *inner, f"≥{edges[-1]:g}"]


def target_classes(
    name: str, cells: list[str], ids: list[str], config: MetadataConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows with a value, class index per such row, class names) of one metadata column."""
    present = np.asarray([bool(cell.strip()) for cell in cells])
    values = [cell.strip() for cell in cells if cell.strip()]
    kept_ids = [row_id for row_id, keep in zip(ids, present, strict=True) if keep]
    if name.lower() == "sex":
        for row_id, value in zip(kept_ids, values, strict=True):
            if value.lower() not in _SEX:
                raise MetadataError(f"column '{name}', row '{row_id}': {value!r} is not M/F/male/female")
        labels = [_SEX[value.lower()] for value in values]
        names = ["F", "M"]
        return (
            np.flatnonzero(present),
            np.asarray([names.index(label) for label in labels]),
            np.asarray(names),
        )
    if name.lower() in config.bins:
        try:
            numbers = np.asarray([float(value) for value in values])
        except ValueError as error:
            raise MetadataError(f"column '{name}': {error}; numeric values are needed for binning") from error
        if config.binning == "quantile":
            edges = [float(edge) for edge in np.quantile(numbers, [0.2, 0.4, 0.6, 0.8])]
        else:
            edges = config.bins[name.lower()]
        return np.flatnonzero(present), bin_values(numbers, edges), np.asarray(interval_names(edges))
    names = sorted(set(values))  # a categorical column: its values are the classes
    return np.flatnonzero(present), np.asarray([names.index(value) for value in values]), np.asarray(names)


def _folds(
    labels: np.ndarray, groups: list[str], folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    from sklearn.model_selection import GroupKFold, StratifiedGroupKFold

    if len(set(groups)) < folds:
        raise MetadataError(f"{len(set(groups))} subjects cannot make {folds} folds by subject")
    dummy = np.zeros(len(labels))
    if np.bincount(labels).min(initial=folds) >= folds:
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
        return list(splitter.split(dummy, labels, groups))
    return list(GroupKFold(n_splits=folds).split(dummy, labels, groups))  # a class too rare to stratify


def cross_validate(
    features: np.ndarray, labels: np.ndarray, groups: list[str], config: MetadataConfig
) -> dict:
    """Accuracy of a logistic regression in each fold, and of always predicting the fold's majority class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    accuracies, baselines = [], []
    for train, test in _folds(labels, groups, config.folds, config.seed):
        if len(np.unique(labels[train])) < 2:
            predictions = np.full(len(test), labels[train][0])
        else:
            model = make_pipeline(StandardScaler(), LogisticRegression(C=config.c, max_iter=2000))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", category=UserWarning)
                model.fit(features[train], labels[train])
            predictions = model.predict(features[test])
        accuracies.append(float((predictions == labels[test]).mean()))
        majority = np.bincount(labels[train]).argmax()
        baselines.append(float((labels[test] == majority).mean()))
    return {"accuracy": mean_std(accuracies), "majority_baseline": mean_std(baselines), "folds": accuracies}


@dataclass
class MetadataResult:
    summary: dict[str, MeanStd]
    targets: dict[str, dict[str, Any]]
    outputs: dict[str, Path]
    seconds: float

    def __str__(self) -> str:
        parts = [f"{name} {format_mean_std(value, 3)}" for name, value in self.summary.items()]
        return "accuracy: " + "; ".join(parts) + f" -> {self.outputs['json']}"


def run_metadata(config: MetadataConfig) -> MetadataResult:
    """Predict each metadata target from frozen embeddings; writes ``metadata.{json,md,csv}``.

    Raises:
        MetadataError: no target column is present, or a value cannot be read.
    """
    started = time.perf_counter()
    manifest = load_inputs(config.input)
    if manifest.source is None or Path(manifest.source).is_dir():
        raise ManifestError(f"{config.input}: metadata needs a manifest CSV with metadata columns")
    targets = [name for name in config.targets if name in manifest.columns]
    if not targets:
        raise MetadataError(f"{config.input}: none of the target columns {config.targets} is in the manifest")
    for name in sorted(set(config.targets) - set(targets)):
        logger.warning("%s: no column '%s'; skipped", config.input, name)
    feature_file, _ = extract_features(config.input, config.features, [config.feature])
    table = FeatureTable.load(
        feature_file, [config.feature], config.features.storage, config.features.cache_dir
    )
    positions = table.ids.positions_of(manifest.ids())  # -1 where the image has no features
    rows = [row for row, position in zip(manifest.rows, positions, strict=True) if position >= 0]
    ids = [row["id"] for row in rows]
    subjects = subjects_of(rows)
    # scikit-learn fits on one array: the features are read into memory once, float32, contiguous.
    features = table.view(config.feature, positions[positions >= 0]).load()
    results: dict[str, dict[str, Any]] = {}
    for name in targets:
        keep, labels, classes = target_classes(name, [row.get(name, "") for row in rows], ids, config)
        scores = cross_validate(features[keep], labels, [subjects[i] for i in keep], config)
        counts = np.bincount(labels, minlength=len(classes))
        results[name] = {
            "classes": classes.tolist(),
            "counts": counts.tolist(),
            "images": len(keep),
            **scores,
        }
    summary = {f"accuracy/{name}": value["accuracy"] for name, value in results.items()}
    table_rows = [
        [
            name,
            ", ".join(value["classes"]),
            str(value["images"]),
            format_mean_std(value["accuracy"], 3),
            format_mean_std(value["majority_baseline"], 3),
        ]
        for name, value in results.items()
    ]
    encoder = encoder_name(config.features.model, config.features.embeddings)
    markdown = (
        f"# Metadata prediction: {encoder}\n\nLogistic regression on `{config.feature}`, {config.folds}-fold "
        f"cross-validation by subject; accuracy mean ± std over folds.\n\n"
        + markdown_table(["target", "classes", "images", "accuracy", "majority class"], table_rows)
    )
    details = {"feature": config.feature, "folds": config.folds, "targets": results}
    outputs = write_results(Path(config.out), "metadata", encoder, summary, details, markdown)
    outputs["config"] = save_config(config, Path(config.out) / "metadata_config.yaml")
    if config.figure:
        from raddino.evaluate.figures import bar_chart

        accuracies = {name: value["accuracy"] for name, value in results.items()}
        outputs["figure"] = bar_chart(
            Path(config.out) / "metadata.png", accuracies, f"Metadata: {encoder}", "accuracy"
        )
    return MetadataResult(summary, results, outputs, time.perf_counter() - started)
