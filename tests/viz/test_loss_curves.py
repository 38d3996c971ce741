"""Pre-training loss curves from metrics.jsonl, drawn by matplotlib: the engine's keys, and runs logged
before them."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raddino.viz.loss_curves import loss_curves_figure, write_loss_curves

RECORDS = [
    {"iteration": i, "train/loss": 9.0 - i, "train/dino": 4.0 - i / 2, "train/koleo": -1.0 * i,
     "train/learning_rate": 0.001}
    for i in range(1, 5)
]  # fmt: skip


def test_a_panel_per_logged_loss_term_with_the_logged_values() -> None:
    figure = loss_curves_figure([*RECORDS, {"iteration": 5, "train/dino": float("nan")}])
    titles = [axes.get_title() for axes in figure.axes]
    assert titles == ["loss", "dino", "koleo"]  # no iBOT logged, no panel; schedules not drawn
    (dino,) = figure.axes[1].get_lines()
    np.testing.assert_array_equal(dino.get_xdata(), [1, 2, 3, 4])  # the NaN at iteration 5 is skipped
    np.testing.assert_array_equal(dino.get_ydata(), [3.5, 3.0, 2.5, 2.0])
    low, high = figure.axes[1].get_ylim()
    assert low <= 2.0  # each panel spans its own term's range
    assert high >= 3.5
    assert figure.axes[2].get_ylim()[0] <= -4.0


def test_a_run_logged_before_the_keys_were_namespaced_is_drawn_too() -> None:
    records = [{"iteration": i, "loss": 5.0 - i, "ibot": 2.0, "lr": 0.1} for i in range(1, 4)]
    assert [axes.get_title() for axes in loss_curves_figure(records).axes] == ["loss", "ibot"]
    with pytest.raises(ValueError, match=r"no loss values \(train/dino\)"):
        loss_curves_figure(records, keys=["train/dino"])


def test_svg_keeps_titles_as_text_and_is_the_same_file_for_the_same_records(tmp_path: Path) -> None:
    first = write_loss_curves(RECORDS, tmp_path / "a" / "loss.svg")
    second = write_loss_curves(RECORDS, tmp_path / "b" / "loss.svg")
    assert first.read_bytes() == second.read_bytes()
    texts = {
        "".join(node.itertext()).strip() for node in ET.parse(first).iter("{http://www.w3.org/2000/svg}text")
    }
    assert {"loss", "dino", "koleo", "iteration"} <= texts
    assert not list(tmp_path.glob("**/*.tmp"))


def test_png_by_suffix_and_another_suffix_is_named(tmp_path: Path) -> None:
    png = write_loss_curves(RECORDS, tmp_path / "loss.png")
    with Image.open(png) as image:
        assert image.format == "PNG"
        assert image.size == (3 * 280, 230)  # three 2.8 × 2.3 inch panels at 100 dpi
    with pytest.raises(ValueError, match=r"loss\.pdf: loss curves are written as \.svg or \.png"):
        write_loss_curves(RECORDS, tmp_path / "loss.pdf")
