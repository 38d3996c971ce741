"""PNG figures of the evaluation results (matplotlib, no display needed)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from raddino.evaluate.metrics import MeanStd
from raddino.io.atomic import atomic_path


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: works on servers without a display
    import matplotlib.pyplot as plt

    return plt


def bar_chart(path: Path, values: Mapping[str, MeanStd], title: str, ylabel: str) -> Path:
    """Bars of mean with std error bars, one per key (e.g. AUPRC per finding)."""
    plt = _pyplot()
    names = list(values)
    figure, axes = plt.subplots(figsize=(max(4.0, 0.7 * len(names) + 1.5), 3.5))
    means = [values[name].mean for name in names]
    stds = [values[name].std for name in names]
    axes.bar(range(len(names)), means, yerr=stds, capsize=3, color="#4C72B0")
    axes.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axes.set_ylim(0, 1)
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=120)
    plt.close(figure)
    return path


def line_chart(
    path: Path,
    x: Sequence[float],
    series: Mapping[str, Sequence[MeanStd]],
    title: str,
    xlabel: str,
    ylabel: str,
) -> Path:
    """Lines with std bands, one per series, against ``x`` on a log axis (e.g. Dice vs training images)."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.0, 3.5))
    for name, points in series.items():
        means = [point.mean for point in points]
        stds = [point.std for point in points]
        axes.plot(x, means, marker="o", label=name)
        lower = [mean - std for mean, std in zip(means, stds, strict=True)]
        upper = [mean + std for mean, std in zip(means, stds, strict=True)]
        axes.fill_between(x, lower, upper, alpha=0.2)
    axes.set_xscale("log")
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_ylim(0, 1)
    axes.set_title(title)
    axes.legend(fontsize="small")
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=120)
    plt.close(figure)
    return path
