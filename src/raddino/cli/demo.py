"""``raddino demo``: the whole pipeline on built-in synthetic data, no downloads."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from raddino.cli.app import app, fail
from raddino.cli.generate import ConfigCommand, Outcome, register_deferred

if TYPE_CHECKING:
    from raddino.demo.plan import DemoConfig
    from raddino.demo.robust import SeedMargin


def _run(settings: DemoConfig) -> Outcome:
    from raddino.demo import run_demo
    from raddino.demo.page import HEADLINE
    from raddino.demo.robust import headline

    if settings.seeds < 1:
        fail(f"--seeds: {settings.seeds}, the demo needs at least one pre-training seed")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = run_demo(settings.out, settings.plan(), seed=settings.seed, seeds=settings.seeds)
    lines = [
        f"{len(result.ran)} step(s) run, {len(result.skipped)} already done; "
        f"{sum(result.seconds.values()):.0f} s of steps in all"
    ]
    lines += [
        f"{task}: pre-trained − random init "
        + ", ".join(_margin_text(c, m) for c, m in columns.items() if c in HEADLINE)
        for task, columns in result.seed_margins.items()
    ]
    lines.append(f"headline: {headline(result.seed_margins, HEADLINE, len(result.seeds))}")
    return Outcome("\n".join([*lines, f"page: {result.page}"]))


def _margin_text(column: str, margin: SeedMargin) -> str:
    if margin.spread is None:
        return f"{column} {margin.mean:+.3f}"
    return f"{column} {margin.mean:+.3f} (spread {margin.spread:.3f}, {margin.verdict})"


def _spec() -> ConfigCommand:
    from raddino.demo.plan import DemoConfig

    return ConfigCommand("demo", DemoConfig, _run, short={"out": "-o"})


register_deferred(
    app,
    "demo",
    _spec,
    help="Phantoms → CPU pre-training → export → evaluations against random init → report.html.",
)
