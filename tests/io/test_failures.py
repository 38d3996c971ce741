"""FailureLog: per-item errors written down at once, so a long run never dies of one bad file."""

from __future__ import annotations

import csv
from pathlib import Path

from raddino.io.failures import ERROR_COLUMNS, FailureLog


def test_records_rows_with_one_header_and_counts(tmp_path: Path) -> None:
    log = FailureLog(tmp_path / "out" / "errors.csv")
    assert log.read() == []
    log.record("a.dcm", "uniform image", stage="read")
    log.record(Path("b.png"), 'bad, "quoted"\nreason  with   spaces', stage="write")
    assert log.count == 2
    with open(log.path, newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == list(ERROR_COLUMNS)
    assert rows[1] == ["a.dcm", "read", "uniform image"]
    assert rows[2] == ["b.png", "write", 'bad, "quoted" reason with spaces']  # one line, CSV-quoted


def test_a_resumed_run_appends_without_a_second_header_and_reset_starts_afresh(tmp_path: Path) -> None:
    FailureLog(tmp_path / "errors.csv").record("a.dcm", "first run")
    resumed = FailureLog(tmp_path / "errors.csv")
    resumed.record("b.dcm", "second run")
    assert [row["path"] for row in resumed.read()] == ["a.dcm", "b.dcm"]
    assert resumed.count == 1  # this run's failures only
    resumed.reset()
    assert not resumed.path.exists()
    assert (resumed.count, resumed.read()) == (0, [])
