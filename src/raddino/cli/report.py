"""``raddino report train | generate | score``: report generation from a frozen encoder (paper Table 5)."""

from __future__ import annotations

from typing import Annotated

import typer

from raddino.cli.app import ConfigOption, OverrideOption, app, fail
from raddino.config import ConfigError, load_config

report_app = typer.Typer(
    help="LLaVA-style report generation on a frozen encoder: train, generate, score.", no_args_is_help=True
)
app.add_typer(report_app, name="report")

ModelOption = Annotated[
    str | None,
    typer.Option("--encoder", "-e", help="Frozen encoder: folder, DINOv2 file, preset:NAME or hub id."),
]
EmbeddingsOption = Annotated[
    str | None, typer.Option("--embeddings", help="Existing embeddings .parquet with the patch tokens.")
]
DeviceOption = Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps.")]
PrecisionOption = Annotated[str | None, typer.Option(help="fp32, bf16 or fp16.")]
SplitOption = Annotated[str | None, typer.Option(help="Manifest split to use ('' for every row).")]


def _errors() -> tuple[type[BaseException], ...]:
    from raddino.features.cache import FeatureError
    from raddino.features.store import EmbeddingStoreError
    from raddino.io.manifest import ManifestError
    from raddino.io.state_file import StateFileError
    from raddino.training import TrainingError

    return (
        ConfigError,
        ManifestError,
        FeatureError,
        EmbeddingStoreError,
        StateFileError,
        TrainingError,
        ValueError,
        OSError,
    )


@report_app.command("train")
def train(
    input: Annotated[str, typer.Argument(help="Manifest CSV with path, id, report (and split) columns.")],
    language_model: Annotated[
        str | None, typer.Option("--lm", help="Causal LM: transformers folder with tokenizer, or hub id.")
    ] = None,
    encoder: ModelOption = None,
    embeddings: EmbeddingsOption = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="Output folder.")] = None,
    layer: Annotated[int | None, typer.Option(help="Encoder block feeding the projector (-1 last).")] = None,
    trainable: Annotated[
        str | None, typer.Option(help="'projector+lm', 'projector' or 'lora' (adapters; needs peft).")
    ] = None,
    lora_rank: Annotated[int | None, typer.Option(help="LoRA rank (16).")] = None,
    lora_alpha: Annotated[
        float | None, typer.Option(help="LoRA alpha; updates scale by alpha/rank (32).")
    ] = None,
    lora_dropout: Annotated[float | None, typer.Option(help="Dropout on the LoRA input (0.05).")] = None,
    lora_targets: Annotated[
        str | None,
        typer.Option(help="Comma-separated LM modules to adapt, e.g. q_proj,v_proj (default all-linear)."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs (default 3).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Studies per optimiser step (128).")] = None,
    micro_batch_size: Annotated[int | None, typer.Option(help="Studies per forward pass.")] = None,
    learning_rate: Annotated[float | None, typer.Option("--lr", help="Peak learning rate (2e-5).")] = None,
    split: SplitOption = None,
    val_split: Annotated[
        str | None, typer.Option(help="Split whose loss picks the best epoch (e.g. val; default none).")
    ] = None,
    patience: Annotated[
        int | None, typer.Option(help="Stop after this many epochs without a lower val loss (0: never).")
    ] = None,
    device: DeviceOption = None,
    precision: PrecisionOption = None,
    overwrite: Annotated[bool | None, typer.Option("--overwrite", help="Start afresh, no resume.")] = None,
    config: ConfigOption = None,
    overrides: OverrideOption = None,
) -> None:
    """Train the projector (and the LM or LoRA adapters) on frozen image tokens; rerun to resume."""
    from raddino.reportgen.train import ReportTrainConfig, train_report_model

    values = {
        "input": input,
        "language_model": language_model,
        "out": out,
        "features.model": encoder,
        "features.embeddings": embeddings,
        "features.device": device,
        "layer": layer,
        "trainable": trainable,
        "lora.rank": lora_rank,
        "lora.alpha": lora_alpha,
        "lora.dropout": lora_dropout,
        "lora.target_modules": [name.strip() for name in lora_targets.split(",")] if lora_targets else None,
        "val_split": val_split,
        "early_stopping_patience": patience,
        "epochs": epochs,
        "batch_size": batch_size,
        "micro_batch_size": micro_batch_size,
        "learning_rate": learning_rate,
        "studies.split": split,
        "device": device,
        "precision": precision,
        "overwrite": overwrite,
    }
    try:
        settings = load_config(ReportTrainConfig, config, overrides or (), values)
        if not settings.features.model and not settings.features.embeddings:
            raise ValueError("no encoder: pass --encoder (or --embeddings with stored patch tokens)")
        summary = train_report_model(settings)
    except _errors() as error:
        raise fail(str(error)) from error
    typer.echo(str(summary))


@report_app.command("generate")
def generate(
    model: Annotated[str, typer.Argument(help="Folder written by `raddino report train`.")],
    input: Annotated[str, typer.Argument(help="Manifest CSV of the studies to describe.")],
    out: Annotated[str | None, typer.Option("--out", "-o", help="CSV: id,reference,generated.")] = None,
    encoder: ModelOption = None,
    embeddings: EmbeddingsOption = None,
    max_new_tokens: Annotated[int | None, typer.Option(help="Longest report in tokens (150).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Studies decoded together.")] = None,
    split: SplitOption = None,
    device: DeviceOption = None,
    precision: PrecisionOption = None,
    overwrite: Annotated[bool | None, typer.Option("--overwrite", help="Start afresh, no resume.")] = None,
    config: ConfigOption = None,
    overrides: OverrideOption = None,
) -> None:
    """Greedy-decode a report for every study; rerun the same command to resume."""
    from raddino.reportgen.generate import ReportGenerateConfig, generate_reports

    values = {
        "model": model,
        "input": input,
        "out": out,
        "features.model": encoder,
        "features.embeddings": embeddings,
        "features.device": device,
        "max_new_tokens": max_new_tokens,
        "batch_size": batch_size,
        "studies.split": split,
        "device": device,
        "precision": precision,
        "overwrite": overwrite,
    }
    try:
        settings = load_config(ReportGenerateConfig, config, overrides or (), values)
        summary = generate_reports(settings)
    except _errors() as error:
        raise fail(str(error)) from error
    typer.echo(str(summary))


@report_app.command("score")
def score(
    generated: Annotated[list[str], typer.Argument(help="CSV(s) from `raddino report generate`.")],
    name: Annotated[
        list[str] | None, typer.Option("--name", help="Row name per CSV (default: file stem; repeatable).")
    ] = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="Write the Markdown table here.")] = None,
    samples: Annotated[int, typer.Option(help="Bootstrap resamples.")] = 500,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
) -> None:
    """ROUGE-L and BLEU-4 (median [95% CI], 500 bootstraps), CheXbert / RadGraph when installed."""
    from raddino.io.atomic import atomic_write_text
    from raddino.reportgen.score import markdown_table, score_reports

    names = list(name or [])
    if names and len(names) != len(generated):
        raise fail(f"{len(names)} --name values for {len(generated)} CSV files")
    try:
        results = [
            score_reports(path, names[index] if names else None, samples, seed)
            for index, path in enumerate(generated)
        ]
    except ValueError as error:
        raise fail(str(error)) from error
    table = markdown_table(results)
    if out:
        atomic_write_text(out, table)
    typer.echo(table)
