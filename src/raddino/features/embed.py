"""Embeddings at scale: CLS (+ pooled patch, patch tokens, intermediate layers) for a folder or manifest.

Run under ``torchrun`` to use several GPUs: each rank embeds every ``world_size``-th pending image and rank 0
merges the shards::

    torchrun --nproc_per_node=8 -m raddino embed xrays/ --model microsoft/rad-dino --out emb.parquet

Before anything is written the options are checked against the model (:mod:`raddino.features.options`)
and the output is locked (:mod:`raddino.io.lock`): a second run on the same ``--out`` is refused.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from torch.utils.data import DataLoader

from raddino.config import save_config
from raddino.data.image_dataset import ManifestImageDataset, collate_images
from raddino.data.preprocess import InferencePreprocessor, PreprocessConfig
from raddino.features.options import check_device, check_options, describe_preprocess, resolve_preprocess
from raddino.features.store import EmbeddingStore, ShardWriter, TokensFormat, pending_rows, writing
from raddino.io.failures import FailureLog
from raddino.io.lock import LockError, OutputLock
from raddino.io.manifest import Manifest, load_inputs
from raddino.io.progress import progress_bar
from raddino.models import Encoder, load_encoder
from raddino.training.distributed import DistributedContext, init_distributed
from raddino.training.precision import InferencePrecision, autocast

logger = logging.getLogger(__name__)


@dataclass
class EmbedConfig:
    """Settings of ``raddino embed``."""

    input: str = ""
    """Folder of images (searched recursively) or a manifest CSV."""
    model: str = ""
    """Transformers folder, DINOv2-format .safetensors/.pth, ``preset:NAME``, or a hub id (downloads)."""
    out: str = "embeddings.parquet"
    """Output Parquet file; shards, errors and the config are written beside it."""
    batch_size: int = 32
    """Images per forward pass."""
    num_workers: int | None = None
    """DataLoader workers that decode and preprocess; default: the CPU count, at most 8."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    """Where the encoder runs; auto: CUDA, else MPS, else the CPU."""
    precision: InferencePrecision = "fp32"
    """fp16 / bf16 autocast on GPU (bf16 also on CPU)."""
    patch_mean: bool = True
    """Also store the mean of the last layer's patch tokens."""
    patch_tokens: bool = False
    """Store every patch token of the last layer, (h*w, D) per image, in the token shards."""
    layers: list[int] = field(default_factory=list)
    """Intermediate blocks (0-based, negatives count from the end) whose CLS and patch tokens to store."""
    tokens_format: TokensFormat = "safetensors"
    """File format of the token shards (patch tokens and intermediate layers)."""
    tokens_dtype: Literal["float16", "bfloat16", "float32"] = "float16"
    """Precision the tokens are stored in."""
    shard_size: int = 1024
    """Images per shard: a crash loses at most this many."""
    columns: list[str] = field(default_factory=list)
    """Manifest columns to copy into the output (e.g. subject_id, split, labels)."""
    dicom_tags: list[str] = field(default_factory=list)
    """DICOM attributes to copy into the output; none by default since headers may hold patient data."""
    strict: bool = False
    """Exit non-zero when any image failed (by default only when none succeeded)."""
    overwrite: bool = False
    """Discard an earlier run's outputs instead of resuming it."""
    preprocess: str = ""
    """Preprocessing instead of the model's own: a folder or ``preprocessor_config.json`` file, or
    ``rad-dino`` for the release's values. Needed when the model has none (a bare weights file)."""
    lock_wait_seconds: float = 0.0
    """How long to wait for another run writing the same output to finish; 0 refuses at once."""

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        if self.shard_size < 1:
            raise ValueError(f"shard_size must be at least 1, got {self.shard_size}")
        if self.num_workers is not None and self.num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {self.num_workers}")
        if self.lock_wait_seconds < 0:
            raise ValueError(f"lock_wait_seconds must be >= 0, got {self.lock_wait_seconds}")


@dataclass
class EmbedSummary:
    """What a run did; ``exit_code`` follows the ``--strict`` rule."""

    total: int
    skipped: int
    embedded: int
    failed: int
    out: Path
    errors: Path | None
    seconds: float
    strict: bool = False

    @property
    def exit_code(self) -> int:
        if self.embedded + self.skipped == 0 and self.total > 0:
            return 1
        return 1 if self.strict and self.failed else 0

    def __str__(self) -> str:
        rate = self.embedded / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"{self.total} images: {self.embedded} embedded ({rate:.1f} img/s), "
            f"{self.skipped} already done, {self.failed} failed -> {self.out}"
        )
        return text + (f"; failures listed in {self.errors}" if self.failed else "")


def preprocess_config_for(source: str, preprocess: str = "") -> PreprocessConfig:
    """The preprocessing of model ``source``: ``preprocess`` when given, else the model's own.

    See :func:`raddino.features.options.resolve_preprocess`; the values used and where they came from
    are logged.

    Raises:
        EmbedOptionError: the model has no preprocessing and none was given (says how to give it).
    """
    config, origin = resolve_preprocess(source, preprocess)
    logger.info("preprocessing from %s: %s", origin, describe_preprocess(config))
    return config


def _encode(encoder: Encoder, pixels: torch.Tensor, config: EmbedConfig) -> tuple[dict, dict]:
    """Vectors (B, D) and token tensors for one batch of preprocessed pixels (B, 3, H, W)."""
    token_dtype = getattr(torch, config.tokens_dtype)
    tokens: dict[str, torch.Tensor] = {}
    if config.layers:
        *intermediate, last = encoder.forward_intermediates(pixels, [*config.layers, -1])
        for layer, features in zip(config.layers, intermediate, strict=False):
            tokens[f"layer{layer}_cls"] = features.cls.to(token_dtype)
            tokens[f"layer{layer}_patch_tokens"] = (
                features.patch_tokens.flatten(2).transpose(1, 2).to(token_dtype)
            )
    else:
        last = encoder.forward_features(pixels)
    vectors = {"cls": last.cls}  # (B, D)
    if config.patch_mean:
        vectors["patch_mean"] = last.patch_tokens.float().mean(dim=(2, 3))  # (B, D)
    if config.patch_tokens:
        tokens["patch_tokens"] = last.patch_tokens.flatten(2).transpose(1, 2).to(token_dtype)  # (B, h*w, D)
    return vectors, tokens


def _default_workers() -> int:
    return min(8, os.cpu_count() or 1)


def embed(config: EmbedConfig, context: DistributedContext | None = None) -> EmbedSummary:
    """Embed every image of ``config.input`` with ``config.model``; resumes an interrupted run.

    Returns:
        The summary; per-image failures are in ``summary.errors`` and never stop the run.

    Raises:
        EmbedOptionError: an option does not fit the model or the machine (nothing has been written).
        LockError: another run is writing the same output.
        EmbeddingWriteError: an output file could not be written (disk full); no partial shard is kept.
    """
    started = time.perf_counter()
    if context is None:
        check_device(config.device)
        context = init_distributed(config.device)
    manifest = load_inputs(config.input)
    for column in config.columns:
        manifest.column(column)  # raises, naming the column, before any work is done
    store = EmbeddingStore(config.out)
    encoder = load_encoder(config.model)
    preprocess, origin = resolve_preprocess(config.model, config.preprocess)
    check_options(
        model=config.model,
        encoder=encoder,
        preprocess=preprocess,
        device=context.device,
        precision=config.precision,
        layers=config.layers,
        stores_tokens=config.patch_tokens or bool(config.layers),
        tokens_format=config.tokens_format,
        tokens_dtype=config.tokens_dtype,
        columns=config.columns,
        dicom_tags=config.dicom_tags,
    )
    if context.is_main:
        logger.info("preprocessing from %s: %s", origin, describe_preprocess(preprocess))
    lock = OutputLock(store.lock_path, what=f"embeddings output {store.out}")
    _lock_on_main(lock, context, config.lock_wait_seconds)
    try:
        return _run(config, context, store, manifest, encoder.to(context.device).eval(), preprocess, started)
    finally:
        lock.release()


def _lock_on_main(lock: OutputLock, context: DistributedContext, wait_seconds: float) -> None:
    """Rank 0 takes the output's lock; every rank stops when it could not (none waits at a barrier)."""
    refusal: LockError | None = None
    if context.is_main:
        try:
            lock.acquire(wait_seconds)
        except LockError as error:
            refusal = error
    if context.is_distributed:
        import torch.distributed as dist

        refused = torch.tensor([int(refusal is not None)], dtype=torch.int64)
        if context.device.type == "cuda":
            refused = refused.to(context.device)
        dist.broadcast(refused, src=0)
        if refused.item() and refusal is None:
            raise LockError(f"{lock.path}: rank 0 could not lock this output (see its message)")
    if refusal is not None:
        raise refusal


def _run(
    config: EmbedConfig,
    context: DistributedContext,
    store: EmbeddingStore,
    manifest: Manifest,
    encoder: Encoder,
    preprocess: PreprocessConfig,
    started: float,
) -> EmbedSummary:
    """The run itself, once the options are checked and the output is locked."""
    model_id = str(Path(config.model).resolve()) if Path(config.model).exists() else config.model
    settings = {
        "model": model_id,
        "preprocess": preprocess.to_dict(),
        "precision": config.precision,
        "patch_mean": config.patch_mean,
        "patch_tokens": config.patch_tokens,
        "layers": list(config.layers),
        "tokens_dtype": config.tokens_dtype,
        "tokens_format": config.tokens_format,
        "columns": list(config.columns),
        "dicom_tags": list(config.dicom_tags),
    }
    if context.is_main:
        if config.overwrite:
            store.clear()
        for leftover in store.remove_temporaries():
            logger.info("removed %s, left by an interrupted run", leftover)
        store.check_settings(settings)
        store.clear_attempt_errors()
    context.barrier()

    done = store.done_id_array()  # Arrow strings: ids and a hash lookup, no dict or str per row
    pending = pending_rows(manifest.column_array("id"), done)
    mine = np.ascontiguousarray(pending[context.rank :: context.world_size])
    skipped = pc.count_distinct(done).as_py()
    carried = ["id", "path", *config.columns]
    rows = manifest.table.select(list(dict.fromkeys(carried))).take(pa.array(mine))  # this rank's rows
    dataset = ManifestImageDataset(
        [manifest.resolve_text(path) for path in rows.column("path").to_pylist()],
        InferencePreprocessor(preprocess),
        indices=range(len(mine)),
        dicom_tags=config.dicom_tags,
    )
    workers = _default_workers() if config.num_workers is None else config.num_workers
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        num_workers=workers,
        collate_fn=collate_images,
        pin_memory=context.device.type == "cuda",
        prefetch_factor=4 if workers > 0 else None,
    )
    failures = FailureLog(store.shards_dir / f"errors-r{context.rank:03d}.csv")
    writer = ShardWriter(store, config.tokens_format, max_rows=config.shard_size)
    if context.is_main:
        logger.info(
            "%d images, %d already embedded, %d to do on %d process(es); model %s on %s",
            len(manifest),
            skipped,
            len(pending),
            context.world_size,
            config.model,
            context.device,
        )
    progress = progress_bar(
        total=len(mine), unit="img", desc="embed", disable=not context.is_main, dynamic_ncols=True
    )
    try:
        with torch.inference_mode(), autocast(context.device, config.precision):
            for batch in loader:
                for failure in batch.failures:
                    with writing(failures.path):
                        failures.record(failure.path, failure.error or "unknown error", stage="read")
                if batch.indices:
                    pixels = batch.pixels.to(context.device, non_blocking=True)
                    vectors, tokens = _encode(encoder, pixels, config)
                    batch_rows = rows.take(pa.array(batch.indices, pa.int64())).to_pylist()
                    extras = [
                        {**{column: row[column] for column in config.columns}, **extra}
                        for row, extra in zip(batch_rows, batch.extras, strict=False)
                    ]
                    writer.add(
                        [row["id"] for row in batch_rows],
                        [row["path"] for row in batch_rows],
                        vectors,
                        tokens,
                        extras,
                    )
                progress.update(len(batch.indices) + len(batch.failures))
                progress.set_postfix(failed=failures.count, refresh=False)
        writer.flush()
    finally:
        progress.close()  # the bar ends its line before any error message
    context.barrier()

    return _finish(config, context, store, len(manifest), skipped, writer, failures, started)


def _finish(
    config: EmbedConfig,
    context: DistributedContext,
    store: EmbeddingStore,
    total: int,
    skipped: int,
    writer: ShardWriter,
    failures: FailureLog,
    started: float,
) -> EmbedSummary:
    embedded, failed = writer.rows_written, failures.count
    if context.is_distributed:
        import torch.distributed as dist

        counts = torch.tensor([embedded, failed], dtype=torch.int64)
        if context.device.type == "cuda":
            counts = counts.to(context.device)
        dist.all_reduce(counts)
        embedded, failed = (int(value) for value in counts.tolist())
    if context.is_main:
        store.merge()
        with writing(store.config_path):
            save_config(config, store.config_path)
    context.barrier()
    return EmbedSummary(
        total=total,
        skipped=skipped,
        embedded=embedded,
        failed=failed,
        out=store.out,
        errors=store.errors_path if failed else None,
        seconds=time.perf_counter() - started,
        strict=config.strict,
    )
