"""The labelled images of a fine-tuning run, preprocessed once and split by subject.

Classification follows the probe's label conventions (:mod:`raddino.evaluate.labels`): multi-label
findings, 0/1 per image, NaN where a label is missing (masked out of the loss and the metrics); rows with
no known label are left out. Segmentation reads the ``mask_*`` columns as ``raddino segment`` does.
Splits are the one rule of :mod:`raddino.data.splits` (the ``split`` column, else by subject).

Images are read once into memory as preprocessed float16 tensors (3·H·W·2 bytes each: 1.6 MB at 518 px,
0.3 MB at 224 px); an image that cannot be read is recorded in ``errors.csv`` and left out.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from raddino.data.preprocess import InferencePreprocessor, PreprocessConfig
from raddino.data.splits import Splits, resolve_splits
from raddino.evaluate.labels import LabelError, detect_label_columns, label_matrix
from raddino.evaluate.segmentation.data import load_sample, mask_columns, structure_name
from raddino.finetune.config import FinetuneConfig
from raddino.io.failures import FailureLog
from raddino.io.images import read_image
from raddino.io.manifest import ManifestError, load_inputs
from raddino.io.progress import progress_bar

logger = logging.getLogger(__name__)


@dataclass
class FinetuneData:
    """Preprocessed images with their targets, in manifest order, and the splits."""

    names: list[str]
    """Findings (classify) or structures (segment)."""
    ids: list[str]
    pixels: torch.Tensor
    """(N, 3, H, W) float16."""
    targets: torch.Tensor
    """Classify: (N, C) float32 0/1, NaN where missing. Segment: (N, C, H, W) bool masks."""
    known: torch.Tensor
    """(N, C) bool: the label or mask is known."""
    splits: Splits
    failed: int

    def subset(self, split: str) -> np.ndarray:
        return getattr(self.splits, split)


def preprocess_for(config: FinetuneConfig) -> PreprocessConfig:
    """The model's preprocessing, at ``config.resolution`` when that is set."""
    from raddino.features.embed import preprocess_config_for

    preprocess = preprocess_config_for(config.model)
    if config.resolution:
        side = config.resolution
        preprocess = dataclasses.replace(preprocess, shortest_edge=side, crop_size=(side, side))
    return preprocess


def load_finetune_data(
    config: FinetuneConfig, preprocess: PreprocessConfig, failures: FailureLog
) -> FinetuneData:
    """Read, preprocess and split the manifest's images.

    Raises:
        ManifestError: not a manifest CSV, no mask columns, or no image could be read.
        LabelError: a named label column is missing, a cell is not a label, or no row has a known label.
        SplitError: the splits cannot be made.
    """
    manifest = load_inputs(config.input)
    if manifest.source is None or Path(manifest.source).is_dir():
        raise ManifestError(f"{config.input}: fine-tuning needs a manifest CSV with label or mask columns")
    if config.task == "segment":
        wanted = [c if c in manifest.columns else f"mask_{c}" for c in config.structures]
        columns = wanted or mask_columns(manifest.columns)
        missing = [c for c in columns if c not in manifest.columns]
        if missing or not columns:
            raise ManifestError(f"{config.input}: no mask column(s) {missing or 'mask_*'}")
        names = [structure_name(column) for column in columns]
        rows = manifest.rows
    else:
        names = list(config.labels) or detect_label_columns(manifest.rows, manifest.columns)
        if not names:
            raise LabelError(f"{config.input}: no label columns found; name them with 'labels'")
        labels = label_matrix(manifest.rows, manifest.columns, names, config.uncertain)  # checks every cell
        keep = ~np.isnan(labels).all(axis=1)
        rows = [row for row, kept in zip(manifest.rows, keep, strict=True) if kept]
        labels = labels[keep]
    transform = InferencePreprocessor(preprocess)
    pixels, targets, known, kept_rows = [], [], [], []
    reading = progress_bar(rows, desc="read images", unit="img", disable=not config.progress)
    for index, row in enumerate(reading):
        path = manifest.resolve(row)
        try:
            if config.task == "segment":
                sample = load_sample(manifest, row, columns, preprocess)
                image, target, row_known = sample.pixels, sample.masks, sample.known
            else:
                image = transform(read_image(path))
                target = torch.from_numpy(labels[index])
                row_known = ~torch.isnan(target)
        except (ValueError, OSError) as error:  # recorded, never fatal
            failures.record(path, str(error), stage="finetune-read")
            continue
        pixels.append(image.half())
        targets.append(target)
        known.append(row_known)
        kept_rows.append(row)
    if not kept_rows:
        raise ManifestError(f"{config.input}: no image could be read; see {failures.path}")
    splits = resolve_splits(kept_rows, manifest.columns, config.split_ratios, config.split_seed)
    logger.info(
        "%d images (%d unreadable); splits %s (%s)",
        len(kept_rows),
        failures.count,
        splits.sizes(),
        splits.source,
    )
    return FinetuneData(
        names=names,
        ids=[row["id"] for row in kept_rows],
        pixels=torch.stack(pixels),
        targets=torch.stack(targets),
        known=torch.stack(known),
        splits=splits,
        failed=failures.count,
    )
