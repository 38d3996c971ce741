"""Evaluation sub-commands (``probe``, ``knn``, ``search``, ``metadata``, ``segment``, ``compare``), generated
from their config dataclasses in :mod:`raddino.evaluate`: one option per field, ``--config`` and
``key=value`` settings; where the features come from (``features.*``) is promoted to ``--model``,
``--embeddings``, ``--cache-dir``, ``--device``, ``--workers`` and ``--preprocess``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from raddino.cli.app import app
from raddino.cli.generate import ConfigCommand, register_deferred

if TYPE_CHECKING:
    from raddino.evaluate.segmentation import SegmentConfig

# The feature source of every command that reads frozen features (features.cache.FeatureConfig).
_FEATURES = {
    "features.model": "model",
    "features.embeddings": "embeddings",
    "features.cache_dir": "cache_dir",
    "features.device": "device",
    "features.num_workers": "workers",
    "features.preprocess": "preprocess",
}
_SHORT = {"features.model": "-m", "out": "-o"}
_NO_MODEL = "pass --model (a folder, a .safetensors/.pth file, preset:NAME or a hub id)"


def _errors() -> tuple[type[BaseException], ...]:
    from raddino.features.store import EmbeddingStoreError
    from raddino.io.manifest import ManifestError
    from raddino.io.state_file import StateFileError
    from raddino.training import TrainingError

    return (ManifestError, EmbeddingStoreError, StateFileError, TrainingError, ValueError, OSError, KeyError)


def _needs_features(settings: Any) -> None:
    if not settings.features.model and not settings.features.embeddings:
        raise ValueError(f"no encoder given: {_NO_MODEL}, or --embeddings FILE.parquet")


def _needs_model(settings: SegmentConfig) -> None:
    if not settings.model:
        raise ValueError(f"no model given: {_NO_MODEL}")


def _probe_spec() -> ConfigCommand:
    from raddino.evaluate.probe import ProbeConfig, run_probe

    return ConfigCommand(
        "probe",
        ProbeConfig,
        run_probe,
        arguments=("input",),
        promote={**_FEATURES, "training.epochs": "epochs", "training.batch_size": "batch_size"},
        rename={"labels": "label", "feature_choices": "feature", "seeds": "seed"},
        short=_SHORT,
        errors=_errors(),
        check=_needs_features,
    )


def _knn_spec() -> ConfigCommand:
    from raddino.evaluate.knn import KnnConfig, run_knn

    return ConfigCommand(
        "knn",
        KnnConfig,
        run_knn,
        arguments=("input",),
        promote=_FEATURES,
        rename={"labels": "label", "ks": "k"},
        short=_SHORT,
        errors=_errors(),
        check=_needs_features,
    )


def _search_spec() -> ConfigCommand:
    from raddino.evaluate.search import SearchConfig, search

    return ConfigCommand(
        "search",
        SearchConfig,
        search,
        arguments=("embeddings", "query"),
        short={"k": "-k", "model": "-m", "out": "-o"},
        errors=_errors(),
    )


def _metadata_spec() -> ConfigCommand:
    from raddino.evaluate.metadata import MetadataConfig, run_metadata

    return ConfigCommand(
        "metadata",
        MetadataConfig,
        run_metadata,
        arguments=("input",),
        promote=_FEATURES,
        rename={"targets": "target", "c": "inverse_regularisation"},  # "--c" would read like "-c" (--config)
        short=_SHORT,
        errors=_errors(),
        check=_needs_features,
    )


def _segment_spec() -> ConfigCommand:
    from raddino.evaluate.segmentation import SegmentConfig, run_segment
    from raddino.training.tracking import TRACKING_OPTIONS

    return ConfigCommand(
        "segment",
        SegmentConfig,
        run_segment,
        arguments=("input",),
        promote={"training.epochs": "epochs", **TRACKING_OPTIONS},
        rename={"structures": "structure", "heads": "head", "layers": "layer"},
        short={"model": "-m", "out": "-o"},
        errors=_errors(),
        check=_needs_model,
    )


def _compare_spec() -> ConfigCommand:
    from raddino.evaluate.compare import CompareConfig, run_compare

    return ConfigCommand(
        "compare",
        CompareConfig,
        run_compare,
        arguments=("results",),
        rename={"names": "name", "columns": "column"},
        short={"out": "-o"},
        errors=_errors(),
    )


register_deferred(
    app,
    "probe",
    _probe_spec,
    help="Linear probing on frozen features: AUPRC / AUROC per finding, mean ± std over seeds.",
)
register_deferred(
    app, "knn", _knn_spec, help="k-nearest-neighbour classification and retrieval on L2-normalised features."
)
register_deferred(
    app, "search", _search_spec, help="The k most similar images to a query, by cosine similarity of CLS."
)
register_deferred(
    app,
    "metadata",
    _metadata_spec,
    help="Patient metadata from frozen embeddings: logistic regression, k-fold accuracy mean ± std.",
)
register_deferred(
    app,
    "segment",
    _segment_spec,
    help="Segmentation heads on a frozen encoder: Dice per structure, masks and overlays, few-shot curve.",
)
register_deferred(
    app,
    "compare",
    _compare_spec,
    help="Tables of several encoders' results: best per column in bold, Δ to the runner-up.",
)
