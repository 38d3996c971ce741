"""The README's reliability table stays true: every case names a test that exists, and the count is right."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _section() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- section: reliability -->(.*?)<!-- /section: reliability -->", text, re.S)
    assert match, "README.md has no reliability section"
    return match.group(1)


def _defined_tests() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "tests").rglob("test_*.py"):
        names.update(re.findall(r"^\s*def (test_\w+)\(", path.read_text(encoding="utf-8"), re.M))
    return names


def test_every_case_names_a_test_that_exists_and_the_count_is_right() -> None:
    section = _section()
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| kind")]
    assert rows
    named = [re.findall(r"`(test_\w+)`", row) for row in rows]
    assert [row for row, tests in zip(rows, named, strict=True) if len(tests) != 1] == []
    missing = sorted({tests[0] for tests in named} - _defined_tests())
    assert missing == []
    stated = re.search(r"\*\*(\d+) cases\*\*", section)
    assert stated, "the section states no count"
    assert int(stated.group(1)) == len(rows)
