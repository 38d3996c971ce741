"""The result files every evaluation command writes, in one shape that ``raddino compare`` reads.

``<task>.json`` holds ``task``, ``encoder``, ``summary`` (``{column: {"mean", "std", "count"}}``, the
numbers a comparison table shows, higher is better) and task-specific details; ``<task>.md`` and
``<task>.csv`` hold the same summary as a table for people and spreadsheets.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from raddino.evaluate.metrics import MeanStd
from raddino.io.atomic import atomic_write_text


def _plain(value: Any) -> Any:
    if isinstance(value, MeanStd):
        return _plain(value.to_dict())  # an undefined mean or std is null too
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN; a missing number is null
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        return _plain(value.item())
    return value


def format_mean_std(value: MeanStd | Mapping[str, Any] | None, digits: int = 4) -> str:
    """``0.8123 ± 0.0100`` (``—`` when undefined)."""
    if value is None:
        return "—"
    mean, std = (
        (value.mean, value.std) if isinstance(value, MeanStd) else (value.get("mean"), value.get("std"))
    )
    if mean is None or not math.isfinite(mean):
        return "—"
    if std is None or not math.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_text(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows([[_csv_cell(cell) for cell in row] for row in rows])
    return buffer.getvalue()


def _csv_cell(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return ""
    return value


def write_json(path: Path, payload: Mapping[str, Any]) -> Path:
    """Write ``payload`` as indented JSON (NaN as null), atomically."""
    return atomic_write_text(path, json.dumps(_plain(payload), indent=2) + "\n")


def summary_rows(summary: Mapping[str, MeanStd]) -> tuple[list[str], list[list[Any]]]:
    """The summary as CSV rows: metric, mean, std, count."""
    rows = [[name, value.mean, value.std, value.count] for name, value in summary.items()]
    return ["metric", "mean", "std", "count"], rows


def write_results(
    out_dir: Path,
    task: str,
    encoder: str,
    summary: Mapping[str, MeanStd],
    details: Mapping[str, Any],
    markdown: str,
) -> dict[str, Path]:
    """Write ``<task>.json``, ``<task>.md`` and ``<task>.csv`` into ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"task": task, "encoder": encoder, "summary": summary, **details}
    header, rows = summary_rows(summary)
    return {
        "json": write_json(out_dir / f"{task}.json", payload),
        "markdown": atomic_write_text(out_dir / f"{task}.md", markdown),
        "csv": atomic_write_text(out_dir / f"{task}.csv", csv_text(header, rows)),
    }


def encoder_name(model: str, embeddings: str = "") -> str:
    """A short name for the encoder evaluated: the model folder or file name, or the embeddings file's."""
    source = model or embeddings
    if not source:
        return "encoder"
    path = Path(source)
    return path.stem if path.suffix in (".parquet", ".safetensors", ".pth") else (path.name or source)
