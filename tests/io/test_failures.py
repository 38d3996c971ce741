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
    assert resumed.path.read_text() == "path,stage,reason\n"
    assert (resumed.count, resumed.read()) == (0, [])


def test_begin_writes_the_header_once_and_keeps_a_resumed_runs_failures(tmp_path: Path) -> None:
    """An errors CSV listed as an output exists, header only, when nothing fails."""
    log = FailureLog(tmp_path / "run" / "errors.csv")
    log.begin()
    assert log.path.read_text() == "path,stage,reason\n"
    assert log.read() == []
    log.record("a.dcm", "truncated")
    FailureLog(log.path).begin()  # a resumed run: the earlier failure stays
    assert [row["path"] for row in log.read()] == ["a.dcm"]
