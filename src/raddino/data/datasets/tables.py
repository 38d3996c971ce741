"""Reading the datasets' metadata files: CSV (plain, ``.gz`` or one-file ``.zip``), checked column by column.

Every file is read with a :class:`TableSpec` naming the columns it must have and the ones it may have. A
file missing a required column, or carrying a column the spec does not know, is rejected with an error
naming the file and the columns, since either means the file is not the release the adapter was written
for (a silently ignored label column would be a label lost).
"""

from __future__ import annotations

import csv
import fnmatch
import gzip
import io
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

from raddino.data.datasets.schema import DatasetError


@dataclass(frozen=True)
class TableSpec:
    """The columns of one kind of metadata file.

    Attributes:
        kind: What the file is, in words for error messages (``"NIH Data_Entry_2017.csv"``).
        required: Columns that must be present.
        optional: Columns that may be present.
        extra: ``"error"`` rejects unknown columns; ``"ignore"`` keeps them out of the rows silently (only
            for files whose full header is not documented).
        names: Glob patterns of the file's usual names, used to find it under a dataset root.
    """

    kind: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    extra: Literal["error", "ignore"] = "error"
    names: tuple[str, ...] = field(default=())

    def check(self, path: Path, header: Sequence[str]) -> None:
        """Raise ``DatasetError`` naming the file and the columns when ``header`` does not fit."""
        present = [name for name in header if name.strip()]  # blank names: trailing commas in NIH files
        missing = [name for name in self.required if name not in present]
        unknown = [name for name in present if name not in self.required and name not in self.optional]
        if missing:
            raise DatasetError(
                f"{path}: not a {self.kind} file: missing columns {missing}; found columns {present}"
            )
        if unknown and self.extra == "error":
            raise DatasetError(
                f"{path}: unexpected columns {unknown} for a {self.kind} file "
                f"(expected {list(self.required) + list(self.optional)})"
            )


def _open_text(path: Path) -> IO[str]:
    """A text handle on a CSV, a gzip-compressed CSV or the single CSV inside a zip archive."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    if path.suffix == ".zip":
        archive = zipfile.ZipFile(path)
        members = [name for name in archive.namelist() if name.lower().endswith(".csv")]
        if len(members) != 1:
            archive.close()
            raise DatasetError(f"{path}: expected one CSV file inside the zip archive, found {members}")
        return io.TextIOWrapper(archive.open(members[0]), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def read_header(path: str | Path) -> list[str]:
    """The first line of a CSV file, as column names."""
    path = Path(path)
    try:
        with _open_text(path) as handle:
            return next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile, csv.Error) as error:
        raise DatasetError(f"{path}: cannot read as CSV: {error}") from error


def iter_table(path: str | Path, spec: TableSpec) -> Iterator[tuple[int, dict[str, str]]]:
    """``(line number, row)`` pairs of a metadata file, after checking its header against ``spec``.

    Cells are text with surrounding whitespace kept; blank-named columns are dropped.

    Raises:
        DatasetError: the file cannot be read, its columns do not fit ``spec``, or a line has more cells
            than the header.
    """
    path = Path(path)
    try:
        with _open_text(path) as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise DatasetError(f"{path}: empty file; expected a {spec.kind} file")
            spec.check(path, header)
            keep = [
                (index, name)
                for index, name in enumerate(header)
                if name.strip() and (name in spec.required or name in spec.optional)
            ]
            names = [name for _, name in keep]
            indices = [index for index, _ in keep]
            width = len(header)
            for cells in reader:
                if not cells:
                    continue
                if len(cells) > width and any(cell.strip() for cell in cells[width:]):
                    raise DatasetError(
                        f"{path}: line {reader.line_num} has {len(cells)} values but the header has {width}"
                    )
                if len(cells) < width:
                    cells += [""] * (width - len(cells))
                yield reader.line_num, dict(zip(names, [cells[index] for index in indices], strict=True))
    except (OSError, UnicodeDecodeError, zipfile.BadZipFile, csv.Error) as error:
        raise DatasetError(f"{path}: cannot read as CSV: {error}") from error


def find_metadata(
    root: Path, given: Sequence[Path], spec: TableSpec, *, required: bool = True, depth: int = 2
) -> list[Path]:
    """The files of one kind: among ``given`` (matched by name, else by header), else under ``root``.

    Args:
        root: The dataset folder, searched ``depth`` folders deep for ``spec.names``.
        given: Files named on the command line (``--metadata``); when one fits, the root is not searched.
        spec: The kind of file wanted.
        required: Raise when none is found.
        depth: How many folder levels below ``root`` to search.

    Raises:
        DatasetError: ``required`` and nothing fits, naming the file names looked for.
    """
    by_name = [path for path in given if _matches(path.name, spec.names)]
    if by_name:
        return by_name
    by_header = [path for path in given if _header_fits(path, spec)]
    if by_header:
        return by_header
    found: list[Path] = []
    if root.is_dir():
        folders = [root]
        for _ in range(depth + 1):
            next_level: list[Path] = []
            for folder in folders:
                for entry in sorted(folder.iterdir()):
                    if entry.is_file() and _matches(entry.name, spec.names):
                        found.append(entry)
                    elif entry.is_dir() and not entry.name.startswith("."):
                        next_level.append(entry)
            if found:
                break
            folders = next_level
            if len(folders) > 200:  # an image tree, not a metadata folder: stop descending
                break
    if not found and required:
        raise DatasetError(
            f"{root}: no {spec.kind} file found (looked for {list(spec.names)} up to {depth} folders deep); "
            "pass it with --metadata"
        )
    return found


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(name.lower(), pattern.lower()) for pattern in patterns)


def _header_fits(path: Path, spec: TableSpec) -> bool:
    if path.suffix.lower() not in (".csv", ".gz", ".zip"):
        return False
    try:
        spec.check(path, read_header(path))
    except DatasetError:
        return False
    return True
