"""Pre-training loss curves as a standalone SVG (no plotting library): one panel per loss term.

Each panel has its own y range because the terms differ in scale (DINO ~ log of the prototype count,
KoLeo can be negative), which one shared axis would flatten.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raddino.io.atomic import atomic_write_text

_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def _panel(xs: list[float], ys: list[float], name: str, colour: str, left: float, width: float) -> str:
    top, height = 30.0, 170.0
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    if y1 - y0 < 1e-12:
        y0, y1 = y0 - 0.5, y1 + 0.5
    if x1 - x0 < 1e-12:
        x1 = x0 + 1

    def point(x: float, y: float) -> str:
        return f"{left + (x - x0) / (x1 - x0) * width:.1f},{top + (1 - (y - y0) / (y1 - y0)) * height:.1f}"

    line = " ".join(point(x, y) for x, y in zip(xs, ys, strict=True))
    return (
        f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="none" stroke="#bbb"/>'
        f'<text x="{left + width / 2}" y="20" text-anchor="middle" font-size="13">{html.escape(name)}</text>'
        f'<text x="{left - 4}" y="{top + 10}" text-anchor="end" font-size="10">{y1:.3g}</text>'
        f'<text x="{left - 4}" y="{top + height}" text-anchor="end" font-size="10">{y0:.3g}</text>'
        f'<text x="{left}" y="{top + height + 14}" font-size="10">{x0:.0f}</text>'
        f'<text x="{left + width}" y="{top + height + 14}" text-anchor="end" font-size="10">{x1:.0f}</text>'
        f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="1.8"/>'
    )


PRETRAINING_LOSSES = ("train/loss", "train/dino", "train/ibot", "train/koleo")
"""The loss terms pre-training logs (the engine's keys; runs of earlier versions logged them without
``train/``, and are drawn from those)."""


def loss_curves_svg(records: Sequence[dict[str, Any]], keys: Sequence[str] = ()) -> str:
    """The SVG text of ``metrics.jsonl`` records: a panel per key against ``iteration``.

    Args:
        records: Logged records, each with ``iteration`` and float terms.
        keys: Terms to draw (default: every one of :data:`PRETRAINING_LOSSES` seen), each panel titled by
            the key's last part (``dino``).

    Raises:
        ValueError: no record holds any of the keys.
    """
    wanted = list(keys or PRETRAINING_LOSSES)
    present = [k for k in wanted if any(isinstance(r.get(k), int | float) for r in records)]
    if not present and not keys:  # a run logged before the keys were namespaced
        wanted = [key.removeprefix("train/") for key in PRETRAINING_LOSSES]
        present = [k for k in wanted if any(isinstance(r.get(k), int | float) for r in records)]
    if not present:
        raise ValueError(f"no loss values ({', '.join(wanted)}) among {len(records)} metrics records")
    panel_width, gap = 220.0, 60.0
    width = int(len(present) * (panel_width + gap) + 20)
    parts = []
    for index, key in enumerate(present):
        points = [
            (float(r["iteration"]), float(r[key]))
            for r in records
            if isinstance(r.get(key), int | float) and math.isfinite(r[key]) and "iteration" in r
        ]
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        left = 50 + index * (panel_width + gap)
        colour = _COLOURS[index % len(_COLOURS)]
        parts.append(_panel(xs, ys, key.split("/")[-1], colour, left, panel_width))
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="230" '
        f'viewBox="0 0 {width} 230" font-family="sans-serif">'
        f'<rect width="100%" height="100%" fill="white"/>{"".join(parts)}'
        f'<text x="{width / 2}" y="226" text-anchor="middle" font-size="11">iteration</text></svg>\n'
    )


def write_loss_curves(records: Sequence[dict[str, Any]], out: Path, keys: Sequence[str] = ()) -> Path:
    """Write :func:`loss_curves_svg` to ``out`` atomically and return it."""
    return atomic_write_text(out, loss_curves_svg(records, keys))
