"""The sweep's figure, in the paper's layout (matplotlib PNG).

* ``resolution`` (Figure 1 / A.1) and numeric dotted keys: test AUPRC against the value, one panel per
  finding group (large / small findings) with a thin line per finding and the group's mean in bold with
  its interval; without groups one panel of every finding and the macro mean.
* ``data-size`` (Figure 2): the same against the number of pre-training images, on a log axis.
* ``init`` / ``objective`` / other values (Tables 2 and 6): bars per value for the macro mean and each
  group (or each finding without groups), with their intervals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from raddino.io.atomic import atomic_path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: works on servers without a display
    import matplotlib.pyplot as plt

    return plt


def numeric_axis(sweep: str, table: Mapping[str, Any]) -> list[float] | None:
    """The x value of each point value (images for data-size), or None when the values are not numbers."""
    if sweep == "data-size":
        return [row["images"] for row in table.values()]
    try:
        return [float(value) for value in table]
    except ValueError:
        return None


def _stats(table: Mapping[str, Any], metric: str) -> tuple[list[float], list[float]]:
    rows = [row["metrics"].get(metric, {}) for row in table.values()]
    means = [row.get("mean", math.nan) for row in rows]
    stds = [row.get("std", 0.0) if math.isfinite(row.get("std", math.nan)) else 0.0 for row in rows]
    return means, stds


def _line_panel(axes: Any, x: list[float], table: Mapping[str, Any], findings: list[str], bold: str) -> None:
    for finding in findings:
        means, _ = _stats(table, f"auprc/{finding}")
        axes.plot(x, means, marker=".", linewidth=1, alpha=0.7, label=finding)
    means, stds = _stats(table, bold)
    axes.errorbar(x, means, yerr=stds, color="black", linewidth=2.5, capsize=4, marker="o", label="mean")
    axes.set_ylim(0, 1)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="x-small")


def _panels(groups: Mapping[str, list[str]], findings: list[str]) -> list[tuple[str, list[str], str]]:
    if not groups:
        return [("all findings", findings, "macro_auprc")]
    return [(f"{name} findings", members, f"group/{name}") for name, members in groups.items()]


def sweep_figure(
    path: Path, sweep: str, table: Mapping[str, Any], groups: Mapping[str, list[str]], findings: list[str]
) -> Path:
    """Write the figure of ``table`` (:func:`raddino.ablate.results.by_value`) to ``path``."""
    plt = _pyplot()
    x = numeric_axis(sweep, table)
    xlabel = {"resolution": "input resolution (px)", "data-size": "pre-training images"}.get(sweep, sweep)
    if x is not None:
        panels = _panels(groups, findings)
        figure, grid = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
        for axes, (title, members, bold) in zip(grid[0], panels, strict=True):
            _line_panel(axes, x, table, members, bold)
            axes.set_title(title)
            axes.set_xlabel(xlabel)
            if sweep == "data-size":
                axes.set_xscale("log")
            else:
                axes.set_xticks(x, list(table))
        grid[0][0].set_ylabel("test AUPRC (linear probe)")
    else:
        metrics = ["macro_auprc", *([f"group/{g}" for g in groups] or [f"auprc/{f}" for f in findings])]
        figure, axes = plt.subplots(figsize=(max(5.0, 0.9 * len(metrics) * len(table) / 2 + 2), 3.6))
        width = 0.8 / max(1, len(table))
        for index, value in enumerate(table):
            row = table[value]["metrics"]
            means = [row.get(m, {}).get("mean", math.nan) for m in metrics]
            stds = [row.get(m, {}).get("std", 0.0) for m in metrics]
            offsets = [i + (index - (len(table) - 1) / 2) * width for i in range(len(metrics))]
            axes.bar(offsets, means, width, yerr=stds, capsize=3, label=value)
        axes.set_xticks(range(len(metrics)), [m.split("/")[-1] for m in metrics], rotation=30, ha="right")
        axes.set_ylim(0, 1)
        axes.set_ylabel("test AUPRC (linear probe)")
        axes.legend(title=sweep, fontsize="small")
    figure.suptitle(f"Ablation: {sweep}")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=120)
    plt.close(figure)
    return path


__all__ = ["numeric_axis", "sweep_figure"]
