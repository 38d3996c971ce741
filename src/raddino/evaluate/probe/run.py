"""``raddino probe``: multi-label linear probing of a frozen encoder, the paper's classification protocol.

Features are extracted once into the cache (:mod:`raddino.features.cache`); for every seed, one linear
head per (feature choice, learning rate) is trained in a single pass, the head with the best validation
macro AUPRC is kept, and its test AUPRC / AUROC per finding are recorded. The result is mean ± std over the
seeds (paper §4.2: 5 seeds, AUPRC per finding and macro). ``method: sklearn`` fits scikit-learn logistic
regressions instead, choosing the inverse regularisation ``C`` on validation; its L-BFGS fit does not depend
on a seed, so it runs once and reports no spread (a std over identical refits would be a made-up 0).

Each finished seed is saved under ``<out>/seeds/``; a rerun with the same settings reuses it.

The heads read the feature cache's memory-mapped vectors a mini-batch at a time (``method: linear``), so
memory stays about one copy of the features in the page cache plus a constant; ``method: sklearn`` needs
each split's features in memory as one array.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from raddino.config import config_to_dict, save_config
from raddino.evaluate.labelled import LabelledFeatures, load_labelled
from raddino.evaluate.labels import UncertainPolicy
from raddino.evaluate.metrics import MeanStd, auprc_per_label, auroc_per_label, macro, mean_std
from raddino.evaluate.probe.heads import HeadSpec, HeadTraining, train_linear_heads
from raddino.evaluate.results import encoder_name, format_mean_std, markdown_table, write_json, write_results
from raddino.features.cache import FeatureConfig

logger = logging.getLogger(__name__)


@dataclass
class ProbeConfig:
    """Settings of ``raddino probe``."""

    input: str = ""
    """Manifest CSV with label columns (and ``subject_id`` / ``split`` when known)."""
    out: str = "probe"
    """Output folder."""
    features: FeatureConfig = field(default_factory=FeatureConfig)
    labels: list[str] = field(default_factory=list)
    """Label columns to probe; default: every column holding only 0 / 1 / -1 / empty."""
    uncertain: UncertainPolicy = "missing"
    """How a -1 (uncertain) label counts."""
    method: Literal["linear", "sklearn"] = "linear"
    """linear: torch heads trained together (the paper's); sklearn: scikit-learn logistic regression."""
    feature_choices: list[str] = field(default_factory=lambda: ["cls", "cls+patch_mean"])
    """Features each head may read (``+`` concatenates); the best is picked on validation."""
    lrs: list[float] = field(default_factory=lambda: [1e-5, 5e-5, 1e-4, 5e-4, 1e-3])
    """Learning rates of the heads (the paper's 5e-5 among them)."""
    training: HeadTraining = field(default_factory=HeadTraining)
    augment: bool = False
    """Light augmentation: the encoder embeds a random affine view of every training image each epoch
    (``method: linear`` with ``features.model`` only; slow without a GPU)."""
    sklearn_cs: list[float] = field(default_factory=lambda: [0.01, 0.1, 1.0, 10.0])
    """Inverse regularisation strengths tried in ``sklearn`` mode."""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    """Seeds of the heads (one probe each); results are the mean ± std over them. ``method: sklearn`` is
    deterministic and fits once, with the first."""
    split_ratios: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    """Train / val / test shares when the manifest has no ``split`` column (made by subject)."""
    split_seed: int = 0
    """Seed of the split by subject when the manifest has no ``split`` column."""
    progress: bool = True
    """Show progress bars."""
    figure: bool = True
    """Write ``probe.png`` (AUPRC per finding)."""
    overwrite: bool = False
    """Recompute every seed instead of reusing finished ones."""

    def __post_init__(self) -> None:
        if not self.seeds:
            raise ValueError("seeds must list at least one seed")
        if not self.feature_choices:
            raise ValueError("feature_choices must list at least one feature")
        if self.method == "linear" and (not self.lrs or min(self.lrs) <= 0):
            raise ValueError(f"lrs must be positive numbers, got {self.lrs}")
        if self.augment and self.method != "linear":
            raise ValueError("augment needs method 'linear' (the scikit-learn mode fits on cached features)")
        if self.method == "sklearn" and (not self.sklearn_cs or min(self.sklearn_cs) <= 0):
            raise ValueError(f"sklearn_cs must be positive numbers, got {self.sklearn_cs}")


@dataclass
class ProbeResult:
    """What a probe run measured; ``summary`` holds the table columns (test set, over seeds)."""

    summary: dict[str, MeanStd]
    auprc: dict[str, MeanStd]
    auroc: dict[str, MeanStd]
    seeds: list[dict[str, Any]]
    outputs: dict[str, Path]
    embedded_now: int
    seconds: float
    deterministic: bool = False
    """One fit that no seed changes (``method: sklearn``): the summary's std is NaN, not a spread."""

    def __str__(self) -> str:
        macro_auprc = self.summary["macro_auprc"]
        runs = "one deterministic fit" if self.deterministic else f"over {macro_auprc.count} seed(s)"
        return (
            f"macro AUPRC {format_mean_std(macro_auprc)} {runs}; "
            f"macro AUROC {format_mean_std(self.summary['macro_auroc'])} -> {self.outputs['json']}"
        )


def _evaluate(scores: np.ndarray, labels: np.ndarray, names: list[str]) -> dict[str, Any]:
    auprc = auprc_per_label(scores, labels, names)
    auroc = auroc_per_label(scores, labels, names)
    return {"auprc": auprc, "auroc": auroc, "macro_auprc": macro(auprc), "macro_auroc": macro(auroc)}


def _linear_seed(data: LabelledFeatures, config: ProbeConfig, seed: int) -> dict[str, Any]:
    choices = list(dict.fromkeys(config.feature_choices))
    specs = [HeadSpec(choice, lr) for choice in choices for lr in config.lrs]
    # Views of the memory-mapped cache: mini-batches and prediction blocks are read as they come.
    split = {name: {c: data.view(c, name) for c in choices} for name in ("train", "val", "test")}
    augmented = None
    if config.augment:
        from raddino.evaluate.probe.augment import AugmentedTrainFeatures

        train_paths = data.image_paths(data.splits.train)
        augmented = AugmentedTrainFeatures(train_paths, choices, config.features, seed)
    trained = train_linear_heads(
        split["train"],
        torch.from_numpy(data.split_labels("train")),
        specs,
        config.training,
        seed,
        config.progress,
        epoch_features=augmented,
    )
    val_scores = trained.predict(split["val"])
    val_metric = [macro(auprc_per_label(s, data.split_labels("val"), data.names)) for s in val_scores]
    best = int(np.nanargmax(np.nan_to_num(val_metric, nan=-1.0)))
    test_scores = trained.predict(split["test"])[best]
    return {
        "seed": seed,
        "selected": specs[best].name,
        "validation_macro_auprc": {spec.name: value for spec, value in zip(specs, val_metric, strict=True)},
        "test": _evaluate(test_scores, data.split_labels("test"), data.names),
    }


def _sklearn_scores(
    train_x: np.ndarray, train_y: np.ndarray, x: list[np.ndarray], c: float, seed: int
) -> list:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    outputs = [np.full((len(values), train_y.shape[1]), 0.5) for values in x]
    for column in range(train_y.shape[1]):
        known = ~np.isnan(train_y[:, column])  # missing labels are left out of the fit
        truth = train_y[known, column]
        if truth.size == 0 or truth.min() == truth.max():
            continue  # one class only: no classifier, constant scores
        model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))
        model.fit(train_x[known], truth)
        for output, values in zip(outputs, x, strict=True):
            output[:, column] = model.predict_proba(values)[:, 1]
    return outputs


def _sklearn_seed(data: LabelledFeatures, config: ProbeConfig, seed: int) -> dict[str, Any]:
    candidates = []
    for choice in dict.fromkeys(config.feature_choices):
        train_x, val_x, test_x = (data.features(choice, name) for name in ("train", "val", "test"))
        for c in config.sklearn_cs:
            val_scores, test_scores = _sklearn_scores(
                train_x, data.split_labels("train"), [val_x, test_x], c, seed
            )
            value = macro(auprc_per_label(val_scores, data.split_labels("val"), data.names))
            candidates.append((f"{choice} C={c:g}", value, test_scores))
    best = max(candidates, key=lambda item: -1.0 if np.isnan(item[1]) else item[1])
    return {
        "seed": seed,
        "selected": best[0],
        "validation_macro_auprc": {name: value for name, value, _ in candidates},
        "test": _evaluate(best[2], data.split_labels("test"), data.names),
    }


def _fingerprint(config: ProbeConfig, data: LabelledFeatures) -> str:
    settings = config_to_dict(config)
    for key in ("out", "overwrite", "progress", "figure", "seeds"):
        settings.pop(key)
    if settings["features"].get("storage") == "float32":  # the default: seeds of earlier runs still match
        settings["features"].pop("storage")
    settings["feature_file"] = str(data.feature_file.resolve())
    settings["splits"] = [getattr(data.splits, name).tolist() for name in ("train", "val", "test")]
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _run_seed(data: LabelledFeatures, config: ProbeConfig, seed: int, fingerprint: str) -> dict[str, Any]:
    path = Path(config.out) / "seeds" / f"seed-{seed}.json"
    if path.exists() and not config.overwrite:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("fingerprint") == fingerprint:
            logger.info("seed %d: reusing %s", seed, path)
            return saved
    result = (
        _linear_seed(data, config, seed) if config.method == "linear" else _sklearn_seed(data, config, seed)
    )
    write_json(path, {**result, "fingerprint": fingerprint})
    return json.loads(path.read_text(encoding="utf-8"))


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _seeds_that_matter(config: ProbeConfig) -> list[int]:
    """The seeds to fit: all for the torch heads; the first for scikit-learn's L-BFGS, which uses none."""
    if config.method == "sklearn":
        if len(config.seeds) > 1:
            logger.info(
                "method sklearn is deterministic: one fit (seed %d), not %d",
                config.seeds[0],
                len(config.seeds),
            )
        return config.seeds[:1]
    return list(config.seeds)


def _over_runs(values: list[float], deterministic: bool) -> MeanStd:
    """Mean ± std over seeds; a deterministic method's single value has no std (NaN, written as null)."""
    summary = mean_std(values)
    return MeanStd(summary.mean, float("nan"), summary.count) if deterministic else summary


def _markdown(config: ProbeConfig, data: LabelledFeatures, result: ProbeResult) -> str:
    rows = [
        [name, format_mean_std(result.auprc[name]), format_mean_std(result.auroc[name])]
        for name in data.names
    ]
    rows.append(
        [
            "**macro**",
            format_mean_std(result.summary["macro_auprc"]),
            format_mean_std(result.summary["macro_auroc"]),
        ]
    )
    selected = ", ".join(f"seed {seed['seed']}: {seed['selected']}" for seed in result.seeds)
    if result.deterministic:
        selected = result.seeds[0]["selected"]
    runs = (
        "one fit (deterministic: seeds do not change it)"
        if result.deterministic
        else f"mean ± std over {len(result.seeds)} seed(s)"
    )
    sizes = data.splits.sizes()
    return (
        f"# Linear probe: {encoder_name(config.features.model, config.features.embeddings)}\n\n"
        f"Test set, {runs}; method `{config.method}`; "
        f"splits {sizes['train']}/{sizes['val']}/{sizes['test']} images ({data.splits.source}).\n\n"
        + markdown_table(["finding", "AUPRC", "AUROC"], rows)
        + f"\nHeads selected on validation macro AUPRC: {selected}.\n"
    )


def run_probe(config: ProbeConfig) -> ProbeResult:
    """Probe a frozen encoder on a labelled manifest; writes ``probe.{json,md,csv,png}`` and the config.

    Returns:
        The test metrics over seeds and the paths written.
    """
    started = time.perf_counter()
    out = Path(config.out)
    choices = list(dict.fromkeys(config.feature_choices))
    data = load_labelled(
        config.input,
        config.features,
        choices,
        config.labels,
        config.uncertain,
        config.split_ratios,
        config.split_seed,
    )
    fingerprint = _fingerprint(config, data)
    seeds = [_run_seed(data, config, seed, fingerprint) for seed in _seeds_that_matter(config)]
    once = config.method == "sklearn"

    def over(metric: str, name: str | None = None) -> MeanStd:
        return _over_runs(
            [_nan(s["test"][metric] if name is None else s["test"][metric][name]) for s in seeds], once
        )

    auprc = {name: over("auprc", name) for name in data.names}
    auroc = {name: over("auroc", name) for name in data.names}
    summary = {
        "macro_auprc": over("macro_auprc"),
        "macro_auroc": over("macro_auroc"),
        **{f"auprc/{name}": value for name, value in auprc.items()},
        **{f"auroc/{name}": value for name, value in auroc.items()},
    }
    result = ProbeResult(summary, auprc, auroc, seeds, {}, data.embedded_now, 0.0, deterministic=once)
    details = {
        "method": config.method,
        "deterministic": once,
        "findings": data.names,
        "splits": data.splits.sizes(),
        "split_source": data.splits.source,
        "feature_file": data.feature_file,
        "images_without_features": data.without_features,
        "images_without_labels": data.without_labels,
        "seeds": [{key: value for key, value in seed.items() if key != "fingerprint"} for seed in seeds],
    }
    name = encoder_name(config.features.model, config.features.embeddings)
    result.outputs = write_results(out, "probe", name, summary, details, _markdown(config, data, result))
    result.outputs["config"] = save_config(config, out / "probe_config.yaml")
    if config.figure:
        from raddino.evaluate.figures import bar_chart

        result.outputs["figure"] = bar_chart(out / "probe.png", auprc, f"Linear probe: {name}", "test AUPRC")
    result.seconds = time.perf_counter() - started
    return result
