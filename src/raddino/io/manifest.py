"""The one manifest format: a CSV with a ``path`` column, accepted by every command in place of a folder.

Optional columns with a fixed meaning: ``id`` (unique per row; defaults to the path relative to the
manifest's folder, without extension), ``subject_id``, ``split`` (``train``/``val``/``test``, or empty
for a row in no split), ``view``; any other column is a label, metadata or a mask path, read as text.
Relative paths are resolved against the manifest's folder, so a dataset folder with its manifest can be
moved as a whole. A ``split`` value that is none of these is refused when the manifest is read: a typo
such as ``tset`` would otherwise drop its rows from every split without a word.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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


class ManifestError(ValueError):
    """A manifest file is unreadable or lacks a required column; the message names the file."""


@dataclass
class Manifest:
    """Rows of a manifest, each a ``{column: text}`` dict, plus where they came from.

    Attributes:
        rows: One dict per image; every row has ``path`` and ``id``.
        columns: Column names in file order (``id`` included even when it was derived).
        root: Folder that relative ``path`` values are resolved against.
        source: The CSV file, or the folder that was scanned.
    """

    rows: list[dict[str, str]]
    columns: list[str]
    root: Path
    source: Path | None = None
    _ids: dict[str, int] = field(default_factory=dict, repr=False)

    def __len__(self) -> int:
        return len(self.rows)

    def resolve(self, row: Mapping[str, str], column: str = "path") -> Path:
        """The absolute path in ``row[column]`` (relative values are taken from the manifest's folder)."""
        value = Path(row[column])
        return value if value.is_absolute() else self.root / value

    def paths(self) -> list[Path]:
        """Absolute image paths, in row order."""
        return [self.resolve(row) for row in self.rows]

    def ids(self) -> list[str]:
        """Row ids, in row order."""
        return [row["id"] for row in self.rows]

    def column(self, name: str) -> list[str]:
        """All values of one column; raises ``ManifestError`` naming the column when it is absent."""
        if name not in self.columns:
            raise ManifestError(f"{self.source}: no column '{name}' (columns: {', '.join(self.columns)})")
        return [row.get(name, "") for row in self.rows]


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


def read_manifest(path: str | Path) -> Manifest:
    """Read a manifest CSV.

    Raises:
        ManifestError: the file cannot be read, has no ``path`` column, has an empty path, repeats an id,
            or has a ``split`` value other than train / val / test (or a spelling of them) and empty.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = list(reader.fieldnames or [])
            rows, lines, last_line = [], [], reader.line_num
            for row in reader:  # a quoted cell may span lines: a row starts after the previous one ended
                rows.append(dict(row))
                lines.append(last_line + 1)
                last_line = reader.line_num
    except OSError as error:
        raise ManifestError(f"{path}: cannot read manifest: {error.strerror or error}") from error
    except (csv.Error, UnicodeDecodeError) as error:
        raise ManifestError(f"{path}: not a valid CSV file: {error}") from error
    if "path" not in columns:
        raise ManifestError(f"{path}: a manifest needs a 'path' column; found columns: {columns}")
    root = path.parent.resolve()
    seen: dict[str, int] = {}
    for number, row in zip(lines, rows, strict=True):
        for key in list(row):
            if key is None:  # more cells than header columns
                raise ManifestError(f"{path}: line {number} has more values than the header has columns")
            row[key] = row[key] if row[key] is not None else ""
        if not row["path"].strip():
            raise ManifestError(f"{path}: line {number} has an empty 'path'")
        if not row.get("id"):
            row["id"] = default_id(root / row["path"], root)
        if row["id"] in seen:
            raise ManifestError(
                f"{path}: id '{row['id']}' appears on lines {seen[row['id']]} and {number}; "
                "ids must be unique"
            )
        seen[row["id"]] = number
    if "split" in columns:
        check_split_values(rows, lines, path)
    if "id" not in columns:
        columns.insert(1, "id")
    return Manifest(rows=rows, columns=columns, root=root, source=path)


def check_split_values(rows: Sequence[Mapping[str, str]], lines: Sequence[int], source: str | Path) -> None:
    """Refuse ``split`` values that are not a split, naming their lines, so no row silently drops out.

    Args:
        rows: Manifest rows.
        lines: The line of the file each row starts on (for the message).
        source: The manifest file, named in the message.

    Raises:
        ManifestError: ``source: column 'split' has N row(s) with an unknown value: line 4 'tset', ...;
            allowed: ...``, listing the first few lines and counting the rest.
    """
    unknown = [
        (line, row.get("split", ""))
        for line, row in zip(lines, rows, strict=True)
        if row.get("split", "").strip() and row["split"].strip().lower() not in SPLIT_SPELLINGS
    ]
    if not unknown:
        return
    shown = ", ".join(f"line {line} {value!r}" for line, value in unknown[:_SHOWN_ROWS])
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
    rows = [
        {"path": path.relative_to(root).as_posix(), "id": default_id(path, root)}
        for path in discover_images(root, extensions)
    ]
    counts = Counter(row["id"] for row in rows)
    for row in rows:  # a.png beside a.dcm would share the id "a": such ids keep their extension
        if counts[row["id"]] > 1:
            row["id"] = row["path"]
    return Manifest(rows=rows, columns=["path", "id"], root=root, source=root)


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
