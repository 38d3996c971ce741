"""``raddino export --format int8``: calibrate a static int8 encoder on the user's images, gate it, write it.

Calibration: the first ``calibration_images`` images of the manifest's ``train`` split. Gate
(:mod:`raddino.evaluate.int8_gate`): on up to ``gate_images`` held-out images (``test``, else ``val``)
against up to ``gate_images`` training images, with the manifest's label columns where it has any. A
model that fails is not written (:class:`Int8GateError`, exit 1) unless ``force``; then ``int8.json``
records the failure. Unreadable images are skipped and counted (``int8.json``: ``skipped_images``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from raddino.data.preprocess import InferencePreprocessor, PreprocessConfig
from raddino.evaluate import int8_gate
from raddino.evaluate.int8_gate import GateResult
from raddino.evaluate.labels import detect_label_columns, label_matrix
from raddino.io.errors import ImageReadError
from raddino.io.images import read_image
from raddino.io.manifest import Manifest, load_inputs
from raddino.models.encoder import Encoder
from raddino.models.export import ExportConfig
from raddino.models.int8 import is_int8, qconfig_summary, quantize_int8, save_int8
from raddino.models.loading import load_encoder
from raddino.training.progress import Progress

logger = logging.getLogger(__name__)
BATCH = 32


class Int8GateError(ValueError):
    """The int8 encoder failed its acceptance gate; one line with the measured numbers."""


@dataclass
class Int8ExportResult:
    """What ``export_int8`` measured and wrote."""

    out: Path
    gate: GateResult
    files: list[Path] = field(default_factory=list)
    forced: bool = False

    @property
    def warning(self) -> str:
        """Printed on stderr: a forced failure, or a gate run without labels."""
        if not self.gate.passed:
            return "warning: written although the gate failed (--force); int8.json records the failure"
        if self.gate.auprc_change is None:
            return "warning: no label columns with both classes: the probe was not run, only the kNN overlap"
        return ""

    def __str__(self) -> str:
        return f"{self.gate.describe()}\nint8 export -> {self.out}: " + ", ".join(p.name for p in self.files)


def _split_rows(manifest: Manifest, source: str | Path) -> tuple[list[dict], list[dict], str]:
    """The ``train`` rows and the held-out rows (``test``, else ``val``) and the held-out split's name."""
    splits: dict[str, list[dict]] = {"train": [], "val": [], "test": []}
    for row in manifest.rows:
        name = str(row.get("split") or "").strip().lower()
        if name in splits:
            splits[name].append(row)
    if not splits["train"]:
        raise ValueError(f"{source}: no 'train' rows to calibrate on (column 'split')")
    heldout = "test" if splits["test"] else "val"
    if not splits[heldout]:
        raise ValueError(f"{source}: no 'test' or 'val' rows to run the int8 gate on (column 'split')")
    return splits["train"], splits[heldout], heldout


def _pixels(
    manifest: Manifest, rows: list[dict], preprocess: InferencePreprocessor, what: str
) -> tuple[torch.Tensor, list[dict], int]:
    """(N, 3, H, W) inputs of the readable rows, those rows, and how many were skipped."""
    images, kept, skipped = [], [], 0
    progress = Progress(len(rows), 0, f"int8: reading {what} images", items_per_step=1)
    for index, row in enumerate(rows):
        try:
            images.append(preprocess(read_image(manifest.resolve(row))))
            kept.append(row)
        except ImageReadError as error:
            skipped += 1
            logger.warning("skipped %s", error)
        progress.update(index + 1, {})
    progress.close()
    if not images:
        raise ValueError(f"{manifest.source}: none of the {len(rows)} {what} images could be read")
    return torch.stack(images), kept, skipped


def _cls(model: torch.nn.Module, pixels: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        parts = [model(pixels[i : i + BATCH]).cls.float() for i in range(0, len(pixels), BATCH)]
    return torch.cat(parts).numpy()  # (N, D)


def _labels(manifest: Manifest, train: list[dict], heldout: list[dict]) -> tuple[list[str], tuple | None]:
    columns = detect_label_columns(manifest.rows, manifest.columns)
    if not columns:
        return [], None
    matrices = tuple(label_matrix(rows, manifest.columns, columns) for rows in (train, heldout))
    return columns, matrices


def export_int8(
    source: str | Path,
    out: str | Path,
    calibration: str | Path,
    *,
    calibration_images: int = 256,
    gate_images: int = 1000,
    force: bool = False,
    overwrite: bool = False,
    max_auprc_drop: float | None = None,
    min_overlap: float | None = None,
) -> Int8ExportResult:
    """Quantise ``source`` to static int8, calibrated and gated on ``calibration``'s images; write ``out``.

    Args:
        source: A float encoder, as :func:`~raddino.models.loading.load_encoder` takes it.
        out: The int8 folder (written whole and atomically, only when the gate passes or ``force``).
        calibration: A manifest with ``split`` (train and test or val) and, ideally, label columns.
        calibration_images: Training images to calibrate the activation scales on.
        gate_images: Most images per split the gate uses.
        force: Write a model that fails the gate (``int8.json`` records the failure).
        overwrite: Replace an existing ``out``.
        max_auprc_drop: Gate bound (default :data:`~raddino.evaluate.int8_gate.MAX_AUPRC_DROP`).
        min_overlap: Gate bound (default :data:`~raddino.evaluate.int8_gate.MIN_KNN_OVERLAP`).

    Raises:
        Int8GateError: the gate failed and ``force`` is off; nothing was written.
        FileExistsError: ``out`` exists and ``overwrite`` is off.
        ValueError: bad manifest, counts, or a source that is already int8.
        ModelLoadError: the source cannot be loaded.
    """
    out = Path(out)
    if calibration_images < 1 or gate_images < 2:
        raise ValueError("calibration_images must be ≥ 1 and gate_images ≥ 2")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
    if not str(calibration):
        raise ValueError("calibration: --format int8 needs --calibration MANIFEST (train + test/val rows)")
    manifest = load_inputs(calibration)
    train_rows, heldout_rows, heldout = _split_rows(manifest, calibration)
    encoder = load_encoder(source).eval()
    if is_int8(encoder):
        raise ValueError(f"{source}: already an int8 encoder; export its float32 original")
    folder = Path(source).expanduser()
    preprocess = PreprocessConfig.from_model_folder(folder) if folder.is_dir() else PreprocessConfig()
    reader = InferencePreprocessor(preprocess)
    wanted = train_rows[: max(gate_images, calibration_images)]
    train, train_rows, skipped_train = _pixels(manifest, wanted, reader, "train")
    test, heldout_rows, skipped_test = _pixels(manifest, heldout_rows[:gate_images], reader, heldout)
    calibration_pixels = train[:calibration_images]
    int8 = quantize_int8(
        encoder, [calibration_pixels[i : i + BATCH] for i in range(0, len(calibration_pixels), BATCH)]
    )
    assert isinstance(int8, Encoder)
    gallery = slice(0, gate_images)
    reference = (_cls(encoder, test), _cls(encoder, train[gallery]))
    candidate = (_cls(int8, test), _cls(int8, train[gallery]))
    columns, labels = _labels(manifest, train_rows[gallery], heldout_rows)
    result = int8_gate.gate(
        reference,
        candidate,
        labels,
        columns,
        max_auprc_drop=int8_gate.MAX_AUPRC_DROP if max_auprc_drop is None else max_auprc_drop,
        min_overlap=int8_gate.MIN_KNN_OVERLAP if min_overlap is None else min_overlap,
    )
    if not result.passed and not force:
        raise Int8GateError(f"{result.describe()}; nothing written (--force writes it anyway)")
    info = {
        "source": str(source),
        "qconfig": qconfig_summary(True),
        "gate": result.to_dict(),
        "forced": not result.passed,
        "calibration": {
            "manifest": str(Path(calibration).resolve()),
            "split": "train",
            "images": len(calibration_pixels),
            "ids": [row["id"] for row in train_rows[: len(calibration_pixels)]],
            "heldout_split": heldout,
            "skipped_images": skipped_train + skipped_test,
        },
    }
    files = save_int8(int8, out, info=info, preprocess=preprocess)
    return Int8ExportResult(out=out, gate=result, files=files, forced=not result.passed)


def run_int8_export(config: ExportConfig) -> Int8ExportResult:
    """:func:`export_int8` with the settings of ``raddino export``."""
    return export_int8(
        config.model,
        config.out,
        config.calibration,
        calibration_images=config.calibration_images,
        gate_images=config.gate_images,
        force=config.force,
        overwrite=config.overwrite,
    )


__all__ = ["Int8ExportResult", "Int8GateError", "export_int8", "run_int8_export"]
