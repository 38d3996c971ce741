"""``raddino embed``: CLS / patch embeddings of a folder or manifest, resumable, per-file errors recorded."""

from __future__ import annotations

from typing import Annotated

import typer

from raddino.cli.app import ConfigOption, OverrideOption, app, fail, load_settings


@app.command()
def embed(
    input: Annotated[str, typer.Argument(help="Folder of images (recursive) or manifest CSV.")],
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="Transformers folder, DINOv2 .safetensors/.pth, preset:NAME or hub id."
        ),
    ] = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="Output .parquet file.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Images per forward pass.")] = None,
    num_workers: Annotated[int | None, typer.Option(help="Decoding workers (default: CPUs, max 8).")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps.")] = None,
    precision: Annotated[str | None, typer.Option(help="fp32, fp16 or bf16.")] = None,
    patch_tokens: Annotated[
        bool | None,
        typer.Option("--patch-tokens/--no-patch-tokens", help="Store all last-layer patch tokens."),
    ] = None,
    layers: Annotated[
        list[int] | None, typer.Option("--layer", help="Intermediate block to store (repeatable).")
    ] = None,
    columns: Annotated[
        list[str] | None,
        typer.Option("--column", help="Manifest column to copy into the output (repeatable)."),
    ] = None,
    strict: Annotated[bool | None, typer.Option("--strict", help="Exit 1 if any image failed.")] = None,
    overwrite: Annotated[
        bool | None, typer.Option("--overwrite", help="Start afresh instead of resuming.")
    ] = None,
    preprocess: Annotated[
        str | None,
        typer.Option(
            help="Preprocessing instead of the model's own: a folder or preprocessor_config.json, or "
            "rad-dino for the release's mean/std."
        ),
    ] = None,
    config: ConfigOption = None,
    overrides: OverrideOption = None,
) -> None:
    """Embed every image with an encoder; rerun the same command to resume."""
    from raddino.features.embed import EmbedConfig
    from raddino.features.embed import embed as run_embed
    from raddino.features.store import EmbeddingStoreError
    from raddino.io.lock import LockError
    from raddino.io.manifest import ManifestError

    values = {
        "input": input,
        "model": model,
        "out": out,
        "batch_size": batch_size,
        "num_workers": num_workers,
        "device": device,
        "precision": precision,
        "patch_tokens": patch_tokens,
        "layers": layers or None,
        "columns": columns or None,
        "strict": strict,
        "overwrite": overwrite,
        "preprocess": preprocess,
    }
    settings = load_settings(EmbedConfig, config, overrides, values)
    if not settings.model:
        raise fail(
            "no model given: pass --model (a folder, a .safetensors/.pth file, preset:NAME or a hub id)"
        )
    try:
        summary = run_embed(settings)
    except LockError as error:
        raise fail(str(error), code=3) from error
    except (ManifestError, EmbeddingStoreError, ValueError, FileNotFoundError, OSError) as error:
        raise fail(str(error)) from error
    typer.echo(str(summary))
    raise typer.Exit(summary.exit_code)
