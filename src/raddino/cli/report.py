"""``raddino report train | generate | score``: report generation from a frozen encoder (paper Table 5).

Each sub-command is generated from its config dataclass in :mod:`raddino.reportgen`; the encoder
(``features.model``) is ``--model`` as in the evaluation commands (``--encoder`` and ``-e`` are still
accepted, hidden), and ``--device`` also places the feature extraction unless ``features.device`` is set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from raddino.cli.app import app
from raddino.cli.generate import ConfigCommand, register_deferred

if TYPE_CHECKING:
    from raddino.reportgen.generate import ReportGenerateConfig, ReportGenerateSummary
    from raddino.reportgen.train import ReportTrainConfig, ReportTrainSummary

report_app = typer.Typer(
    help="LLaVA-style report generation on a frozen encoder: train, generate, score.", no_args_is_help=True
)
app.add_typer(report_app, name="report")

_FEATURES = {
    "features.model": "model",
    "features.embeddings": "embeddings",
    "features.cache_dir": "cache_dir",
    "features.num_workers": "workers",
    "features.preprocess": "preprocess",
    "studies.split": "split",
}
_EARLIER = {"--encoder": "features.model", "-e": "features.model"}
_SHORT = {"features.model": "-m", "out": "-o"}


def _errors() -> tuple[type[BaseException], ...]:
    from raddino.features.cache import FeatureError
    from raddino.features.store import EmbeddingStoreError
    from raddino.io.manifest import ManifestError
    from raddino.io.state_file import StateFileError
    from raddino.training import TrainingError

    return (
        ManifestError,
        FeatureError,
        EmbeddingStoreError,
        StateFileError,
        TrainingError,
        ValueError,
        OSError,
    )


def _one_device(settings: Any) -> None:
    """``--device`` places the feature extraction too, unless ``features.device`` says otherwise."""
    if settings.features.device == "auto":
        settings.features.device = settings.device


def _train(settings: ReportTrainConfig) -> ReportTrainSummary:
    from raddino.reportgen.train import train_report_model

    if not settings.features.model and not settings.features.embeddings:
        raise ValueError(
            "no encoder given: pass --model (a folder, a .safetensors/.pth file, preset:NAME or a hub id), "
            "or --embeddings FILE.parquet with stored patch tokens"
        )
    if not settings.language_model:
        raise ValueError(
            "no language model given: pass --lm (a transformers folder with its tokenizer, or hub id)"
        )
    # ``--lora-targets q_proj,v_proj`` (the earlier comma-separated form) names two modules.
    modules = [name.strip() for entry in settings.lora.target_modules for name in entry.split(",")]
    settings.lora.target_modules = [name for name in modules if name]
    if not settings.lora.target_modules:
        raise ValueError("--lora-targets: name at least one module (or all-linear)")
    _one_device(settings)
    return train_report_model(settings)


def _generate(settings: ReportGenerateConfig) -> ReportGenerateSummary:
    from raddino.reportgen.generate import generate_reports

    _one_device(settings)
    return generate_reports(settings)


def _train_spec() -> ConfigCommand:
    from raddino.reportgen.train import ReportTrainConfig
    from raddino.training.tracking import TRACKING_OPTIONS

    lora = {f"lora.{name}": f"lora_{name}" for name in ("rank", "alpha", "dropout")}
    return ConfigCommand(
        "train",
        ReportTrainConfig,
        _train,
        arguments=("input",),
        promote={**_FEATURES, **lora, "lora.target_modules": "lora_targets", **TRACKING_OPTIONS},
        rename={"language_model": "lm", "learning_rate": "lr", "early_stopping_patience": "patience"},
        short=_SHORT,
        aliases=_EARLIER,
        errors=_errors(),
    )


def _generate_spec() -> ConfigCommand:
    from raddino.reportgen.generate import ReportGenerateConfig

    return ConfigCommand(
        "generate",
        ReportGenerateConfig,
        _generate,
        arguments=("model", "input"),
        promote=_FEATURES,
        docs={
            "features.model": "Encoder the image tokens come from (transformers folder, DINOv2 file, "
            "preset:NAME or hub id); default: the one the report model was trained on."
        },
        short=_SHORT,
        aliases=_EARLIER,
        errors=_errors(),
    )


def _score_spec() -> ConfigCommand:
    from raddino.reportgen.score import ReportScoreConfig, score_files

    return ConfigCommand(
        "score",
        ReportScoreConfig,
        score_files,
        arguments=("generated",),
        rename={"names": "name"},
        short={"out": "-o"},
    )


register_deferred(
    report_app,
    "train",
    _train_spec,
    help="Train the projector (and the LM or LoRA adapters) on frozen image tokens; rerun to resume.",
)
register_deferred(
    report_app,
    "generate",
    _generate_spec,
    help="Greedy-decode a report for every study; rerun the same command to resume.",
)
register_deferred(
    report_app,
    "score",
    _score_spec,
    help="ROUGE-L and BLEU-4 (median [95% CI], 500 bootstraps), CheXbert / RadGraph when installed.",
)
