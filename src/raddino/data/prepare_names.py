"""Where ``raddino prepare`` writes each input: its relative path with ``.png``, for a million rows at once.

The names are kept as one Arrow string array; Python objects are made a batch of rows at a time, so a
manifest of a million entries costs tens of megabytes here, not a path object per row.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from raddino.io.manifest import IMAGE_EXTENSIONS, Manifest

BATCH_ROWS = 8192  # rows turned into Python objects at a time; the rest stays in Arrow arrays


def _relative_input(path: str, row_id: str, root: Path) -> PurePosixPath:
    """A row's input path relative to the manifest's folder (its id when the path lies outside it)."""
    raw = PurePosixPath(path.replace("\\", "/"))
    if raw.is_absolute():
        try:
            raw = PurePosixPath(Path(raw).relative_to(root).as_posix())
        except ValueError:
            raw = PurePosixPath(row_id)
    if raw.is_absolute() or ".." in raw.parts:
        raw = PurePosixPath(*[part for part in PurePosixPath(row_id).parts if part not in ("/", "..")])
    return raw


def _png_name(relative: PurePosixPath, keep_extension: bool) -> str:
    if relative.suffix.lower() in IMAGE_EXTENSIONS and not keep_extension:
        return relative.with_suffix(".png").as_posix()
    return relative.with_name(relative.name + ".png").as_posix()


def _names_of(manifest: Manifest, rows: np.ndarray | None, keep_extension: bool) -> pa.Array:
    """Output names of all rows (or those at ``rows``), built a batch of rows at a time."""
    paths, ids = manifest.column_array("path"), manifest.column_array("id")
    if rows is not None:
        paths, ids = paths.take(pa.array(rows)), ids.take(pa.array(rows))
    chunks = [pa.array([], pa.string())]
    for start in range(0, len(paths), BATCH_ROWS):
        batch = zip(
            paths.slice(start, BATCH_ROWS).to_pylist(), ids.slice(start, BATCH_ROWS).to_pylist(), strict=True
        )
        names = [
            _png_name(_relative_input(path, row_id, manifest.root), keep_extension) for path, row_id in batch
        ]
        chunks.append(pa.array(names, pa.string()))
    return pa.concat_arrays(chunks)


def _repeated(keys: pa.Array) -> np.ndarray:
    """(N,) bool: True where a key occurs more than once."""
    counts = keys.value_counts()
    repeated = counts.field("values").filter(pc.greater(counts.field("counts"), 1))
    return pc.is_in(keys, value_set=repeated).to_numpy(zero_copy_only=False)


def output_name_array(manifest: Manifest) -> pa.Array:
    """Where each row's PNG goes, relative to OUT, as one Arrow string array (see :func:`output_names`).

    Raises:
        ValueError: two rows still map to the same output.
    """
    names = _names_of(manifest, None, keep_extension=False)
    colliding = np.flatnonzero(_repeated(pc.utf8_lower(names)))
    if len(colliding):
        mask = np.zeros(len(names), bool)
        mask[colliding] = True
        names = pc.replace_with_mask(
            names, pa.array(mask), _names_of(manifest, colliding, keep_extension=True)
        )
    keys = pc.utf8_lower(names)  # case-insensitive file systems would merge these too
    if pc.count_distinct(keys).as_py() == len(keys):
        return names
    seen: dict[str, str] = {}
    for key, name, path in zip(keys.to_pylist(), names.to_pylist(), manifest.column("path"), strict=True):
        if key in seen:
            raise ValueError(f"inputs '{seen[key]}' and '{path}' would both be written to {name}")
        seen[key] = path
    raise AssertionError("unreachable: a repeated output name was counted but not found")


def output_names(manifest: Manifest) -> list[PurePosixPath]:
    """Where each row's PNG goes, relative to OUT: its relative input path with ``.png``.

    A known image extension is replaced (``a/b.dcm`` → ``a/b.png``), anything else is kept and ``.png``
    appended (``1.2.840.113619.2.55`` → ``1.2.840.113619.2.55.png``, since DICOM names are often UIDs).
    Rows whose path lies outside the manifest's folder use their id instead. Rows that would collide
    (``a.png`` beside ``a.dcm``) keep their extension: ``a.png.png``, ``a.dcm.png``.

    Raises:
        ValueError: two rows still map to the same output.
    """
    return [PurePosixPath(name) for name in output_name_array(manifest).to_pylist()]
