from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from raddino.evaluate.compare import CompareConfig, CompareError, run_compare


def _result(folder: Path, task: str, encoder: str, summary: dict[str, tuple[float, float]]) -> Path:
    folder.mkdir(parents=True)
    payload = {
        "task": task,
        "encoder": encoder,
        "summary": {name: {"mean": mean, "std": std, "count": 5} for name, (mean, std) in summary.items()},
    }
    path = folder / f"{task}.json"
    path.write_text(json.dumps(payload))
    return path


def test_best_value_per_column_is_marked_with_its_margin(tmp_path: Path) -> None:
    _result(
        tmp_path / "runs" / "a",
        "probe",
        "rad-dino",
        {"macro_auprc": (0.80, 0.01), "auprc/nodule": (0.50, 0.02)},
    )
    _result(
        tmp_path / "runs" / "b",
        "probe",
        "dinov2",
        {"macro_auprc": (0.75, 0.02), "auprc/nodule": (0.55, 0.03)},
    )
    _result(
        tmp_path / "runs" / "c",
        "probe",
        "random",
        {"macro_auprc": (0.40, 0.05), "auprc/nodule": (0.20, 0.01)},
    )
    _result(tmp_path / "runs" / "d", "metadata", "rad-dino", {"accuracy/sex": (0.9, 0.01)})
    (tmp_path / "runs" / "a" / "seeds").mkdir()
    (tmp_path / "runs" / "a" / "seeds" / "seed-0.json").write_text("{}")  # per-seed files are not results
    result = run_compare(CompareConfig(results=[str(tmp_path / "runs")], out=str(tmp_path / "cmp")))
    probe = result.tables["probe"]
    assert probe["best"] == {"macro_auprc": "rad-dino", "auprc/nodule": "dinov2"}
    assert probe["delta"]["macro_auprc"] == pytest.approx(0.05)
    assert probe["delta"]["auprc/nodule"] == pytest.approx(0.05)
    markdown = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| rad-dino | **0.800 ± 0.010** | 0.500 ± 0.020 |" in markdown
    assert "| Δ best − runner-up | +0.050 | +0.050 |" in markdown
    assert markdown.index("## probe") < markdown.index("## metadata")
    with open(tmp_path / "cmp" / "compare.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    best = [row for row in rows if row["best"] == "True"]
    assert {(row["encoder"], row["metric"]) for row in best} == {
        ("rad-dino", "macro_auprc"),
        ("dinov2", "auprc/nodule"),
        ("rad-dino", "accuracy/sex"),
    }
    assert float(
        next(row for row in best if row["metric"] == "macro_auprc")["delta_to_runner_up"]
    ) == pytest.approx(0.05)


def test_names_columns_and_errors(tmp_path: Path) -> None:
    first = _result(tmp_path / "x", "knn", "enc", {"macro_auprc": (0.6, 0.0), "precision_at_k": (0.3, 0.0)})
    second = _result(tmp_path / "y", "knn", "enc", {"macro_auprc": (0.7, 0.0), "precision_at_k": (0.2, 0.0)})
    result = run_compare(
        CompareConfig(results=[str(first), str(second)], out=str(tmp_path / "o"), columns=["macro_auprc"])
    )
    assert result.tables["knn"]["columns"] == ["macro_auprc"]
    assert result.tables["knn"]["best"]["macro_auprc"] == "enc (y)"  # same names told apart by folder
    named = run_compare(
        CompareConfig(results=[str(first), str(second)], out=str(tmp_path / "p"), names=["A", "B"])
    )
    assert named.tables["knn"]["best"]["macro_auprc"] == "B"
    with pytest.raises(CompareError, match="2 names for 1 result"):
        run_compare(CompareConfig(results=[str(first)], names=["A", "B"], out=str(tmp_path / "q")))
    with pytest.raises(CompareError, match="no such results file"):
        run_compare(CompareConfig(results=[str(tmp_path / "missing.json")], out=str(tmp_path / "q")))
