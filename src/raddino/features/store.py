"""On-disk layout of an embeddings run, written in shards so runs resume and memory stays flat.

For ``--out emb.parquet`` the run keeps, beside it:

- ``emb_shards/part-<tag>-<seq>.parquet``: one row per embedded image (``id``, ``path``, ``cls``,
  optionally ``patch_mean``, ``tokens_file``, ``tokens_row``, asked-for extra columns). Written last for a
  shard, atomically, so its presence means the shard is complete; a rerun skips the ids it holds.
- ``emb_shards/tokens-<tag>-<seq>.safetensors`` (or a ``.npz``): patch tokens and intermediate layers of
  the same rows, when asked.
- ``emb_shards/run.json``: the settings that decide the numbers (model, preprocessing, layers); a rerun
  with other settings is refused instead of mixing two kinds of embeddings.
- ``emb_shards/errors-<tag>.csv``: per-rank failures of the latest attempt, merged into ``emb_errors.csv``.
- ``emb.parquet.lock``: held by the run writing this output (:mod:`raddino.io.lock`); a second run on the
  same output is refused.

``emb.parquet`` itself is rebuilt from the parts at the end of every run, streaming one part at a time.

A file that cannot be written (disk full, quota, permissions) stops the run with an
:class:`EmbeddingWriteError` naming it; a shard is complete or absent, never partial, so rerunning the same
command after freeing space resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from raddino.io.atomic import atomic_path, atomic_write_text
from raddino.io.failures import ERROR_COLUMNS

TokensFormat = Literal["safetensors", "npz"]


class EmbeddingStoreError(RuntimeError):
    """The output folder holds a run that cannot be resumed with these settings."""


class EmbeddingWriteError(EmbeddingStoreError):
    """An output file could not be written (disk full, quota, permissions); the message names it."""


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn a failed write of ``path`` (``OSError``, or safetensors' own error) into one line naming it."""
    try:
        yield
    except (OSError, SafetensorError) as error:
        code = getattr(error, "errno", None)
        if code is not None:
            reason = os.strerror(code)  # pyarrow's strerror repeats itself; the C library's does not
        else:
            lines = str(error).strip().splitlines()
            reason = lines[0] if lines else type(error).__name__
        hint = ""
        if code in (errno.ENOSPC, errno.EDQUOT) or "No space left" in reason:
            hint = "; nothing partial was kept: free some space and rerun the same command to resume"
        raise EmbeddingWriteError(f"{path}: cannot write: {reason}{hint}") from error


class EmbeddingStore:
    """Paths and bookkeeping of one embeddings output (see the module docstring)."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        if self.out.suffix != ".parquet":
            raise EmbeddingStoreError(f"{self.out}: the embeddings output must be a .parquet file")
        self.shards_dir = self.out.with_name(self.out.stem + "_shards")
        self.errors_path = self.out.with_name(self.out.stem + "_errors.csv")
        self.config_path = self.out.with_name(self.out.stem + "_config.yaml")
        self.run_file = self.shards_dir / "run.json"
        self.lock_path = self.out.with_name(self.out.name + ".lock")

    def clear(self) -> None:
        """Remove every output of an earlier run (``--overwrite``), the evaluations' vector copies too."""
        shutil.rmtree(self.shards_dir, ignore_errors=True)
        shutil.rmtree(self.out.with_name(self.out.stem + "_vectors"), ignore_errors=True)
        for path in (self.out, self.errors_path, self.config_path):
            path.unlink(missing_ok=True)

    def part_files(self) -> list[Path]:
        return sorted(self.shards_dir.glob("part-*.parquet"))

    def remove_temporaries(self) -> list[Path]:
        """Delete temporary files a killed run left behind (only while holding the lock).

        Every write goes through :func:`raddino.io.atomic.atomic_path`, whose temporaries are named
        ``.<target>.<random>.tmp`` beside the target; a ``kill -9`` leaves them there.
        """
        leftovers = list(self.shards_dir.glob(".*.tmp")) if self.shards_dir.is_dir() else []
        for target in (self.out, self.errors_path, self.config_path):
            leftovers += target.parent.glob(f".{target.name}.*.tmp")
        for path in leftovers:
            path.unlink(missing_ok=True)
        return leftovers

    def check_settings(self, settings: Mapping[str, Any]) -> None:
        """Record ``settings`` for a new run, or refuse to resume a run made with different ones."""
        plain = json.loads(json.dumps(settings))
        if self.run_file.exists():
            previous = json.loads(self.run_file.read_text(encoding="utf-8"))
            changed = sorted(key for key in set(previous) | set(plain) if previous.get(key) != plain.get(key))
            if changed and self.part_files():
                details = "; ".join(f"{key}: {previous.get(key)!r} -> {plain.get(key)!r}" for key in changed)
                raise EmbeddingStoreError(
                    f"{self.shards_dir}: an earlier run used other settings ({details}); "
                    "rerun with --overwrite to start afresh, or choose another --out"
                )
        with writing(self.run_file):
            self.shards_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.run_file, json.dumps(plain, indent=2, sort_keys=True))

    def done_ids(self) -> set[str]:
        """Ids already embedded by earlier (complete) shards, as a set (see :meth:`done_id_array`)."""
        return set(self.done_id_array().to_pylist())

    def done_id_array(self) -> pa.Array:
        """Ids of every complete shard, in part order, as one Arrow string array (no Python str per id).

        Only each part's footer and ``id`` column are read, never its vectors: at 1M embedded images
        (977 parts of 1024) that is tens of megabytes, however wide the vectors are.

        Raises:
            EmbeddingStoreError: a part cannot be read; names it and says to delete it.
        """
        chunks = [_read_part_ids(part) for part in self.part_files()]
        return pa.concat_arrays(chunks) if chunks else pa.array([], pa.string())

    def clear_attempt_errors(self) -> None:
        """Forget the failures of earlier attempts: a rerun retries those files."""
        for path in self.shards_dir.glob("errors-*.csv"):
            path.unlink()

    def merge(self) -> int:
        """Rebuild ``out`` from the parts, each id once (its first part's row); returns the number of rows.

        Streams one row group at a time into the output, so memory holds the ids (Arrow strings) and one
        row group, never the vectors of the whole run.
        """
        parts = self.part_files()
        keep = _first_occurrences(self.done_id_array()) if parts else np.zeros(0, bool)
        start = rows = 0
        with writing(self.out), atomic_path(self.out) as temporary:
            writer: pq.ParquetWriter | None = None
            try:
                for part in parts:
                    parquet = pq.ParquetFile(part, pre_buffer=False)
                    for group in range(parquet.num_row_groups):
                        table = parquet.read_row_group(group, use_threads=False)
                        chosen = keep[start : start + table.num_rows]
                        start += table.num_rows
                        if not chosen.all():
                            table = table.filter(pa.array(chosen))
                        if writer is None:
                            writer = pq.ParquetWriter(temporary, table.schema)
                        elif table.schema != writer.schema:
                            table = table.cast(writer.schema)
                        writer.write_table(table)
                        rows += table.num_rows
                if writer is None:  # nothing embedded: still write a valid, empty file
                    pq.write_table(pa.table({"id": pa.array([], pa.string())}), temporary)
            finally:
                if writer is not None:
                    writer.close()
        self._merge_errors()
        return rows

    def _merge_errors(self) -> None:
        lines: list[str] = []
        for path in sorted(self.shards_dir.glob("errors-*.csv")):
            lines.extend(path.read_text(encoding="utf-8").splitlines()[1:])
        rows = "".join(f"{line}\n" for line in lines)  # none: the header alone says nothing failed
        with writing(self.errors_path):
            atomic_write_text(self.errors_path, ",".join(ERROR_COLUMNS) + "\n" + rows)


def _read_part_ids(part: Path) -> pa.Array:
    """The ``id`` column of one shard part (its footer and that column only)."""
    try:
        ids = pq.ParquetFile(part, pre_buffer=False).read(columns=["id"], use_threads=False)
        return ids.column("id").combine_chunks().cast(pa.string())
    except (OSError, pa.ArrowException, KeyError) as error:
        raise EmbeddingStoreError(
            f"{part}: unreadable shard ({str(error).strip().splitlines()[0]}); delete it and rerun "
            "to embed its images again"
        ) from error


def _first_occurrences(ids: pa.Array) -> np.ndarray:
    """(N,) bool: True where an id is seen for the first time, by one hash aggregation in Arrow."""
    positions = pa.array(np.arange(len(ids), dtype=np.int64))
    first = (
        pa.table({"id": ids, "row": positions}).group_by("id", use_threads=False).aggregate([("row", "min")])
    )
    keep = np.zeros(len(ids), bool)
    keep[first.column("row_min").to_numpy()] = True
    return keep


def pending_rows(manifest_ids: pa.Array, done: pa.Array) -> np.ndarray:
    """Positions (int64, ascending) of the manifest rows whose id is not in ``done``, by one hash lookup."""
    embedded = pc.is_in(manifest_ids, value_set=done).to_numpy(zero_copy_only=False)
    return np.flatnonzero(~embedded).astype(np.int64)


class ShardWriter:
    """Buffers embedded rows and writes them as complete shards.

    Args:
        store: Where the shards go.
        tokens_format: File format of token tensors.
        max_rows: Rows per shard.
        max_token_bytes: Flush earlier when buffered token tensors exceed this, so memory stays bounded.
    """

    def __init__(
        self,
        store: EmbeddingStore,
        tokens_format: TokensFormat = "safetensors",
        max_rows: int = 1024,
        max_token_bytes: int = 256 * 2**20,
    ) -> None:
        self.store = store
        self.tokens_format = tokens_format
        self.max_rows = max_rows
        self.max_token_bytes = max_token_bytes
        self.tag = uuid.uuid4().hex[:8]  # unique per process and attempt: parts never overwrite each other
        self.sequence = 0
        self.rows_written = 0
        self._columns: dict[str, list[Any]] = {}
        self._tokens: dict[str, list[torch.Tensor]] = {}
        self._token_bytes = 0

    def __len__(self) -> int:
        return len(self._columns.get("id", []))

    def add(
        self,
        ids: Sequence[str],
        paths: Sequence[str],
        vectors: Mapping[str, torch.Tensor],
        tokens: Mapping[str, torch.Tensor] | None = None,
        extras: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        """Add a batch: ``vectors`` are (B, D) per column (``cls``, ``patch_mean``); ``tokens`` (B, ...)."""
        self._columns.setdefault("id", []).extend(ids)
        self._columns.setdefault("path", []).extend(paths)
        for name, values in vectors.items():
            self._columns.setdefault(name, []).extend(values.float().cpu().numpy())
        for extra in extras:
            for key, value in extra.items():
                self._columns.setdefault(key, []).append(value)
        for name, tensor in (tokens or {}).items():
            tensor = tensor.cpu().contiguous()
            self._tokens.setdefault(name, []).append(tensor)
            self._token_bytes += tensor.numel() * tensor.element_size()
        if len(self) >= self.max_rows or self._token_bytes >= self.max_token_bytes:
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as one shard (tokens first, the parquet part last, both atomic).

        Raises:
            EmbeddingWriteError: a file of the shard could not be written; none of the shard is kept.
        """
        count = len(self)
        if count == 0:
            return
        stem = f"{self.tag}-{self.sequence:05d}"
        columns: dict[str, Any] = {}
        tokens_path: Path | None = None
        if self._tokens:
            tokens_name = f"tokens-{stem}.{self.tokens_format}"
            tokens_path = self.store.shards_dir / tokens_name
            with writing(tokens_path):
                self._write_tokens(tokens_path)
            columns["tokens_file"] = pa.array([tokens_name] * count, pa.string())
            columns["tokens_row"] = pa.array(np.arange(count, dtype=np.int32))
        table_columns: dict[str, Any] = {}
        for name, values in self._columns.items():
            if len(values) != count:
                raise ValueError(f"column '{name}' has {len(values)} values for {count} rows")
            if values and isinstance(values[0], np.ndarray):
                matrix = np.stack(values).astype(np.float32)  # (count, D)
                flat = pa.array(matrix.reshape(-1))
                table_columns[name] = pa.FixedSizeListArray.from_arrays(flat, matrix.shape[1])
            else:
                table_columns[name] = pa.array([str(value) for value in values], pa.string())
        table_columns.update(columns)
        part = self.store.shards_dir / f"part-{stem}.parquet"
        try:
            with writing(part), atomic_path(part) as temporary:
                pq.write_table(pa.table(table_columns), temporary)
        except BaseException:
            if tokens_path is not None:  # tokens without their part are never read: keep no half shard
                tokens_path.unlink(missing_ok=True)
            raise
        self.rows_written += count
        self.sequence += 1
        self._columns = {}
        self._tokens = {}
        self._token_bytes = 0

    def _write_tokens(self, path: Path) -> None:
        stacked = {name: torch.cat(parts) for name, parts in self._tokens.items()}
        with atomic_path(path) as temporary:
            if self.tokens_format == "safetensors":
                save_file(stacked, str(temporary))
            else:
                arrays: dict[str, Any] = {name: tensor.numpy() for name, tensor in stacked.items()}
                with open(temporary, "wb") as handle:
                    np.savez(handle, **arrays)


def vector_matrix(values: pa.Array | pa.ChunkedArray, name: str = "vectors") -> np.ndarray:
    """(N, D) numbers of a list column: fixed-size lists (what ``embed`` writes) or equal-length lists.

    Files written before vectors were fixed-size lists, or by pandas / polars, hold variable lists; they
    are read the same way when every row has the same length.

    Raises:
        ValueError: rows of different lengths, naming the column.
    """
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_fixed_size_list(values.type):
        width = int(values.type.list_size)
    elif len(values) == 0:
        width = 0
    else:
        extremes = pc.min_max(pc.list_value_length(values))
        low, high = extremes["min"].as_py(), extremes["max"].as_py()
        if low != high:
            raise ValueError(f"column '{name}' holds lists of {low} to {high} numbers; expected one length")
        width = int(high)
    flat = values.flatten().to_numpy(zero_copy_only=False)
    return flat.reshape(-1, width) if width else flat.reshape(len(values), 0)


def read_embeddings(path: str | Path, column: str = "cls") -> tuple[list[str], np.ndarray]:
    """Ids and one vector column of an embeddings Parquet file, as an (N, D) float32 array."""
    table = pq.read_table(path, columns=["id", column])
    ids = table.column("id").to_pylist()
    return ids, vector_matrix(table.column(column), column).astype(np.float32)


def read_ids(path: str | Path) -> pa.Array:
    """The ``id`` column of an embeddings Parquet file as one Arrow string array (no Python str per row)."""
    return pq.read_table(path, columns=["id"]).column("id").combine_chunks()


def iter_vector_batches(path: str | Path, column: str, batch_rows: int = 8192) -> Iterator[np.ndarray]:
    """(n, D) rows of one vector column, in file order, ``batch_rows`` at a time, so memory stays flat.

    One row group is decoded at a time (no read-ahead, no parallel decoding), so the peak is a few times
    a row group's size, whatever the file's.
    """
    parquet = pq.ParquetFile(path, pre_buffer=False)
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=[column], use_threads=False):
        yield vector_matrix(batch.column(0), column)


def read_tokens(path: str | Path, row_id: str, name: str = "patch_tokens") -> torch.Tensor:
    """The token tensor ``name`` of one embedded image (e.g. (h*w, D) patch tokens)."""
    path = Path(path)
    table = pq.read_table(path, columns=["id", "tokens_file", "tokens_row"])
    ids = table.column("id").to_pylist()
    if row_id not in ids:
        raise KeyError(f"{path}: no embedded image with id '{row_id}'")
    position = ids.index(row_id)
    tokens_file = path.with_name(path.stem + "_shards") / table.column("tokens_file")[position].as_py()
    row = table.column("tokens_row")[position].as_py()
    if tokens_file.suffix == ".safetensors":
        return load_file(str(tokens_file))[name][row]
    with np.load(tokens_file) as archive:
        return torch.from_numpy(archive[name][row])
