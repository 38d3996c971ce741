"""``raddino demo``: the whole pipeline on built-in synthetic data, no downloads."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from raddino.cli.app import app


@app.command()
def demo(
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder (re-running resumes).")] = "demo",
    quick: Annotated[
        bool, typer.Option("--quick", help="A tiny version (seconds): every step and section, no learning.")
    ] = False,
    ablation: Annotated[
        bool,
        typer.Option("--ablation/--no-ablation", help="Also pre-train with iBOT off (the paper's ablation)."),
    ] = True,
    seed: Annotated[int, typer.Option(help="Seed of the phantoms, initialisation and splits.")] = 0,
) -> None:
    """Phantoms → CPU pre-training → export → evaluations against random init → report.html."""
    from raddino.demo import full_plan, quick_plan, run_demo
    from raddino.demo.page import HEADLINE

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    plan = quick_plan(ablation) if quick else full_plan(ablation)
    result = run_demo(out, plan, seed=seed)
    typer.echo(
        f"{len(result.ran)} step(s) run, {len(result.skipped)} already done; "
        f"{sum(result.seconds.values()):.0f} s of steps in all"
    )
    for task, columns in result.margins.items():
        typer.echo(
            f"{task}: pre-trained − random init "
            + ", ".join(f"{c} {m:+.3f}" for c, m in columns.items() if c in HEADLINE)
        )
    typer.echo(f"page: {result.page}")
