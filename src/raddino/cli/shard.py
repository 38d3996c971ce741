"""``raddino shard``: DICOMs (or PNG/JPEG/TIFF) → WebDataset-style tar shards of the training PNGs."""

from __future__ import annotations

from typing import TYPE_CHECKING

from raddino.cli.app import app
from raddino.cli.generate import ConfigCommand, Outcome, register_deferred

if TYPE_CHECKING:
    from raddino.data.shards import ShardRun

HELP = """Prepare images as `raddino prepare` does and store them in tar shards for `pretrain`
(train.shards: OUT).

Each shard holds KEY.png + KEY.json per image (WebDataset layout) and has an index of member offsets
beside it. Rerun the same command to resume: finished shards are kept, a cut-short one is written again.
Exit status 1 when nothing could be stored, or with --strict when anything failed; the reasons are in
OUT/errors.csv.
"""


def _run(settings: ShardRun) -> Outcome:
    from raddino.data.shards import ShardSettings, write_shards

    summary = write_shards(
        settings.input,
        settings.out,
        ShardSettings(
            images_per_shard=settings.images_per_shard,
            size=settings.size,
            bits=settings.bits,
            voi=settings.voi,
            max_pixels=settings.max_pixels,
        ),
        workers=settings.workers,
        overwrite=settings.overwrite,
        progress=not settings.quiet,
    )
    if summary.total == 0:
        return Outcome(summary.line(), f"error: no images found in {settings.input}", exit_code=1)
    stored = summary.written + summary.kept
    failed = stored == 0 or (settings.strict and summary.failed > 0)
    return Outcome(summary.line(), exit_code=1 if failed else 0)


def _spec() -> ConfigCommand:
    from raddino.data.shards import ShardRun
    from raddino.io.manifest import ManifestError

    return ConfigCommand(
        "shard",
        ShardRun,
        _run,
        arguments=("input", "out"),
        short={"quiet": "-q"},
        choices={"voi": {"auto": "auto", "on": True, "off": False}},
        errors=(ManifestError, ValueError, OSError),
    )


register_deferred(app, "shard", _spec, help=HELP)
