"""Pre-training loss curves drawn by matplotlib from ``metrics.jsonl``: one panel per loss term.

Each panel has its own y range because the terms differ in scale (DINO ~ log of the prototype count,
KoLeo can be negative), which one shared axis would flatten. The object API (``Figure`` + Agg canvas, as
:mod:`raddino.viz.figure`) keeps no global state. SVG output keeps text as text and fixed element ids
(``svg.hashsalt``) and carries no date, so the same records give the same file.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from raddino.io.atomic import atomic_path

PRETRAINING_LOSSES = ("train/loss", "train/dino", "train/ibot", "train/koleo")
"""The loss terms pre-training logs (the engine's keys; runs of earlier versions logged them without
``train/``, and are drawn from those)."""

_FORMATS = {".svg": "svg", ".png": "png"}
_PANEL_INCHES = (2.8, 2.3)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def plotted_keys(records: Sequence[dict[str, Any]], keys: Sequence[str] = ()) -> list[str]:
    """The keys that get a panel: those of ``keys`` (default :data:`PRETRAINING_LOSSES`) some record holds.

    Raises:
        ValueError: no record holds any of them.
    """
    wanted = list(keys or PRETRAINING_LOSSES)
    present = [k for k in wanted if any(_is_number(r.get(k)) for r in records)]
    if not present and not keys:  # a run logged before the keys were namespaced
        wanted = [key.removeprefix("train/") for key in PRETRAINING_LOSSES]
        present = [k for k in wanted if any(_is_number(r.get(k)) for r in records)]
    if not present:
        raise ValueError(f"no loss values ({', '.join(wanted)}) among {len(records)} metrics records")
    return present


def loss_curves_figure(records: Sequence[dict[str, Any]], keys: Sequence[str] = ()) -> Figure:
    """A figure of ``metrics.jsonl`` records: a panel per key against ``iteration``.

    Args:
        records: Logged records, each with ``iteration`` and float terms (non-finite values are skipped).
        keys: Terms to draw (default: every one of :data:`PRETRAINING_LOSSES` seen), each panel titled by
            the key's last part (``dino``).

    Raises:
        ValueError: no record holds any of the keys.
    """
    present = plotted_keys(records, keys)
    width, height = _PANEL_INCHES
    figure = Figure(figsize=(width * len(present), height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    panels = figure.subplots(1, len(present), squeeze=False)[0]
    for index, (axes, key) in enumerate(zip(panels, present, strict=True)):
        points = [
            (float(r["iteration"]), float(r[key]))
            for r in records
            if _is_number(r.get(key)) and math.isfinite(r[key]) and "iteration" in r
        ]
        axes.plot([p[0] for p in points], [p[1] for p in points], color=f"C{index}", linewidth=1.6)
        axes.set_title(key.split("/")[-1], fontsize=11)
        axes.set_xlabel("iteration", fontsize=9)
        axes.tick_params(labelsize=8)
        axes.grid(alpha=0.3)
    return figure


def write_loss_curves(records: Sequence[dict[str, Any]], out: Path, keys: Sequence[str] = ()) -> Path:
    """Draw :func:`loss_curves_figure` into ``out`` (``.svg`` or ``.png``, by its suffix) atomically.

    Raises:
        ValueError: another suffix, or no record holds any of the keys.
    """
    out = Path(out)
    kind = _FORMATS.get(out.suffix.lower())
    if kind is None:
        raise ValueError(f"{out}: loss curves are written as .svg or .png, not '{out.suffix}'")
    figure = loss_curves_figure(records, keys)
    with matplotlib.rc_context({"svg.hashsalt": "raddino", "svg.fonttype": "none"}), atomic_path(out) as tmp:
        metadata = {"Date": None} if kind == "svg" else {}
        figure.savefig(tmp, format=kind, metadata=metadata, facecolor="white")
    return out
