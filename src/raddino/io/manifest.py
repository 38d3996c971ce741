"""The one manifest format: a CSV with a ``path`` column, accepted by every command in place of a folder.

Optional columns with a fixed meaning: ``id`` (unique per row; defaults to the path relative to the
manifest's folder, without extension), ``subject_id``, ``split`` (``train``/``val``/``test``, or empty
for a row in no split), ``view``; any other column is a label, metadata or a mask path, read as text.
Relative paths are resolved against the manifest's folder, so a dataset folder with its manifest can be
moved as a whole. A ``split`` value that is none of these is refused when the manifest is read: a typo
such as ``tset`` would otherwise drop its rows from every split without a word.

A manifest is held by column (one Arrow string array per column), so a million rows read in seconds
and take tens of megabytes; :attr:`Manifest.rows` builds one dict per row on first use, for the callers
that want them.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from raddino.io.atomic import atomic_open

IMAGE_EXTENSIONS = (".dcm", ".dicom", ".png", ".jpg", ".jpeg", ".tif", ".tiff")
RESERVED_COLUMNS = ("path", "id", "subject_id", "split", "view")
SPLIT_NAMES = ("train", "val", "test")
# Spellings of a split the evaluation commands read as one of SPLIT_NAMES (case and spaces ignored).
SPLIT_SPELLINGS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "dev": "val",
    "test": "test",
    "testing": "test",
}
_SHOWN_ROWS = 5  # unknown split values listed by line in the error; the rest are counted
# A relative path that pathlib would not rewrite (no "//", "." or ".." part, no trailing "/"): its default
# id is the text itself less an image extension, computed for all rows at once.
_PLAIN_PATH = r"^[^/](?:[^/]|/[^/])*$"
_DOT_PARTS = r"(^|/)\.\.?(/|$)"
_IMAGE_SUFFIX = r"(?i)([^/])\.(?:" + "|".join(ext[1:] for ext in IMAGE_EXTENSIONS) + r")$"
_BATCH_ROWS = 8192


class ManifestError(ValueError):
    """A manifest file is unreadable or lacks a required column; the message names the file."""


def _string_table(columns: Mapping[str, Sequence[str]]) -> pa.Table:
    return pa.table({name: pa.array(values, pa.string()) for name, values in columns.items()})


class Manifest:
    """Rows of a manifest, held by column, plus where they came from.

    Args:
        rows: One ``{column: text}`` dict per image (every row has ``path`` and ``id``); or ``table``.
        columns: Column names in file order (``id`` included even when it was derived).
        root: Folder that relative ``path`` values are resolved against.
        source: The CSV file, or the folder that was scanned.
        table: The rows as an Arrow table of string columns (how :func:`read_manifest` builds it).
    """

    def __init__(
        self,
        rows: list[dict[str, str]] | None = None,
        columns: Sequence[str] = (),
        root: str | Path = ".",
        source: Path | None = None,
        *,
        table: pa.Table | None = None,
    ) -> None:
        self.columns = list(columns) or (list(table.column_names) if table is not None else [])
        self.root = Path(root)
        self.source = source
        self._rows = rows if table is None else None
        self._table = table if table is not None else None
        if rows is None and table is None:
            self._rows = []

    @property
    def rows(self) -> list[dict[str, str]]:
        """One dict per row, built from the columns on first use (then the dicts are the manifest)."""
        if self._rows is None:
            self._rows = self.table.to_pylist()
            self._table = None  # a caller may edit the dicts: they are the one copy from now on
        return self._rows

    @rows.setter
    def rows(self, rows: list[dict[str, str]]) -> None:
        self._rows, self._table = rows, None

    @property
    def table(self) -> pa.Table:
        """The rows as an Arrow table, one string column per name of :attr:`columns`."""
        if self._table is not None:
            return self._table
        rows = self._rows or []
        names = list(dict.fromkeys(self.columns))
        return _string_table({name: [str(row.get(name) or "") for row in rows] for name in names})

    def __len__(self) -> int:
        return self._table.num_rows if self._table is not None else len(self._rows or [])

    def __repr__(self) -> str:
        return f"Manifest({len(self)} rows, columns={self.columns}, root={self.root}, source={self.source})"

    def resolve(self, row: Mapping[str, str], column: str = "path") -> Path:
        """The absolute path in ``row[column]`` (relative values are taken from the manifest's folder)."""
        value = Path(row[column])
        return value if value.is_absolute() else self.root / value

    def resolve_text(self, value: str) -> Path:
        """The absolute path of one ``path`` cell."""
        path = Path(value)
        return path if path.is_absolute() else self.root / path

    def paths(self) -> list[Path]:
        """Absolute image paths, in row order."""
        return [self.resolve_text(value) for value in self.column_array("path").to_pylist()]

    def ids(self) -> list[str]:
        """Row ids, in row order."""
        return self.column_array("id").to_pylist()

    def column(self, name: str) -> list[str]:
        """All values of one column; raises ``ManifestError`` naming the column when it is absent."""
        return self.column_array(name).to_pylist()

    def column_array(self, name: str) -> pa.Array:
        """One column as an Arrow string array (no Python object per row); ``ManifestError`` if absent."""
        if name not in self.columns:
            raise ManifestError(f"{self.source}: no column '{name}' (columns: {', '.join(self.columns)})")
        return self.table.column(name).combine_chunks()

    def iter_rows(self, indices: Sequence[int] | np.ndarray | None = None) -> Iterator[dict[str, str]]:
        """Rows as dicts (all, or those at ``indices``), built a batch at a time so memory stays flat."""
        table = self.table
        if indices is not None:
            picked = np.asarray(indices, np.int64)
            for start in range(0, len(picked), _BATCH_ROWS):
                yield from table.take(pa.array(picked[start : start + _BATCH_ROWS])).to_pylist()
            return
        for batch in table.to_batches(max_chunksize=_BATCH_ROWS):
            yield from batch.to_pylist()


def default_id(path: Path, root: Path) -> str:
    """The id of an image without one: its path relative to ``root``, POSIX style, without extension.

    Only image extensions are stripped: a DICOM named by its UID (``1.2.840.113619.2.55``) keeps its name.
    """
    try:
        relative = path.relative_to(root)
    except ValueError:
        relative = Path(path.name)
    if relative.suffix.lower() in IMAGE_EXTENSIONS:
        relative = relative.with_suffix("")
    return relative.as_posix()


def default_ids(paths: pa.Array, root: Path) -> pa.Array:
    """:func:`default_id` of every ``path`` cell, for plain relative paths by one string operation."""
    plain = pc.and_(
        pc.match_substring_regex(paths, _PLAIN_PATH), pc.invert(pc.match_substring_regex(paths, _DOT_PARTS))
    )
    ids = pc.replace_substring_regex(paths, _IMAGE_SUFFIX, r"\1")
    odd = np.flatnonzero(~plain.to_numpy(zero_copy_only=False))
    if len(odd) == 0:
        return ids
    values = ids.to_pylist()  # absolute or unusual paths: pathlib decides, row by row
    for index in odd.tolist():
        values[index] = default_id(root / paths[index].as_py(), root)
    return pa.array(values, pa.string())


def row_lines(path: Path) -> list[int]:
    """The line each data row of a CSV starts on (a quoted cell may span lines); read only for messages."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        next(reader, None)
        lines, last_line = [], reader.line_num
        for row in reader:
            if row:  # csv.DictReader skips blank lines, and so does the manifest
                lines.append(last_line + 1)
            last_line = reader.line_num
    return lines


def _read_header(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return next(csv.reader(handle), [])


def _read_with_arrow(path: Path, header: list[str]) -> pa.Table | None:
    """Every cell as text, by Arrow's CSV reader; ``None`` for a file it does not read as the csv module does.

    Ragged rows, a repeated header name and text that is not UTF-8 go to :func:`_read_with_csv`, which
    gives the same values or message the manifest always gave.
    """
    if not header or len(set(header)) != len(header):
        return None
    names = [f"f{index}" for index in range(len(header))]
    try:
        table = pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(column_names=names, block_size=1 << 24),
            parse_options=pa_csv.ParseOptions(newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid:
        return None
    if table.num_rows == 0 or table.slice(0, 1).to_pylist()[0] != dict(zip(names, header, strict=True)):
        return None
    return table.slice(1).rename_columns(header)


def _read_with_csv(path: Path) -> pa.Table:
    """The csv module's reading of ``path``: missing cells empty, surplus cells an error naming the line."""
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = list(dict.fromkeys(reader.fieldnames or []))
        cells: dict[str, list[str]] = {name: [] for name in header}
        last_line = reader.line_num
        for row in reader:
            if None in row:  # more cells than header columns
                raise ManifestError(
                    f"{path}: line {last_line + 1} has more values than the header has columns"
                )
            for name in header:
                cells[name].append(row[name] if row[name] is not None else "")
            last_line = reader.line_num
    return _string_table(cells)


def read_manifest(path: str | Path) -> Manifest:
    """Read a manifest CSV.

    Raises:
        ManifestError: the file cannot be read, has no ``path`` column, has an empty path, repeats an id,
            or has a ``split`` value other than train / val / test (or a spelling of them) and empty.
    """
    path = Path(path)
    try:
        header = _read_header(path)
        table = _read_with_arrow(path, header)
        if table is None:
            table = _read_with_csv(path)
    except OSError as error:
        raise ManifestError(f"{path}: cannot read manifest: {error.strerror or error}") from error
    except (csv.Error, UnicodeDecodeError) as error:
        raise ManifestError(f"{path}: not a valid CSV file: {error}") from error
    columns = list(header) if len(set(header)) == len(header) else list(table.column_names)
    if "path" not in columns:
        raise ManifestError(f"{path}: a manifest needs a 'path' column; found columns: {columns}")
    root = path.parent.resolve()
    paths = table.column("path").combine_chunks()
    empty = np.flatnonzero(pc.equal(pc.utf8_trim_whitespace(paths), "").to_numpy(zero_copy_only=False))
    if len(empty):
        raise ManifestError(f"{path}: line {row_lines(path)[empty[0]]} has an empty 'path'")
    table = _with_ids(table, paths, root)
    _check_unique_ids(table.column("id").combine_chunks(), path)
    if "split" in columns:
        check_split_values(table.column("split").combine_chunks(), path)
    if "id" not in columns:
        columns.insert(1, "id")
    return Manifest(columns=columns, root=root, source=path, table=table.select(columns))


def _with_ids(table: pa.Table, paths: pa.Array, root: Path) -> pa.Table:
    """``table`` with every empty or missing ``id`` replaced by the path's :func:`default_id`."""
    if "id" not in table.column_names:
        return table.append_column("id", default_ids(paths, root))
    ids = table.column("id").combine_chunks()
    missing = pc.equal(ids, "")
    if not pc.any(missing).as_py():
        return table
    filled = pc.if_else(missing, default_ids(paths, root), ids)
    return table.set_column(table.column_names.index("id"), "id", filled)


def _check_unique_ids(ids: pa.Array, source: Path) -> None:
    if pc.count_distinct(ids).as_py() == len(ids):
        return
    seen: dict[str, int] = {}
    lines = row_lines(source)
    for line, row_id in zip(lines, ids.to_pylist(), strict=True):  # only when some id repeats
        if row_id in seen:
            raise ManifestError(
                f"{source}: id '{row_id}' appears on lines {seen[row_id]} and {line}; ids must be unique"
            )
        seen[row_id] = line


def check_split_values(values: pa.Array | Sequence[str], source: str | Path) -> None:
    """Refuse ``split`` values that are not a split, naming their lines, so no row silently drops out.

    Args:
        values: The ``split`` cell of every row, in file order.
        source: The manifest file, named in the message (and read again for the lines of the bad rows).

    Raises:
        ManifestError: ``source: column 'split' has N row(s) with an unknown value: line 4 'tset', ...;
            allowed: ...``, listing the first few lines and counting the rest.
    """
    values = values if isinstance(values, pa.Array) else pa.array(list(values), pa.string())
    distinct = pc.unique(values).to_pylist()
    wrong = [value for value in distinct if value.strip() and value.strip().lower() not in SPLIT_SPELLINGS]
    if not wrong:
        return
    unknown = np.flatnonzero(pc.is_in(values, pa.array(wrong, pa.string())).to_numpy(zero_copy_only=False))
    lines = row_lines(Path(source))
    shown = ", ".join(f"line {lines[index]} {values[index].as_py()!r}" for index in unknown[:_SHOWN_ROWS])
    more = f" and {len(unknown) - _SHOWN_ROWS} more" if len(unknown) > _SHOWN_ROWS else ""
    other_spellings = ", ".join(name for name in SPLIT_SPELLINGS if name not in SPLIT_NAMES)
    raise ManifestError(
        f"{source}: column 'split' has {len(unknown)} row(s) with an unknown value: {shown}{more}; "
        f"allowed: {', '.join(SPLIT_NAMES)} (also {other_spellings}; any case), or empty for no split"
    )


def discover_images(folder: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> list[Path]:
    """All files under ``folder`` (recursively) whose extension is in ``extensions``, sorted.

    Extension-less files, and UID-named ones whose "extension" is all digits, are included too when
    ``.dcm`` is accepted, since DICOM files often have none (the reader decides by content).
    """
    folder = Path(folder)
    accepted = {ext.lower() for ext in extensions}
    found = []
    for candidate in folder.rglob("*"):
        hidden = any(part.startswith(".") for part in candidate.relative_to(folder).parts)
        # A broken link is kept so the reader reports it, instead of the file silently going missing.
        broken_link = candidate.is_symlink() and not candidate.exists()
        if hidden or not (candidate.is_file() or broken_link):
            continue
        suffix = candidate.suffix.lower()
        # DICOMs often have no extension, or a UID as name whose last component looks like one (".2831").
        extensionless = suffix == "" or suffix[1:].isdigit()
        if suffix in accepted or (extensionless and ".dcm" in accepted):
            found.append(candidate)
    return sorted(found)


def manifest_from_folder(folder: str | Path, extensions: Sequence[str] = IMAGE_EXTENSIONS) -> Manifest:
    """A manifest of every image under ``folder``, ids being relative paths without extension."""
    root = Path(folder).resolve()
    if not root.is_dir():
        raise ManifestError(f"{folder}: not a folder")
    paths = [path.relative_to(root).as_posix() for path in discover_images(root, extensions)]
    ids = [default_id(root / path, root) for path in paths]
    counts = Counter(ids)
    # a.png beside a.dcm would share the id "a": such ids keep their extension
    ids = [path if counts[row_id] > 1 else row_id for path, row_id in zip(paths, ids, strict=True)]
    table = _string_table({"path": paths, "id": ids})
    return Manifest(columns=["path", "id"], root=root, source=root, table=table)


def load_inputs(source: str | Path) -> Manifest:
    """A manifest from a CSV file or a folder of images: what every command accepts as INPUT."""
    source = Path(source)
    if source.is_dir():
        return manifest_from_folder(source)
    if source.suffix.lower() == ".csv":
        return read_manifest(source)
    if not source.exists():
        raise ManifestError(f"{source}: no such file or folder")
    raise ManifestError(f"{source}: expected a folder of images or a manifest .csv file")


def write_manifest(
    rows: Iterable[Mapping[str, object]], path: str | Path, columns: Sequence[str] | None = None
) -> Path:
    """Write rows as a manifest CSV, atomically.

    ``columns`` defaults to the union of the rows' keys in first-seen order, which needs every row in memory;
    pass ``columns`` to stream rows from a generator.
    """
    if columns is None:
        rows = list(rows)
        ordered: dict[str, None] = {}
        for row in rows:
            ordered.update(dict.fromkeys(row))
        columns = list(ordered)
    if "path" not in columns:
        raise ManifestError(f"{path}: refusing to write a manifest without a 'path' column")
    with atomic_open(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="raise")
        writer.writeheader()
        for row in rows:
            writer.writerow({key: "" if value is None else value for key, value in row.items()})
    return Path(path)
