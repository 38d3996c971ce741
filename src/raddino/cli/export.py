"""``raddino export``: convert an encoder between the transformers folder and the DINOv2 format."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from raddino.cli.app import app, fail


class _Format(str, Enum):
    transformers = "transformers"
    dinov2 = "dinov2"


@app.command()
def export(
    source: Annotated[
        str, typer.Argument(help="Transformers folder, DINOv2 .safetensors/.pth, preset:NAME or hub id.")
    ],
    out: Annotated[
        str, typer.Argument(help="Output folder (or, for --format dinov2, a .safetensors/.pth file).")
    ],
    format: Annotated[
        _Format,
        typer.Option(
            "--format",
            "-f",
            help="transformers: config.json + model.safetensors; "
            "dinov2: backbone_compatible.safetensors (DINOv2 key names).",
        ),
    ] = _Format.transformers,
    dino_head: Annotated[
        str | None, typer.Option("--dino-head", help="DINO head file to check and write beside the weights.")
    ] = None,
    num_heads: Annotated[
        int | None,
        typer.Option("--num-heads", help="Attention heads of a DINOv2 source (default: width/64)."),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
) -> None:
    """Convert an encoder: transformers folder <-> DINOv2 state dict (+ DINO head), as in the release."""
    from raddino.models.export import export_encoder

    try:
        result = export_encoder(
            source, out, format=format.value, dino_head=dino_head, num_heads=num_heads, overwrite=overwrite
        )
    except (ValueError, FileExistsError, OSError) as error:
        raise fail(str(error)) from error
    typer.echo(str(result))
