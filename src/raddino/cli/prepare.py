"""``raddino prepare``: DICOMs (or PNG/JPEG/TIFF) → the release's training PNGs, resumable, in parallel."""

from __future__ import annotations

from typing import Annotated

import typer

from raddino.cli.app import ConfigOption, OverrideOption, app, fail, load_settings


@app.command()
def prepare(
    input: Annotated[str, typer.Argument(help="Folder of images (recursive) or manifest CSV.")],
    out: Annotated[str, typer.Argument(help="Output folder for the PNGs, manifest.csv and errors.csv.")],
    size: Annotated[int | None, typer.Option(help="Shorter side of the outputs (release: 518).")] = None,
    bits: Annotated[int | None, typer.Option(help="8 (release) or 16 bits per pixel.")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: all cores).")] = None,
    voi: Annotated[
        str | None, typer.Option(help="DICOM VOI LUT/window: auto (when present), on (required) or off.")
    ] = None,
    overwrite: Annotated[
        bool | None, typer.Option("--overwrite", help="Rewrite existing outputs instead of resuming.")
    ] = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 if any image failed.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    config: ConfigOption = None,
    overrides: OverrideOption = None,
) -> None:
    """Resize each image's shorter side to 518 with B-splines, min-max scale, save as grey PNG.

    Rerun the same command to resume: existing outputs are kept. Exit status 1 when nothing could be
    prepared, or with --strict when anything failed; the reasons are in OUT/errors.csv. A full disk stops
    the run with exit status 1, naming the file that could not be written.
    """
    from raddino.data.prepare import OutputStorageError, PrepareConfig, prepare_images
    from raddino.io.manifest import ManifestError

    voi_values = {"auto": "auto", "on": True, "off": False, None: None}
    if voi not in voi_values:
        raise fail(f"--voi must be auto, on or off, got {voi!r}")
    values = {"size": size, "bits": bits, "workers": workers, "voi": voi_values[voi], "overwrite": overwrite}
    settings = load_settings(PrepareConfig, config, overrides, values)
    try:
        summary = prepare_images(
            input,
            out,
            size=settings.size,
            bits=settings.bits,
            workers=settings.workers,
            overwrite=settings.overwrite,
            voi=settings.voi,
            max_pixels=settings.max_pixels,
            progress=not quiet,
        )
    except OutputStorageError as error:
        raise fail(str(error), code=1) from error
    except (ManifestError, ValueError, OSError) as error:
        raise fail(str(error)) from error
    typer.echo(summary.line())
    if summary.total == 0:
        typer.echo(f"error: no images found in {input}", err=True)
        raise typer.Exit(1)
    if summary.succeeded == 0 or (strict and summary.failed):
        raise typer.Exit(1)
