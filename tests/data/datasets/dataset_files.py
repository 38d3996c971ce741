"""Paths and helpers shared by the dataset-manifest tests (a module, so test files can import it)."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import shutil
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from raddino.data.datasets import DatasetManifest

# Located without importing the package (which would import torch and scikit-image for nothing).
_XRV = importlib.util.find_spec("torchxrayvision")
if _XRV is None or _XRV.origin is None:
    raise ImportError("torchxrayvision (in the dev extra) is needed: its wheel ships the real metadata files")
XRV_DATA = Path(_XRV.origin).parent / "data"
FIXTURES = Path(__file__).parent / "fixtures"
STEP = 97  # a prime: the subset lands on every kind of row, not on a regular pattern of the file


def read_raw(path: Path, columns: Sequence[str]) -> list[dict[str, str]]:
    """Some columns of a CSV (gzip or one-file zip too) with the standard library: the test oracle."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive, archive.open(archive.namelist()[0]) as binary:
            return _rows(binary, columns)
    if path.suffix == ".gz":
        with gzip.open(path, "rb") as binary:
            return _rows(binary, columns)
    with open(path, "rb") as binary:
        return _rows(binary, columns)


def _rows(binary: IO[bytes], columns: Sequence[str]) -> list[dict[str, str]]:
    reader = csv.DictReader(io.TextIOWrapper(binary, encoding="utf-8", newline=""))
    return [{column: row[column] for column in columns} for row in reader]


def touch(paths: Iterable[Path]) -> int:
    """Create empty files (and their folders); returns how many."""
    count = 0
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
        count += 1
    return count


def copy_fixture(name: str, destination: Path) -> Path:
    """Copy a fixture folder's files into ``destination`` (created); returns it."""
    destination.mkdir(parents=True, exist_ok=True)
    for file in (FIXTURES / name).iterdir():
        shutil.copy(file, destination / file.name)
    return destination


@dataclass
class RealBuild:
    """A manifest built from a real metadata file over a partial image tree, plus its oracle."""

    root: Path
    raw: list[dict[str, str]]
    on_disk: set[str]  # absolute paths created
    manifest: DatasetManifest
