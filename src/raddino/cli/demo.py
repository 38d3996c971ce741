"""``raddino demo``: the whole pipeline on built-in synthetic data, no downloads."""

from __future__ import annotations

from typing import Annotated

import typer

from raddino.cli.app import app


@app.command()
def demo(
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder (re-running resumes).")] = "demo",
    images: Annotated[int, typer.Option(help="Number of synthetic X-rays.")] = 48,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 224,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Make synthetic chest X-rays, build a small encoder, embed the images."""
    from raddino.demo import run_demo

    result = run_demo(out, n_images=images, size=size, seed=seed)
    typer.echo(f"phantoms: {result.manifest}\nencoder:  {result.model}\n{result.embeddings}")
    raise typer.Exit(result.embeddings.exit_code)
