"""``raddino phantoms``: synthetic chest X-rays with masks, labels, metadata and reports."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from raddino.cli.app import ConfigOption, OverrideOption, app, fail, load_settings


@app.command()
def phantoms(
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder (created; rerun to resume).")],
    n: Annotated[int | None, typer.Option("--n", help="Number of images (default 100).")] = None,
    size: Annotated[int | None, typer.Option("--size", help="Image side in pixels (default 518).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Root seed (default 0).")] = None,
    workers: Annotated[
        int | None, typer.Option("--workers", help="Processes (default: every core; 1: no pool).")
    ] = None,
    dicom: Annotated[bool, typer.Option("--dicom", help="Also write DICOMs (path_dicom column).")] = False,
    png16: Annotated[
        bool, typer.Option("--png16", help="Also write 16-bit PNGs (path_png16 column).")
    ] = False,
    masks: Annotated[
        bool | None, typer.Option("--masks/--no-masks", help="Write the mask PNGs (default: yes).")
    ] = None,
    contact_sheet: Annotated[
        str | None, typer.Option("--contact-sheet", help="Also write a PNG of the first 16 with masks.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Re-render everything, even over other settings.")
    ] = False,
    config: ConfigOption = None,
    overrides: OverrideOption = None,
) -> None:
    """Generate phantoms and their manifest (prevalences etc.: --set settings.prevalence.nodule=0.3)."""
    from raddino.data.phantoms import (
        PhantomsConfig,
        PhantomsError,
        generate_phantoms,
        plan_phantoms,
        render_phantom,
        write_contact_sheet,
    )
    from raddino.data.phantoms.generate import ERRORS_FILE
    from raddino.io.failures import FailureLog

    formats = None
    if dicom or png16:
        formats = ["png8", *(["png16"] if png16 else []), *(["dicom"] if dicom else [])]
    values = {"n": n, "size": size, "seed": seed, "masks": masks, "formats": formats}
    settings = load_settings(PhantomsConfig, config, overrides, values)
    try:
        manifest = generate_phantoms(
            out,
            settings.n,
            settings.size,
            settings.seed,
            workers,
            settings.formats,
            masks=settings.masks,
            settings=settings.settings,
            overwrite=overwrite,
        )
    except (PhantomsError, ValueError, OSError) as error:
        raise fail(str(error)) from error
    failed = len(FailureLog(Path(out) / ERRORS_FILE).read())
    if contact_sheet:
        specs = plan_phantoms(min(16, settings.n), settings.seed, settings.settings)
        write_contact_sheet([render_phantom(spec, settings.size) for spec in specs], contact_sheet)
    typer.echo(f"{settings.n - failed} phantoms at {settings.size} px: {manifest}")
    if failed:
        typer.echo(f"{failed} failed: see {Path(out) / ERRORS_FILE}", err=True)
        raise typer.Exit(1)
