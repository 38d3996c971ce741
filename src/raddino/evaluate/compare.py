"""``raddino compare``: the JSON results of several encoders in the paper's table layout.

One table per task (probe, knn, metadata, segment): a row per encoder, a column per summary metric, each
cell ``mean ± std``. The best value of each column is in bold and the last row gives its margin over the
runner-up (Δ), so a reader sees at once which encoder wins where and by how much. Every metric the commands
report is "higher is better" (AUPRC, AUROC, accuracy, precision@k, Dice).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raddino.config import save_config
from raddino.evaluate.results import csv_text, format_mean_std, markdown_table, write_json
from raddino.io.atomic import atomic_write_text

TASK_ORDER = ("probe", "knn", "metadata", "segment", "fewshot")


class CompareError(ValueError):
    """A results file cannot be read or compared; the message names it."""


@dataclass
class CompareConfig:
    """Settings of ``raddino compare``."""

    results: list[str] = field(default_factory=list)
    """Result JSON files, or folders searched (recursively) for them."""
    out: str = "compare"
    """Output folder (``compare.md``, ``compare.csv``, ``compare.json``)."""
    names: list[str] = field(default_factory=list)
    """Encoder names for the rows, in the order of the result files found (default: recorded names)."""
    columns: list[str] = field(default_factory=list)
    """Summary metrics to show (default: every metric, in the order first seen)."""
    digits: int = 3
    """Decimals shown in the tables."""


@dataclass
class ResultEntry:
    task: str
    encoder: str
    summary: dict[str, dict[str, Any]]
    source: Path


def _result_files(sources: Sequence[str]) -> list[Path]:
    files: list[Path] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            files.extend(p for p in sorted(path.rglob("*.json")) if p.parent.name != "seeds")
        elif path.is_file():
            files.append(path)
        else:
            raise CompareError(f"{path}: no such results file or folder")
    return files


def load_results(sources: Sequence[str], names: Sequence[str] = ()) -> list[ResultEntry]:
    """Every evaluation result (a JSON with ``task`` and ``summary``) among ``sources``."""
    entries = []
    for path in _result_files(sources):
        try:
            payload = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise CompareError(f"{path}: not a readable JSON file: {error}") from error
        if not isinstance(payload, dict) or "summary" not in payload or "task" not in payload:
            continue  # other JSON files (search results, configs) are not comparison inputs
        task = str(payload.get("compare_as", payload["task"]))  # a fine-tuned row sits in the probe's table
        entries.append(
            ResultEntry(task, str(payload.get("encoder", path.parent.name)), payload["summary"], path)
        )
    if not entries:
        raise CompareError(f"no evaluation results (JSON with 'task' and 'summary') in {list(sources)}")
    if names:
        if len(names) != len(entries):
            raise CompareError(
                f"{len(names)} names for {len(entries)} result files: {[str(e.source) for e in entries]}"
            )
        for entry, name in zip(entries, names, strict=True):
            entry.encoder = name
    for task in {entry.task for entry in entries}:  # two runs of one encoder name: add the folder name
        group = [entry for entry in entries if entry.task == task]
        seen = [entry.encoder for entry in group]
        for entry in group:
            if seen.count(entry.encoder) > 1:
                entry.encoder = f"{entry.encoder} ({entry.source.parent.name})"
    return entries


def _mean(entry: ResultEntry, column: str) -> float:
    value = entry.summary.get(column) or {}
    mean = value.get("mean")
    return float(mean) if mean is not None and math.isfinite(mean) else float("nan")


def task_table(entries: Sequence[ResultEntry], columns: Sequence[str], digits: int) -> dict[str, Any]:
    """Rows, best encoder per column and its margin over the runner-up, for one task."""
    best: dict[str, str | None] = {}
    delta: dict[str, float] = {}
    for column in columns:
        ranked = sorted(
            (entry for entry in entries if math.isfinite(_mean(entry, column))),
            key=lambda entry: _mean(entry, column),
            reverse=True,
        )
        best[column] = ranked[0].encoder if ranked else None
        delta[column] = (
            _mean(ranked[0], column) - _mean(ranked[1], column) if len(ranked) > 1 else float("nan")
        )
    rows = []
    for entry in entries:
        cells = [entry.encoder]
        for column in columns:
            text = format_mean_std(entry.summary.get(column), digits)
            cells.append(f"**{text}**" if best[column] == entry.encoder and text != "—" else text)
        rows.append(cells)
    deltas = ["Δ best − runner-up"] + [
        f"+{delta[c]:.{digits}f}" if math.isfinite(delta[c]) else "—" for c in columns
    ]
    return {"rows": rows, "delta_row": deltas, "best": best, "delta": delta}


@dataclass
class CompareResult:
    tables: dict[str, dict[str, Any]]
    outputs: dict[str, Path]

    def __str__(self) -> str:
        return f"{len(self.tables)} table(s) -> {self.outputs['markdown']}"


def run_compare(config: CompareConfig) -> CompareResult:
    """Gather results into ``compare.md``, ``compare.csv`` and ``compare.json``."""
    if not config.results:
        raise CompareError("no results given: pass result JSON files or folders")
    entries = load_results(config.results, config.names)
    tasks = sorted(
        {entry.task for entry in entries},
        key=lambda t: (TASK_ORDER.index(t) if t in TASK_ORDER else len(TASK_ORDER), t),
    )
    tables: dict[str, dict[str, Any]] = {}
    markdown = [
        "# Encoder comparison\n",
        "Best value per column in bold; Δ: its margin over the runner-up.\n",
    ]
    csv_rows: list[list[Any]] = []
    for task in tasks:
        group = [entry for entry in entries if entry.task == task]
        columns = list(dict.fromkeys(column for entry in group for column in entry.summary))
        if config.columns:
            columns = [column for column in columns if column in config.columns]
        table = task_table(group, columns, config.digits)
        tables[task] = {"columns": columns, **table}
        markdown += [
            f"\n## {task}\n",
            markdown_table(["encoder", *columns], [*table["rows"], table["delta_row"]]),
        ]
        for entry in group:
            for column in columns:
                value = entry.summary.get(column) or {}
                is_best = table["best"][column] == entry.encoder
                csv_rows.append(
                    [
                        task,
                        entry.encoder,
                        column,
                        value.get("mean"),
                        value.get("std"),
                        value.get("count"),
                        is_best,
                        table["delta"][column] if is_best else "",
                    ]
                )
    out = Path(config.out)
    header = ["task", "encoder", "metric", "mean", "std", "count", "best", "delta_to_runner_up"]
    outputs = {
        "markdown": atomic_write_text(out / "compare.md", "".join(markdown)),
        "csv": atomic_write_text(out / "compare.csv", csv_text(header, csv_rows)),
        "json": write_json(out / "compare.json", {"task": "compare", "tables": tables}),
        "config": save_config(config, out / "compare_config.yaml"),
    }
    return CompareResult(tables, outputs)
