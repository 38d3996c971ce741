"""Memory-mapped copies of an embeddings file's vectors: what every frozen evaluation reads.

An embeddings Parquet is the lasting output of ``raddino embed``, but Parquet pages are encoded and
compressed: reading a column means decoding all of it into the process's memory. The evaluations read
instead one ``.npy`` file per vector (``cls``, ``patch_mean``, ``layer{i}_cls``, ...), written once beside
the Parquet and opened with ``np.load(mmap_mode="r")``: the rows live in the operating system's page
cache, shared between processes and dropped under memory pressure, so a command that reads a million
vectors holds no copy of its own and works through them in chunks.

For ``emb.parquet`` the copies are ``emb_vectors/<name>-<stamp>-<dtype>.npy``: ``(N, D)`` rows in the
Parquet's row order, ``stamp`` a digest of the Parquet's size, modification time and row count (a file
re-merged with more images gets new copies; an outdated copy is never read, and is removed), ``dtype``
``float32`` or ``float16`` (``storage``: half the memory and disk; every computation casts its chunk to
float32). Each copy is written sequentially and atomically (a temporary, then a rename), so a copy is
complete or absent; one that does not open as an array of the right shape is written again. Where the
Parquet's folder cannot be written (a read-only archive), the copies go to a fallback folder (the
feature cache). ``.npy`` files are read without pickle, so a planted file cannot run code.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal, overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from raddino.io.atomic import atomic_path

logger = logging.getLogger(__name__)

StorageDtype = Literal["float32", "float16"]
STORAGE_DTYPES: tuple[StorageDtype, ...] = ("float32", "float16")
FLOAT16_MAX = 65504.0
# Rows of float32 work per chunk where a caller does not choose: 4096 x 768 x 4 B = 12 MiB.
CHUNK_ROWS = 4096


class VectorFileError(ValueError):
    """A vector copy cannot be written or its values do not fit the storage; the message names the file."""


class TextColumn(Sequence[str]):
    """Strings of every row (ids, paths) in one Arrow array: a few bytes per row, no Python object per row.

    Indexing gives a ``str``; :meth:`positions_of` looks up many values at once.
    """

    def __init__(self, values: pa.Array | pa.ChunkedArray | Sequence[str]) -> None:
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        elif not isinstance(values, pa.Array):
            values = pa.array(list(values), pa.string())
        if not pa.types.is_string(values.type):  # large strings, or numbers as ids: compared as text
            values = values.cast(pa.string())
        self.array: pa.Array = values

    def __len__(self) -> int:
        return len(self.array)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> TextColumn: ...

    def __getitem__(self, index: int | slice) -> str | TextColumn:
        if isinstance(index, slice):
            return TextColumn(self.array[index])
        return str(self.array[int(index)].as_py())

    def __iter__(self) -> Iterator[str]:
        for batch_start in range(0, len(self.array), CHUNK_ROWS):
            yield from self.array[batch_start : batch_start + CHUNK_ROWS].to_pylist()

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str) and self.index_of(value) >= 0

    def take(self, indices: np.ndarray | Sequence[int]) -> TextColumn:
        """The rows at ``indices``, in that order."""
        return TextColumn(self.array.take(pa.array(np.asarray(indices, np.int64))))

    def positions_of(self, values: TextColumn | Sequence[str]) -> np.ndarray:
        """(len(values),) int64 row of each value in this column (its first), -1 where absent."""
        wanted = values.array if isinstance(values, TextColumn) else pa.array(list(values), pa.string())
        found = pc.index_in(wanted, value_set=self.array)
        return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)

    def index_of(self, value: str) -> int:
        """The first row holding ``value``, or -1."""
        return int(pc.index(self.array, value).as_py())


class FeatureView:
    """Rows of one feature choice: parts (memory-mapped (N, D_i) arrays) concatenated, rows picked.

    Nothing is read until asked: :meth:`take` and :meth:`chunks` give float32 arrays of a few rows.

    Args:
        parts: The choice's vectors, in concatenation order; all with the same number of rows.
        rows: Rows of the parts this view shows, in its order; ``None``: all of them.
    """

    def __init__(self, parts: Sequence[np.ndarray], rows: np.ndarray | None = None) -> None:
        if not parts:
            raise ValueError("a feature view needs at least one part")
        self.parts = list(parts)
        self.rows = None if rows is None else np.asarray(rows, np.int64)
        self.dim = sum(part.shape[1] for part in self.parts)

    def __len__(self) -> int:
        return self.parts[0].shape[0] if self.rows is None else len(self.rows)

    @property
    def shape(self) -> tuple[int, int]:
        return len(self), self.dim

    def take(self, indices: np.ndarray | Sequence[int] | slice) -> np.ndarray:
        """(len(indices), D) float32 rows of this view at ``indices`` (a slice reads a contiguous run)."""
        picked: np.ndarray | slice = indices if isinstance(indices, slice) else np.asarray(indices, np.int64)
        if self.rows is not None:
            picked = self.rows[picked]
        count = len(range(*picked.indices(len(self))) if isinstance(picked, slice) else picked)
        out = np.empty((count, self.dim), np.float32)
        single = self.parts[0]
        if len(self.parts) == 1 and single.dtype == np.float32 and not isinstance(picked, slice) and count:
            if picked.min() < -len(single) or picked.max() >= len(single):
                raise IndexError(f"rows up to {picked.max()} asked of {len(single)}")
            return single.take(picked, axis=0, out=out, mode="wrap")  # checked: unbuffered, straight into out
        column = 0
        for part in self.parts:
            width = part.shape[1]
            out[:, column : column + width] = part[picked]  # casts float16 to float32 in place
            column += width
        return out

    def chunks(self, rows: int = CHUNK_ROWS) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, (n, D) float32 rows) of the whole view, ``rows`` at a time, in order."""
        for start in range(0, len(self), rows):
            yield start, self.take(slice(start, min(start + rows, len(self))))

    def load(self) -> np.ndarray:
        """All rows as one (N, D) float32 array in memory."""
        return self.take(slice(0, len(self)))

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-feature mean and (unbiased) standard deviation over the view's rows, summed in float64."""
        count, rows = len(self), 1024  # small blocks: the float64 temporaries are (rows, D)
        total = np.zeros(self.dim, np.float64)
        for _, chunk in self.chunks(rows):
            total += chunk.sum(axis=0, dtype=np.float64)
        mean = total / max(count, 1)
        squares = np.zeros(self.dim, np.float64)
        for _, chunk in self.chunks(rows):
            squares += np.square(chunk - mean).sum(axis=0)
        std = np.sqrt(squares / max(count - 1, 1))
        return mean.astype(np.float32), std.astype(np.float32)


def parquet_stamp(path: Path) -> tuple[str, int]:
    """(digest of the Parquet's size, modification time and row count, row count)."""
    status = path.stat()
    rows = pq.ParquetFile(path).metadata.num_rows
    digest = hashlib.sha256(f"{status.st_size}:{status.st_mtime_ns}:{rows}".encode()).hexdigest()[:12]
    return digest, rows


def vectors_folder(parquet: Path, fallback: Path | None = None) -> Path:
    """``<stem>_vectors`` beside ``parquet``; where that folder cannot be written, one in ``fallback``
    (default: ``raddino-vectors`` in the system's temporary folder), named after the Parquet's path."""
    beside = parquet.with_name(parquet.stem + "_vectors")
    if os.access(beside if beside.is_dir() else parquet.parent, os.W_OK):
        return beside
    key = hashlib.sha256(str(parquet.resolve()).encode()).hexdigest()[:12]
    root = Path(fallback) if fallback is not None else Path(tempfile.gettempdir()) / "raddino-vectors"
    return root / f"{parquet.stem}-{key}_vectors"


def _open(path: Path, rows: int, width: int, dtype: StorageDtype) -> np.ndarray | None:
    """The copy at ``path`` memory-mapped, or None when absent or not a (rows, width) array of ``dtype``."""
    if not path.is_file():
        return None
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        logger.warning("%s: unreadable vector copy (%s); writing it again", path, error)
        return None
    if array.shape != (rows, width) or array.dtype != np.dtype(dtype):
        logger.warning(
            "%s: holds %s %s, not (%d, %d) %s; writing it again",
            path,
            array.shape,
            array.dtype,
            rows,
            width,
            dtype,
        )
        return None
    return array


def _write(
    path: Path, rows: int, width: int, dtype: StorageDtype, blocks: Iterable[np.ndarray], source: str
) -> None:
    """Write blocks of rows, in order, as one ``.npy`` file (header, then the rows), atomically."""
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
        "fortran_order": False,
        "shape": (rows, width),
    }
    written = 0
    try:
        with atomic_path(path) as temporary, open(temporary, "wb") as handle:
            np.lib.format.write_array_header_1_0(handle, header)
            for block in blocks:  # (n, width)
                if block.shape[1:] != (width,):
                    raise VectorFileError(f"{source}: rows of {block.shape[1:]} values, expected {width}")
                peak = np.abs(block[np.isfinite(block)]).max(initial=0.0) if dtype == "float16" else 0.0
                if peak > FLOAT16_MAX:  # infinities and NaN stay what they are in float16
                    raise VectorFileError(
                        f"{source}: values up to {peak:.4g} do not fit float16 storage (at most "
                        f"{FLOAT16_MAX:g}); use storage float32"
                    )
                handle.write(np.ascontiguousarray(block, dtype=dtype).tobytes())
                written += len(block)
            if written != rows:
                raise VectorFileError(f"{source}: {written} rows read, the file says {rows}")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        reason = error.strerror or str(error)
        raise VectorFileError(
            f"{path}: cannot write the memory-mapped copy of {source}: {reason}; nothing partial was kept "
            "(free some space, or give a writable cache_dir)"
        ) from error


def open_vectors(
    folder: Path,
    name: str,
    stamp: str,
    rows: int,
    width: int,
    dtype: StorageDtype,
    blocks: Callable[[], Iterable[np.ndarray]],
    source: str,
) -> np.ndarray:
    """The memory-mapped (rows, width) copy of the vector ``name``, written first when it is missing.

    Args:
        folder: Where the copies live (:func:`vectors_folder`).
        name: The vector (``cls``, ``layer8_patch_mean``, ...).
        stamp: The source's stamp (:func:`parquet_stamp`); copies of other stamps are outdated.
        rows: Rows of the source.
        width: Values per row.
        dtype: Storage type of the copy.
        blocks: Called only when the copy must be written: yields (n, width) rows in the source's order.
        source: What the rows come from, for messages (``emb.parquet column 'cls'``).

    Raises:
        VectorFileError: the copy cannot be written (disk full, permissions), or float16 cannot hold a value.
    """
    if dtype not in STORAGE_DTYPES:
        raise VectorFileError(f"storage {dtype!r}: choose one of {', '.join(STORAGE_DTYPES)}")
    path = folder / f"{name}-{stamp}-{dtype}.npy"
    array = _open(path, rows, width, dtype)
    if array is not None:
        return array
    logger.info("writing the memory-mapped copy of %s (%d rows, %s) to %s", source, rows, dtype, path)
    _write(path, rows, width, dtype, blocks(), source)
    for outdated in folder.glob(f"{name}-*.npy"):
        if outdated.name.split("-")[-2] != stamp:  # another stamp: the source has changed since
            outdated.unlink(missing_ok=True)
    array = _open(path, rows, width, dtype)
    if array is None:
        raise VectorFileError(f"{path}: the copy just written does not read back as {rows} rows")
    return array
