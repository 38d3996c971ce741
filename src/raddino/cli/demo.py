"""``raddino demo``: the whole pipeline on built-in synthetic data, no downloads."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from raddino.cli.app import app
from raddino.cli.generate import ConfigCommand, Outcome, register_deferred

if TYPE_CHECKING:
    from raddino.demo.plan import DemoConfig


def _run(settings: DemoConfig) -> Outcome:
    from raddino.demo import run_demo
    from raddino.demo.page import HEADLINE

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = run_demo(settings.out, settings.plan(), seed=settings.seed)
    lines = [
        f"{len(result.ran)} step(s) run, {len(result.skipped)} already done; "
        f"{sum(result.seconds.values()):.0f} s of steps in all"
    ]
    lines += [
        f"{task}: pre-trained − random init "
        + ", ".join(f"{c} {m:+.3f}" for c, m in columns.items() if c in HEADLINE)
        for task, columns in result.margins.items()
    ]
    return Outcome("\n".join([*lines, f"page: {result.page}"]))


def _spec() -> ConfigCommand:
    from raddino.demo.plan import DemoConfig

    return ConfigCommand("demo", DemoConfig, _run, short={"out": "-o"})


register_deferred(
    app,
    "demo",
    _spec,
    help="Phantoms → CPU pre-training → export → evaluations against random init → report.html.",
)
