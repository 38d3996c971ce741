"""Pre-training loss curves from metrics.jsonl: the engine's keys, and runs logged before them."""

from __future__ import annotations

import re

import pytest

from raddino.viz.loss_svg import loss_curves_svg


def _titles(svg: str) -> list[str]:
    return re.findall(r'font-size="13">([^<]+)</text>', svg)


def test_a_panel_per_logged_loss_term_titled_by_its_name() -> None:
    records = [
        {"iteration": i, "train/loss": 9.0 - i, "train/dino": 4.0 - i / 2, "train/koleo": -1.0 * i,
         "train/learning_rate": 0.001}
        for i in range(1, 5)
    ]  # fmt: skip
    svg = loss_curves_svg(records)
    assert _titles(svg) == ["loss", "dino", "koleo"]  # no iBOT logged, no panel; schedules not drawn
    # the dino panel runs from 3.5 at iteration 1 down to 2.0 at iteration 4: the full height of its box
    assert ">3.5</text>" in svg
    assert ">2</text>" in svg


def test_a_run_logged_before_the_keys_were_namespaced_is_drawn_too() -> None:
    records = [{"iteration": i, "loss": 5.0 - i, "ibot": 2.0, "lr": 0.1} for i in range(1, 4)]
    assert _titles(loss_curves_svg(records)) == ["loss", "ibot"]
    with pytest.raises(ValueError, match=r"no loss values \(train/dino\)"):
        loss_curves_svg(records, keys=["train/dino"])
