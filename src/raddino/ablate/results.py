"""A sweep's numbers: each point's probe (and segmentation) summary, finding groups, and the tables.

Per point, the metrics are the probe's test summary (``macro_auprc``, ``auprc/<finding>``, …, mean ± std
over the probe's seeds), the segmentation's when it ran, and ``group/<name>``: the mean AUPRC of a group's
findings, taken per probe seed and then averaged. Per value, the points of its pre-training seeds are
combined: with several seeds the mean ± std (ddof 0) of their means, with one the point's own interval
over probe seeds (the ``over`` column says which).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from raddino.evaluate.results import csv_text, markdown_table
from raddino.io.atomic import atomic_write_text

Stats = dict[str, float]
"""``{"mean": …, "std": …, "count": …}`` as the evaluations write them."""


def parse_groups(groups: Sequence[str], groups_file: str = "", column: str = "group") -> dict[str, list[str]]:
    """Finding groups from ``NAME=finding,finding`` words or from a CSV's ``finding`` and ``column``.

    Raises:
        ValueError: a word without ``=`` or without findings, a file without the columns; names it.
    """
    found: dict[str, list[str]] = {}
    for word in groups:
        name, _, members = word.partition("=")
        findings = [item.strip() for item in members.split(",") if item.strip()]
        if not name.strip() or not findings:
            raise ValueError(f"groups: {word!r} must look like NAME=finding,finding")
        found.setdefault(name.strip(), []).extend(findings)
    if groups_file:
        with open(groups_file, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            missing = {"finding", column} - set(reader.fieldnames or [])
            if missing:
                raise ValueError(f"{groups_file}: no column {sorted(missing)[0]!r} (groups_file)")
            for row in reader:
                if row["finding"].strip() and row[column].strip():
                    found.setdefault(row[column].strip(), []).append(row["finding"].strip())
    return found


def _read(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _mean_std(values: Sequence[float]) -> Stats:
    finite = [value for value in values if value is not None and math.isfinite(value)]
    if not finite:
        return {"mean": float("nan"), "std": float("nan"), "count": 0}
    mean = sum(finite) / len(finite)
    std = math.sqrt(sum((value - mean) ** 2 for value in finite) / len(finite))
    return {"mean": mean, "std": std, "count": len(finite)}


def _finite_or_nan(stats: Mapping[str, Any]) -> Stats:
    """Stats as read from JSON, where a NaN (a finding without positives) was written as null."""
    return {
        "mean": float("nan") if stats.get("mean") is None else float(stats["mean"]),
        "std": float("nan") if stats.get("std") is None else float(stats["std"]),
        "count": int(stats.get("count") or 0),
    }


def point_metrics(record: Mapping[str, Any], groups: Mapping[str, list[str]]) -> dict[str, Stats]:
    """One point's metrics (probe summary, ``group/<name>``, segmentation summary).

    Raises:
        ValueError: a group names a finding the probe did not report; names the group and finding.
    """
    probe = _read(record["results"]["probe"])
    metrics = {name: _finite_or_nan(stats) for name, stats in probe["summary"].items()}
    findings = probe.get("findings", [])
    for name, members in groups.items():
        unknown = [member for member in members if member not in findings]
        if unknown:
            raise ValueError(f"groups: {name!r} names {unknown[0]!r}, not a probed finding ({findings})")
        per_seed = []
        for seed in probe["seeds"]:
            values = [seed["test"]["auprc"].get(member) for member in members]
            finite = [value for value in values if value is not None and math.isfinite(value)]
            per_seed.append(sum(finite) / len(finite) if finite else float("nan"))
        metrics[f"group/{name}"] = _mean_std(per_seed)
    if "segment" in record["results"]:
        summary = _read(record["results"]["segment"])["summary"]
        metrics.update({name: _finite_or_nan(stats) for name, stats in summary.items()})
    return metrics


def by_value(records: Sequence[Mapping[str, Any]]) -> dict:
    """Value → metric → stats over its pre-training seeds (see the module), in the sweep's order.

    Args:
        records: Each point's ``point.json`` with its ``metrics`` (:func:`point_metrics`) added.
    """
    metrics = [record["metrics"] for record in records]
    values: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        values.setdefault(record["value"], []).append(index)
    table: dict[str, dict[str, Any]] = {}
    for value, indices in values.items():
        names = list(dict.fromkeys(name for i in indices for name in metrics[i]))
        row: dict[str, Any] = {}
        for name in names:
            if len(indices) == 1:
                row[name] = {**metrics[indices[0]][name], "over": "probe seeds"}
            else:
                means = [metrics[i].get(name, {}).get("mean", float("nan")) for i in indices]
                row[name] = {**_mean_std(means), "over": "pre-training seeds"}
        table[value] = {
            "metrics": row,
            "images": sum(records[i]["images"] for i in indices) / len(indices),
            "seconds": sum(records[i]["seconds"]["total"] for i in indices) / len(indices),
            "seeds": [records[i]["seed"] for i in indices],
        }
    return table


def _cell(stats: Mapping[str, Any] | None, digits: int = 3) -> str:
    if not stats or not math.isfinite(stats.get("mean", float("nan"))):
        return "—"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def shown_metrics(table: Mapping[str, Any]) -> list[str]:
    """The columns of the tables: macro AUPRC / AUROC, the groups, each finding's AUPRC, segmentation."""
    names = list(dict.fromkeys(name for row in table.values() for name in row["metrics"]))
    order = ("macro_auprc", "macro_auroc", "group/", "auprc/", "dice")
    return [name for prefix in order for name in names if name.startswith(prefix)]


def write_tables(
    out: Path, sweep: str, records: Sequence[Mapping[str, Any]], table: Mapping[str, Any]
) -> dict:
    """Write ``points.csv`` (one row per point), ``ablation.csv`` (value × metric), ``ablation.md`` and
    ``ablation.json``; returns their paths."""
    columns = shown_metrics(table)
    point_rows = []
    for record in records:
        metrics = record["metrics"]
        point_rows.append(
            [
                record["point"],
                record["value"],
                record["seed"],
                record["images"],
                record["iterations"],
                record["seconds"]["total"],
                *(metrics.get(c, {}).get("mean", "") for c in columns),
            ]
        )
    header = ["point", sweep, "seed", "images", "iterations", "seconds", *columns]
    long_rows = [
        [
            value,
            name,
            row["metrics"][name]["mean"],
            row["metrics"][name]["std"],
            row["metrics"][name]["count"],
            row["metrics"][name]["over"],
            row["images"],
            row["seconds"],
        ]
        for value, row in table.items()
        for name in columns
        if name in row["metrics"]
    ]
    long_header = [sweep, "metric", "mean", "std", "count", "over", "images", "seconds_per_point"]
    md_rows = [
        [
            value,
            f"{row['images']:.0f}",
            f"{row['seconds']:.0f}",
            *(_cell(row["metrics"].get(c)) for c in columns),
        ]
        for value, row in table.items()
    ]
    markdown = (
        f"# Ablation: {sweep}\n\nTest set of the evaluation manifest; mean ± std over "
        f"{_over(table)}.\n\n" + markdown_table([sweep, "images", "s / point", *columns], md_rows)
    )
    payload = {"sweep": sweep, "values": table, "points": list(records)}
    return {
        "points": atomic_write_text(out / "points.csv", csv_text(header, point_rows)),
        "csv": atomic_write_text(out / "ablation.csv", csv_text(long_header, long_rows)),
        "markdown": atomic_write_text(out / "ablation.md", markdown),
        "json": atomic_write_text(out / "ablation.json", json.dumps(payload, indent=2, default=str) + "\n"),
    }


def _over(table: Mapping[str, Any]) -> str:
    kinds = {stats["over"] for row in table.values() for stats in row["metrics"].values()}
    return " and ".join(sorted(kinds)) or "seeds"


__all__ = ["by_value", "parse_groups", "point_metrics", "shown_metrics", "write_tables"]
