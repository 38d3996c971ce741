"""``raddino phantoms``: synthetic chest X-rays with masks, labels, metadata and reports."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from raddino.cli.app import app
from raddino.cli.generate import ConfigCommand, Outcome, register_deferred

if TYPE_CHECKING:
    from raddino.data.phantoms.settings import PhantomsRun

HELP = "Generate phantoms and their manifest (prevalences etc.: settings.prevalence.nodule=0.3)."


def _check(settings: PhantomsRun) -> None:
    if not settings.out:
        raise ValueError("no output folder given: pass --out FOLDER")


def _run(settings: PhantomsRun) -> Outcome:
    from raddino.data.phantoms import generate_phantoms, plan_phantoms, render_phantom, write_contact_sheet
    from raddino.data.phantoms.generate import ERRORS_FILE
    from raddino.io.failures import FailureLog

    manifest = generate_phantoms(
        settings.out,
        settings.n,
        settings.size,
        settings.seed,
        settings.workers,
        settings.formats,
        masks=settings.masks,
        settings=settings.settings,
        overwrite=settings.overwrite,
    )
    errors = Path(settings.out) / ERRORS_FILE
    failed = len(FailureLog(errors).read())
    if settings.contact_sheet:
        specs = plan_phantoms(min(16, settings.n), settings.seed, settings.settings)
        write_contact_sheet([render_phantom(spec, settings.size) for spec in specs], settings.contact_sheet)
    text = f"{settings.n - failed} phantoms at {settings.size} px: {manifest}"
    if failed:
        return Outcome(text, f"{failed} failed: see {errors}", exit_code=1)
    return Outcome(text)


def _spec() -> ConfigCommand:
    from raddino.data.phantoms import PhantomsError
    from raddino.data.phantoms.settings import PhantomsRun

    return ConfigCommand(
        "phantoms",
        PhantomsRun,
        _run,
        rename={"formats": "format"},
        short={"out": "-o"},
        errors=(PhantomsError, ValueError, OSError),
        check=_check,
    )


register_deferred(app, "phantoms", _spec, help=HELP)
