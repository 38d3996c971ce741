"""Frozen features for the evaluations, extracted once with ``raddino embed`` and reused from a cache.

The cache is an embeddings run (see :mod:`raddino.features.store`) in ``cache_dir``, named after
the manifest, the model and the intermediate layers, so every probe, seed and head of every later command
reads the same file; an interrupted extraction resumes, and a grown manifest only embeds its new rows.

Feature choices are names joined by ``+`` and concatenated in that order: ``cls``, ``patch_mean`` (mean of
the last layer's patch tokens), ``layer{i}_cls`` and ``layer{i}_patch_mean`` for a stored intermediate block
``i``. ``cls+patch_mean`` is the paper's "CLS plus pooled patches"; DINOv2's linear evaluation concatenates
the CLS tokens of the last blocks (``layer8_cls+layer9_cls+...``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow.parquet as pq
from safetensors import safe_open

from raddino.features.store import read_embeddings

logger = logging.getLogger(__name__)
_LAYER_NAME = re.compile(r"^layer(-?\d+)_(cls|patch_mean)$")
_VECTOR_COLUMNS = ("cls", "patch_mean")
# Another command filling the same cache entry holds its lock: wait for it, then reuse what it embedded.
_CACHE_LOCK_WAIT_SECONDS = 6 * 3600.0


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
    """Where the encoder runs while extracting; auto: CUDA, else MPS, else the CPU."""
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    """Autocast precision of the encoder while extracting."""
    preprocess: str = ""
    """Preprocessing instead of the model's own (a folder or ``preprocessor_config.json``, or
    ``rad-dino``); needed for a model that carries none."""


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


def _layer_vectors(path: Path, names: set[str]) -> dict[str, np.ndarray]:
    """``layer{i}_cls`` / ``layer{i}_patch_mean`` of every row, read shard by shard from the token files."""
    table = pq.read_table(path, columns=["tokens_file", "tokens_row"])
    files = table.column("tokens_file").to_pylist()
    rows = np.asarray(table.column("tokens_row").to_pylist(), np.int64)
    shards = path.with_name(path.stem + "_shards")
    vectors: dict[str, np.ndarray] = {}
    for tokens_file in sorted(set(files)):
        positions = np.flatnonzero(np.asarray(files) == tokens_file)
        if not tokens_file.endswith(".safetensors"):
            raise FeatureError(f"{shards / tokens_file}: layer features need safetensors token files")
        with safe_open(str(shards / tokens_file), framework="np") as archive:
            for name in names:
                layer, kind = _LAYER_NAME.match(name).groups()  # type: ignore[union-attr]
                stored = f"layer{layer}_{'cls' if kind == 'cls' else 'patch_tokens'}"
                if stored not in archive.keys():  # noqa: SIM118 - safe_open has no __contains__
                    raise FeatureError(f"{path}: layer {layer} was not extracted; add it to 'layers'")
                values = archive.get_tensor(stored)[rows[positions]].astype(np.float32)
                if kind == "patch_mean":
                    values = values.mean(axis=1)  # (n, h*w, D) -> (n, D)
                target = vectors.setdefault(name, np.zeros((len(files), values.shape[-1]), np.float32))
                target[positions] = values
    return vectors


@dataclass
class FeatureTable:
    """Vectors of embedded images by id; serves any feature choice as a concatenated (N, D) matrix."""

    ids: list[str]
    vectors: dict[str, np.ndarray]

    @classmethod
    def load(cls, path: str | Path, choices: Iterable[str]) -> FeatureTable:
        """Read the vector columns that ``choices`` need from an embeddings file."""
        path = Path(path)
        names = {part.strip() for choice in choices for part in choice.split("+")}
        unknown = sorted(n for n in names if n not in _VECTOR_COLUMNS and not _LAYER_NAME.match(n))
        if unknown:
            raise FeatureError(
                f"unknown feature(s) {unknown}: use cls, patch_mean, layer<i>_cls or "
                "layer<i>_patch_mean, joined by +"
            )
        schema = pq.read_schema(path)
        vectors: dict[str, np.ndarray] = {}
        ids: list[str] = pq.read_table(path, columns=["id"]).column("id").to_pylist()
        for name in sorted(names & set(_VECTOR_COLUMNS)):
            if name not in schema.names:
                raise FeatureError(f"{path}: has no '{name}' column (columns: {', '.join(schema.names)})")
            _, vectors[name] = read_embeddings(path, name)
        layer_names = {name for name in names if _LAYER_NAME.match(name)}
        if layer_names:
            vectors.update(_layer_vectors(path, layer_names))
        return cls(ids=ids, vectors=vectors)

    def matrix(self, choice: str, ids: Sequence[str] | None = None) -> np.ndarray:
        """(N, D) float32 features of ``choice`` for ``ids`` (all rows when None), parts concatenated."""
        parts = [self.vectors[name.strip()] for name in choice.split("+")]
        features = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        if ids is None:
            return features
        return features[self.positions(ids)]

    def positions(self, ids: Sequence[str]) -> np.ndarray:
        """Row positions of ``ids``; raises naming the first id that has no features."""
        lookup = {row_id: position for position, row_id in enumerate(self.ids)}
        try:
            return np.asarray([lookup[row_id] for row_id in ids], np.int64)
        except KeyError as error:
            raise FeatureError(f"no features for image id {error.args[0]!r}") from error
