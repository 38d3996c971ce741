"""``raddino stats``: pixel mean and std of a dataset, for ``image_mean`` / ``image_std``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from raddino.cli.app import app, fail


@app.command()
def stats(
    input_path: Annotated[str, typer.Argument(metavar="INPUT", help="Folder of images or manifest CSV.")],
    out: Annotated[str, typer.Option("--out", "-o", help="JSON file to write.")] = "stats.json",
    workers: Annotated[int, typer.Option("--workers", help="Reading processes (1: no pool).")] = 1,
    sample: Annotated[
        int | None, typer.Option("--sample", help="Use a random subset of this many images.")
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the --sample subset.")] = 0,
) -> None:
    """Mean and std of every pixel after the release's [0, 1] scaling (unreadable files: OUT.errors.csv)."""
    from raddino.data.stats import compute_stats, write_stats
    from raddino.io.manifest import ManifestError

    out_path = Path(out)
    errors = out_path.with_name(f"{out_path.stem}.errors.csv")
    try:
        result = compute_stats(input_path, workers=workers, errors=errors, sample=sample, seed=seed)
    except (ManifestError, ValueError, OSError) as error:
        raise fail(str(error)) from error
    write_stats(result, out_path)
    typer.echo(
        f"mean {result.mean:.4f}, std {result.std:.4f} over {result.n_images} images "
        f"({result.n_pixels} pixels): {out_path}"
    )
    if result.n_failed:
        typer.echo(f"{result.n_failed} unreadable: see {result.errors}", err=True)
        raise typer.Exit(1)
