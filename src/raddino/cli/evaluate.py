"""Evaluation sub-commands (``probe``, ``knn``, ``search``, ``metadata``, ``segment``, ``compare``): thin
layers over :mod:`raddino.evaluate`, each with ``--config`` and ``--set key=value``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, TypeVar

import typer

from raddino.cli.app import ConfigOption, OverrideOption, app, fail, load_settings

T = TypeVar("T")

ModelOption = Annotated[
    str | None,
    typer.Option(
        "--model", "-m", help="Encoder: transformers folder, DINOv2 .safetensors/.pth, preset:NAME or hub id."
    ),
]
EmbeddingsOption = Annotated[
    str | None, typer.Option("--embeddings", help="Existing embeddings .parquet to use instead of --model.")
]
OutOption = Annotated[str | None, typer.Option("--out", "-o", help="Output folder.")]
CacheOption = Annotated[
    str | None, typer.Option("--cache-dir", help="Feature cache folder (shared between runs).")
]
DeviceOption = Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps.")]


def _errors() -> tuple[type[BaseException], ...]:
    from raddino.features.store import EmbeddingStoreError
    from raddino.io.manifest import ManifestError
    from raddino.io.state_file import StateFileError
    from raddino.training import TrainingError

    return (
        ManifestError,
        EmbeddingStoreError,
        StateFileError,
        TrainingError,
        ValueError,
        FileNotFoundError,
        OSError,
        KeyError,
    )


def _run(
    cls: type[T],
    config: str | None,
    overrides: list[str] | None,
    values: Mapping[str, Any],
    action: Callable[[T], Any],
) -> None:
    """Load the config, run ``action`` on it, print its summary; bad input exits 2 with the reason."""
    settings = load_settings(cls, config, overrides, values)
    try:
        result = action(settings)
    except _errors() as error:
        raise fail(str(error)) from error
    typer.echo(str(result))


@app.command()
def probe(
    input: Annotated[str, typer.Argument(help="Manifest CSV with label columns.")],
    model: ModelOption = None,
    embeddings: EmbeddingsOption = None,
    out: OutOption = None,
    labels: Annotated[
        list[str] | None, typer.Option("--label", help="Label column (repeatable; default: all).")
    ] = None,
    method: Annotated[
        str | None, typer.Option(help="linear (torch heads) or sklearn (logistic regression).")
    ] = None,
    feature: Annotated[
        list[str] | None,
        typer.Option("--feature", help="Feature choice, e.g. cls or cls+patch_mean (repeatable)."),
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs of the heads (paper: 100).")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Mini-batch size (paper: 96).")] = None,
    seeds: Annotated[list[int] | None, typer.Option("--seed", help="Seed (repeatable; default 0-4).")] = None,
    cache_dir: CacheOption = None,
    device: DeviceOption = None,
    overwrite: Annotated[bool | None, typer.Option("--overwrite", help="Recompute finished seeds.")] = None,
    config: ConfigOption = None,
    overrides: OverrideOption = None,
) -> None:
    """Linear probing on frozen features: AUPRC / AUROC per finding, mean ± std over seeds."""
    from raddino.evaluate.probe import ProbeConfig, run_probe

    values = {
        "input": input,
        "out": out,
        "features.model": model,
        "features.embeddings": embeddings,
        "features.cache_dir": cache_dir,
        "features.device": device,
        "labels": labels or None,
        "method": method,
        "feature_choices": feature or None,
        "training.epochs": epochs,
        "training.batch_size": batch_size,
        "seeds": seeds or None,
        "overwrite": overwrite,
    }
    _run(ProbeConfig, config, overrides, values, run_probe)


@app.command()
def knn(
    input: Annotated[str, typer.Argument(help="Manifest CSV with label columns.")],
    model: ModelOption = None,
    embeddings: EmbeddingsOption = None,
    out: OutOption = None,
    labels: Annotated[list[str] | None, typer.Option("--label", help="Label column (repeatable).")] = None,
    ks: Annotated[list[int] | None, typer.Option("--k", help="Neighbour count (repeatable).")] = None,
    temperature: Annotated[float | None, typer.Option(help="Vote temperature (DINO: 0.07).")] = None,
    cache_dir: CacheOption = None,
    device: DeviceOption = None,
    config: ConfigOption = None,
    overrides: OverrideOption = None,
) -> None:
    """k-nearest-neighbour classification and retrieval on L2-normalised frozen features."""
    from raddino.evaluate.knn import KnnConfig, run_knn

    values = {
        "input": input,
        "out": out,
        "features.model": model,
        "features.embeddings": embeddings,
        "features.cache_dir": cache_dir,
        "features.device": device,
        "labels": labels or None,
        "ks": ks or None,
        "temperature": temperature,
    }
    _run(KnnConfig, config, overrides, values, run_knn)


@app.command()
def search(
    embeddings: Annotated[str, typer.Argument(help="Embeddings .parquet from raddino embed.")],
    query: Annotated[str, typer.Argument(help="An id of the embeddings file, or an image file.")],
    k: Annotated[int | None, typer.Option("--k", "-k", help="How many neighbours.")] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Encoder for an image query (default: the recorded one)."),
    ] = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="Folder for search.json/.md/.png.")] = None,
    device: DeviceOption = None,
    config: ConfigOption = None,
    overrides: OverrideOption = None,
) -> None:
    """The k most similar images to a query, by cosine similarity of CLS embeddings."""
    from raddino.evaluate.search import SearchConfig
    from raddino.evaluate.search import search as run_search

    values = {"embeddings": embeddings, "query": query, "k": k, "model": model, "out": out, "device": device}
    _run(SearchConfig, config, overrides, values, run_search)


@app.command()
def metadata(
    input: Annotated[str, typer.Argument(help="Manifest CSV with metadata columns (sex, age, weight, bmi).")],
    model: ModelOption = None,
    embeddings: EmbeddingsOption = None,
    out: OutOption = None,
    targets: Annotated[
        list[str] | None, typer.Option("--target", help="Column to predict (repeatable).")
    ] = None,
    folds: Annotated[int | None, typer.Option(help="Cross-validation folds (paper: 5).")] = None,
    binning: Annotated[str | None, typer.Option(help="edges (default bins) or quantile.")] = None,
    cache_dir: CacheOption = None,
    device: DeviceOption = None,
    config: ConfigOption = None,
    overrides: OverrideOption = None,
) -> None:
    """Patient metadata from frozen embeddings: logistic regression, k-fold accuracy mean ± std."""
    from raddino.evaluate.metadata import MetadataConfig, run_metadata

    values = {
        "input": input,
        "out": out,
        "features.model": model,
        "features.embeddings": embeddings,
        "features.cache_dir": cache_dir,
        "features.device": device,
        "targets": targets or None,
        "folds": folds,
        "binning": binning,
    }
    _run(MetadataConfig, config, overrides, values, run_metadata)


@app.command()
def compare(
    results: Annotated[list[str], typer.Argument(help="Result JSON files or folders holding them.")],
    out: OutOption = None,
    names: Annotated[
        list[str] | None, typer.Option("--name", help="Row name per result file, in order.")
    ] = None,
    columns: Annotated[
        list[str] | None, typer.Option("--column", help="Metric to show (repeatable).")
    ] = None,
    config: ConfigOption = None,
    overrides: OverrideOption = None,
) -> None:
    """Tables of several encoders' results: best per column in bold, Δ to the runner-up."""
    from raddino.evaluate.compare import CompareConfig, run_compare

    values = {"results": results, "out": out, "names": names or None, "columns": columns or None}
    _run(CompareConfig, config, overrides, values, run_compare)


@app.command()
def segment(
    input: Annotated[str, typer.Argument(help="Manifest CSV with image paths and mask_* columns.")],
    model: ModelOption = None,
    out: OutOption = None,
    structures: Annotated[
        list[str] | None, typer.Option("--structure", help="Mask column (repeatable; default: every mask_*).")
    ] = None,
    heads: Annotated[
        list[str] | None, typer.Option("--head", help="linear, vitdet or upernet (repeatable).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Training epochs (paper: 100).")] = None,
    fewshot: Annotated[
        list[int] | None, typer.Option("--fewshot", help="Few-shot training-set size (repeatable).")
    ] = None,
    device: DeviceOption = None,
    overwrite: Annotated[
        bool | None, typer.Option("--overwrite", help="Retrain the heads: no reuse, no resume.")
    ] = None,
    config: ConfigOption = None,
    overrides: OverrideOption = None,
) -> None:
    """Segmentation heads on a frozen encoder: Dice per structure, masks and overlays, few-shot curve."""
    from raddino.evaluate.segmentation import SegmentConfig, run_segment

    values = {
        "input": input,
        "model": model,
        "out": out,
        "structures": structures or None,
        "heads": heads or None,
        "training.epochs": epochs,
        "fewshot": fewshot or None,
        "device": device,
        "overwrite": overwrite,
    }
    _run(SegmentConfig, config, overrides, values, run_segment)
