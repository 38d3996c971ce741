"""``raddino stats``: pixel mean and std of a dataset, for ``image_mean`` / ``image_std``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from raddino.cli.app import app
from raddino.cli.generate import ConfigCommand, Outcome, register_deferred

if TYPE_CHECKING:
    from raddino.data.stats import StatsConfig

HELP = "Mean and std of every pixel after the release's [0, 1] scaling; unreadable files listed beside OUT."


def _run(settings: StatsConfig) -> Outcome:
    from raddino.data.stats import run_stats

    result = run_stats(settings)
    text = (
        f"mean {result.mean:.4f}, std {result.std:.4f} over {result.n_images} images "
        f"({result.n_pixels} pixels): {settings.out}"
    )
    if result.n_failed:
        return Outcome(text, f"{result.n_failed} unreadable: see {result.errors}", exit_code=1)
    return Outcome(text)


def _spec() -> ConfigCommand:
    from raddino.data.stats import StatsConfig
    from raddino.io.manifest import ManifestError

    return ConfigCommand(
        "stats",
        StatsConfig,
        _run,
        arguments=("input",),
        short={"out": "-o"},
        errors=(ManifestError, ValueError, OSError),
    )


register_deferred(app, "stats", _spec, help=HELP)
