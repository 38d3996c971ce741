"""``raddino prepare``: DICOMs (or PNG/JPEG/TIFF) → the release's training PNGs, resumable, in parallel."""

from __future__ import annotations

from typing import TYPE_CHECKING

from raddino.cli.app import app
from raddino.cli.generate import ConfigCommand, Outcome, register_deferred

if TYPE_CHECKING:
    from raddino.data.prepare import PrepareRun

HELP = """Resize each image's shorter side to 518 with B-splines, min-max scale, save as grey PNG.

Rerun the same command to resume: existing outputs are kept. Exit status 1 when nothing could be
prepared, or with --strict when anything failed; the reasons are in OUT/errors.csv. A full disk stops
the run with exit status 1, naming the file that could not be written.
"""


def _run(settings: PrepareRun) -> Outcome:
    from raddino.data.prepare import prepare_images

    summary = prepare_images(
        settings.input,
        settings.out,
        size=settings.size,
        bits=settings.bits,
        workers=settings.workers,
        overwrite=settings.overwrite,
        voi=settings.voi,
        max_pixels=settings.max_pixels,
        progress=not settings.quiet,
    )
    if summary.total == 0:
        return Outcome(summary.line(), f"error: no images found in {settings.input}", exit_code=1)
    failed = summary.succeeded == 0 or (settings.strict and summary.failed > 0)
    return Outcome(summary.line(), exit_code=1 if failed else 0)


def _spec() -> ConfigCommand:
    from raddino.data.prepare import OutputStorageError, PrepareRun
    from raddino.io.manifest import ManifestError

    return ConfigCommand(
        "prepare",
        PrepareRun,
        _run,
        arguments=("input", "out"),
        short={"quiet": "-q"},
        choices={"voi": {"auto": "auto", "on": True, "off": False}},
        errors=(ManifestError, ValueError, OSError),
        error_codes={OutputStorageError: 1},
    )


register_deferred(app, "prepare", _spec, help=HELP)
