"""Frozen features for the evaluations, extracted once with ``raddino embed`` and reused from a cache.

The cache is an embeddings run (see :mod:`raddino.features.store`) in ``cache_dir``, named after
the manifest, the model and the intermediate layers, so every probe, seed and head of every later command
reads the same file; an interrupted extraction resumes, and a grown manifest only embeds its new rows.

Feature choices are names joined by ``+`` and concatenated in that order: ``cls``, ``patch_mean`` (mean of
the last layer's patch tokens), ``layer{i}_cls`` and ``layer{i}_patch_mean`` for a stored intermediate block
``i``. ``cls+patch_mean`` is the paper's "CLS plus pooled patches"; DINOv2's linear evaluation concatenates
the CLS tokens of the last blocks (``layer8_cls+layer9_cls+...``).

The evaluations read each vector from a memory-mapped copy beside the cache file
(:mod:`raddino.features.vectors`), in float32 or, with ``storage: float16``, in half the memory; they work
through it in chunks, so a command holds about one copy of the vectors it reads, in the page cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from safetensors import safe_open

from raddino.features.store import iter_vector_batches, read_ids
from raddino.features.vectors import (
    FeatureView,
    StorageDtype,
    TextColumn,
    open_vectors,
    parquet_stamp,
    vectors_folder,
)

logger = logging.getLogger(__name__)
_LAYER_NAME = re.compile(r"^layer(-?\d+)_(cls|patch_mean)$")
_VECTOR_COLUMNS = ("cls", "patch_mean")
# Another command filling the same cache entry holds its lock: wait for it, then reuse what it embedded.
_CACHE_LOCK_WAIT_SECONDS = 6 * 3600.0
# Bytes of stored patch tokens read at once while averaging an intermediate layer's patches.
_TOKEN_BLOCK_BYTES = 64 * 2**20


class FeatureError(ValueError):
    """A feature choice cannot be served from the embeddings; the message names it."""


@dataclass
class FeatureConfig:
    """Where frozen features come from: an encoder (extracted into the cache) or an embeddings file."""

    model: str = ""
    """Encoder to extract with: transformers folder, DINOv2 file, ``preset:NAME`` or hub id."""
    embeddings: str = ""
    """An existing embeddings ``.parquet`` of the same images (``raddino embed``), used instead of
    ``model``."""
    cache_dir: str = "feature_cache"
    """Folder of the feature cache, shared between commands and runs."""
    layers: list[int] = field(default_factory=list)
    """Intermediate blocks to extract (needed by ``layer{i}_...`` feature choices)."""
    batch_size: int = 32
    """Images per forward pass while extracting."""
    num_workers: int | None = None
    """DataLoader workers that decode and preprocess while extracting; default: the CPU count, at most 8."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    """Where the encoder runs while extracting, and where kNN's similarities are computed; auto: CUDA,
    else MPS, else the CPU."""
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    """Autocast precision of the encoder while extracting."""
    preprocess: str = ""
    """Preprocessing instead of the model's own (a folder or ``preprocessor_config.json``, or
    ``rad-dino``); needed for a model that carries none."""
    storage: StorageDtype = "float32"
    """How the evaluations hold the vectors (a memory-mapped copy beside the cache file): float16 halves
    memory and disk, each value within 2^-11 (5e-4) relative of float32; computations stay float32."""


def required_layers(choices: Iterable[str]) -> list[int]:
    """Intermediate layers named by ``layer{i}_...`` parts of the feature choices, sorted."""
    layers = set()
    for choice in choices:
        for part in choice.split("+"):
            match = _LAYER_NAME.match(part.strip())
            if match:
                layers.add(int(match.group(1)))
    return sorted(layers)


def cache_path(
    manifest_source: str | Path,
    model: str,
    layers: Sequence[int],
    cache_dir: str | Path,
    preprocess: str = "",
) -> Path:
    """The cache file of one (manifest, model, layers[, preprocessing given]) combination."""
    model_id = str(Path(model).resolve()) if Path(model).exists() else model
    parts: list = [str(Path(manifest_source).resolve()), model_id, sorted(layers)]
    if preprocess:  # only when given, so the caches made before it existed keep their names
        parts.append(str(Path(preprocess).resolve()) if Path(preprocess).exists() else preprocess)
    key = json.dumps(parts)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model_id).name or model_id).strip("-")[:40] or "model"
    return Path(cache_dir) / f"{slug}-{digest}.parquet"


def extract_features(
    input: str | Path, config: FeatureConfig, choices: Iterable[str] = ("cls",)
) -> tuple[Path, int]:
    """Make sure the cache holds features of every image of ``input``; returns (file, images embedded now).

    With ``config.embeddings`` set, nothing is extracted and that file is returned. Otherwise the first
    call embeds the images (resuming an interrupted run) and later calls embed nothing.
    """
    if config.embeddings:
        path = Path(config.embeddings)
        if not path.is_file():
            raise FeatureError(f"{path}: no such embeddings file")
        return path, 0
    if not config.model:
        raise FeatureError("no encoder: set 'model' (or 'embeddings' to use an existing embeddings file)")
    from raddino.features.embed import EmbedConfig, embed  # heavy imports only when extracting

    layers = sorted(set(config.layers) | set(required_layers(choices)))
    out = cache_path(input, config.model, layers, config.cache_dir, config.preprocess)
    summary = embed(
        EmbedConfig(
            input=str(input),
            model=config.model,
            out=str(out),
            batch_size=config.batch_size,
            num_workers=config.num_workers,
            device=config.device,
            precision=config.precision,
            layers=layers,
            preprocess=config.preprocess,
            lock_wait_seconds=_CACHE_LOCK_WAIT_SECONDS,
        )
    )
    logger.info("feature cache %s: %s", out, summary)
    if summary.embedded + summary.skipped == 0:
        raise FeatureError(f"{input}: no image could be embedded; see {summary.errors}")
    return out, summary.embedded


def _fixed_width(path: Path, schema: pa.Schema, name: str) -> int:
    if name not in schema.names:
        raise FeatureError(f"{path}: has no '{name}' column (columns: {', '.join(schema.names)})")
    kind = schema.field(name).type
    if not pa.types.is_fixed_size_list(kind):
        raise FeatureError(f"{path}: column '{name}' is {kind}, not a fixed-size list of numbers")
    return int(kind.list_size)


class _TokenFiles:
    """One tokens file open at a time, read by rows, for a layer's vectors in the Parquet's row order."""

    def __init__(self, path: Path, name: str) -> None:
        match = _LAYER_NAME.match(name)
        if match is None:
            raise FeatureError(f"{name}: not a layer feature (layer<i>_cls or layer<i>_patch_mean)")
        self.layer, self.kind = match.group(1), match.group(2)
        self.stored = f"layer{self.layer}_{'cls' if self.kind == 'cls' else 'patch_tokens'}"
        self.path = path
        self.shards = path.with_name(path.stem + "_shards")
        self._stack = contextlib.ExitStack()
        self._open: tuple[str, Any] | None = None

    def close(self) -> None:
        self._stack.close()

    def _slice(self, tokens_file: str) -> Any:
        if self._open is None or self._open[0] != tokens_file:
            file = self.shards / tokens_file
            if not tokens_file.endswith(".safetensors"):
                raise FeatureError(f"{file}: layer features need safetensors token files")
            self._stack.close()
            try:
                archive = self._stack.enter_context(safe_open(str(file), framework="np"))
            except Exception as error:  # missing, truncated, not safetensors: safetensors' errors vary
                raise FeatureError(f"{file}: cannot read the token file ({error})") from error
            if self.stored not in archive.keys():  # noqa: SIM118 - safe_open has no __contains__
                raise FeatureError(f"{self.path}: layer {self.layer} was not extracted; add it to 'layers'")
            self._open = (tokens_file, archive.get_slice(self.stored))
        return self._open[1]

    def shape(self, tokens_file: str) -> list[int]:
        """The stored tensor's shape in one file: (n, D) or (n, h*w, D)."""
        return list(self._slice(tokens_file).get_shape())

    def read(self, tokens_file: str, rows: np.ndarray) -> np.ndarray:
        """(len(rows), D) vectors of ``rows`` of one tokens file."""
        low, high = int(rows.min()), int(rows.max()) + 1
        values = np.asarray(self._slice(tokens_file)[low:high])[rows - low]
        if self.kind == "patch_mean":
            values = values.mean(axis=1, dtype=np.float32)  # (n, h*w, D) -> (n, D)
        return values


def _first_tokens_file(path: Path) -> str:
    for batch in pq.ParquetFile(path).iter_batches(columns=["tokens_file"]):
        present = batch.column(0).drop_null()
        if len(present):
            return str(present[0].as_py())
    raise FeatureError(f"{path}: no token files were written; embed with 'layers' to get layer features")


def _layer_vectors(path: Path, name: str, files: _TokenFiles, rows_per_batch: int) -> Iterator[np.ndarray]:
    """(n, D) vectors of ``layer{i}_cls`` / ``layer{i}_patch_mean`` in the Parquet's row order."""
    table = pq.ParquetFile(path)
    for batch in table.iter_batches(batch_size=rows_per_batch, columns=["tokens_file", "tokens_row"]):
        if batch.column(0).null_count:
            raise FeatureError(f"{path}: some images have no token file, so '{name}' cannot be served")
        names = batch.column(0).to_pylist()
        rows = batch.column(1).to_numpy(zero_copy_only=False).astype(np.int64)
        blocks, start = [], 0
        for end in range(1, len(names) + 1):  # runs of rows from the same tokens file
            if end == len(names) or names[end] != names[start]:
                blocks.append(files.read(names[start], rows[start:end]))
                start = end
        yield np.concatenate(blocks)


@dataclass
class FeatureTable:
    """Vectors of embedded images by id, memory-mapped; serves any feature choice as rows of (N, D).

    Attributes:
        ids: Row ids, in the embeddings file's order.
        vectors: Each vector name's (N, D_name) array: a read-only memory map (float32 or float16).
    """

    ids: TextColumn
    vectors: dict[str, np.ndarray]

    @classmethod
    def load(
        cls,
        path: str | Path,
        choices: Iterable[str],
        storage: StorageDtype = "float32",
        fallback_dir: str | Path | None = None,
    ) -> FeatureTable:
        """Open the vectors that ``choices`` need, writing their memory-mapped copies on the first read.

        Args:
            path: An embeddings ``.parquet`` (``raddino embed``, or the feature cache).
            choices: Feature choices (``cls``, ``cls+patch_mean``, ``layer8_cls``, ...).
            storage: float32, or float16 for half the memory (computations cast chunks to float32).
            fallback_dir: Where the copies go when the file's folder cannot be written.

        Raises:
            FeatureError: an unknown feature name, a missing column or layer; VectorFileError: a copy
                cannot be written.
        """
        path = Path(path)
        names = {part.strip() for choice in choices for part in choice.split("+")}
        unknown = sorted(n for n in names if n not in _VECTOR_COLUMNS and not _LAYER_NAME.match(n))
        if unknown:
            raise FeatureError(
                f"unknown feature(s) {unknown}: use cls, patch_mean, layer<i>_cls or "
                "layer<i>_patch_mean, joined by +"
            )
        schema = pq.read_schema(path)
        stamp, rows = parquet_stamp(path)
        folder = vectors_folder(path, Path(fallback_dir) if fallback_dir else None)
        vectors: dict[str, np.ndarray] = {}
        for name in sorted(names & set(_VECTOR_COLUMNS)):
            width = _fixed_width(path, schema, name)
            vectors[name] = open_vectors(
                folder,
                name,
                stamp,
                rows,
                width,
                storage,
                lambda name=name: iter_vector_batches(path, name),  # type: ignore[misc]
                f"{path} column '{name}'",
            )
        for name in sorted(n for n in names if _LAYER_NAME.match(n)):
            vectors[name] = _open_layer(path, name, folder, stamp, rows, storage)
        return cls(ids=TextColumn(read_ids(path)), vectors=vectors)

    def view(self, choice: str, rows: np.ndarray | None = None) -> FeatureView:
        """Rows (store positions; all when None) of ``choice``, parts concatenated, read when asked."""
        return FeatureView([self.vectors[name.strip()] for name in choice.split("+")], rows)

    def matrix(self, choice: str, ids: Sequence[str] | None = None) -> np.ndarray:
        """(N, D) float32 features of ``choice`` for ``ids`` (all rows when None), in memory."""
        return self.view(choice, None if ids is None else self.positions(ids)).load()

    def positions(self, ids: Sequence[str]) -> np.ndarray:
        """Row positions of ``ids``; raises naming the first id that has no features."""
        found = self.ids.positions_of(ids)
        missing = np.flatnonzero(found < 0)
        if missing.size:
            raise FeatureError(f"no features for image id {ids[int(missing[0])]!r}")
        return found


def _open_layer(
    path: Path, name: str, folder: Path, stamp: str, rows: int, storage: StorageDtype
) -> np.ndarray:
    """The memory-mapped copy of one intermediate layer's vectors, read from the token files."""
    if "tokens_file" not in pq.read_schema(path).names:
        raise FeatureError(f"{path}: no token files were written; embed with 'layers' to get '{name}'")
    files = _TokenFiles(path, name)
    try:
        shape = files.shape(_first_tokens_file(path)) if rows else [0, 0]
        per_row_bytes = int(np.prod(shape[1:])) * 4
        rows_per_batch = max(1, min(8192, _TOKEN_BLOCK_BYTES // max(per_row_bytes, 1)))
        return open_vectors(
            folder,
            name,
            stamp,
            rows,
            int(shape[-1]),
            storage,
            lambda: _layer_vectors(path, name, files, rows_per_batch),
            f"{path} feature '{name}'",
        )
    finally:
        files.close()
