"""Fixtures of the evaluation tests (helpers live in ``synthetic_sets.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from synthetic_sets import SyntheticSet, make_synthetic_set


@pytest.fixture
def synthetic_set(tmp_path: Path) -> SyntheticSet:
    return make_synthetic_set(tmp_path / "data")
