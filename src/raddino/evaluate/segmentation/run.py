"""``raddino segment``: segmentation heads on a frozen encoder, the paper's protocol (§4.3, Table 6, Fig. 4).

Structures are manifest columns of mask PNG paths (``mask_*`` by default). Images are split 70/15/15 by
subject (or by the manifest's ``split``), each head (linear, ViTDet, UPerNet) is trained from scratch with
the checkpoint of lowest validation loss kept, and the test split is scored by Dice per structure and image
(a correct empty prediction scores 1), reported as mean ± std over images. Predicted masks are saved as PNGs
with overlays. ``fewshot: [1, 2, 5, 10, ...]`` also trains on that many training images (several seeds)
and plots Dice against the number of training images (Figure 4).

Trained heads are saved under ``<out>/checkpoints``; a rerun with the same settings reuses them. Each head
trains on :mod:`raddino.training` in ``<out>/training/<head>`` (``metrics.jsonl`` with ``train/loss`` per
step and ``val/loss`` per epoch; a checkpoint every tenth of the epochs, so a killed run resumes there);
``overwrite`` retrains everything.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from raddino.config import config_to_dict, save_config
from raddino.data.splits import resolve_splits
from raddino.evaluate.metrics import MeanStd, dice_per_image, mean_std
from raddino.evaluate.results import encoder_name, format_mean_std, markdown_table, write_json, write_results
from raddino.evaluate.segmentation.data import (
    SegmentationSample,
    check_flip,
    load_sample,
    mask_columns,
    structure_name,
)
from raddino.evaluate.segmentation.heads import HeadName, default_layers
from raddino.evaluate.segmentation.train import FrozenFeatures, SegTraining, predict, train_head
from raddino.io.atomic import atomic_path
from raddino.io.failures import FailureLog
from raddino.io.manifest import ManifestError, load_inputs
from raddino.io.progress import progress_bar
from raddino.io.state_file import load_state, save_state
from raddino.training import Callback, RunFolder
from raddino.training.tracking import TrackingConfig

logger = logging.getLogger(__name__)
_RESTART = "rerun with --overwrite to train the heads afresh"
_COLOURS = np.array(
    [
        [230, 25, 75],
        [60, 180, 75],
        [0, 130, 200],
        [245, 130, 48],
        [145, 30, 180],
        [70, 240, 240],
        [240, 50, 230],
        [210, 245, 60],
    ],
    np.float32,
)


@dataclass
class SegmentConfig:
    """Settings of ``raddino segment``."""

    input: str = ""
    """Manifest CSV with an image ``path`` and one mask-path column per structure."""
    model: str = ""
    """Encoder: transformers folder, DINOv2 file, ``preset:NAME`` or hub id."""
    out: str = "segment"
    """Output folder."""
    structures: list[str] = field(default_factory=list)
    """Mask columns (default: every ``mask_*`` column)."""
    heads: list[HeadName] = field(default_factory=lambda: ["linear", "vitdet", "upernet"])
    """Heads to train on the frozen encoder, one after another."""
    layers: list[int] = field(default_factory=list)
    """UPerNet's 4 intermediate blocks (default: 3, 5, 7, 11 for 12 blocks)."""
    training: SegTraining = field(default_factory=SegTraining)
    split_ratios: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    """Train / val / test shares when the manifest has no ``split`` column (made by subject)."""
    split_seed: int = 0
    """Seed of the split by subject when the manifest has no ``split`` column."""
    seed: int = 0
    """Seed of the heads' initialisation and batch order."""
    fewshot: list[int] = field(default_factory=list)
    """Training-set sizes of the few-shot curve, e.g. [1, 2, 5, 10, 20]; empty: no curve."""
    fewshot_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds of each few-shot size: which training images are drawn, and the head's initialisation."""
    resolution: int = 0
    """Resize / crop to this size instead of the model's preprocessing (0: the model's, 518 for RAD-DINO);
    a multiple of the patch size."""
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    """Where the encoder and heads run; auto: CUDA, else MPS, else the CPU."""
    cache_features: bool = True
    """Keep the frozen features in memory (float16) across epochs; off when augmenting."""
    save_predictions: bool = True
    """Write each head's predicted test masks and overlays."""
    progress: bool = True
    """Show progress bars."""
    overwrite: bool = False
    """Retrain every head instead of reusing (or resuming) the ones saved in ``out``."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """Each head's training is one tracked run, named ``<out folder>-<head>`` by default."""

    def __post_init__(self) -> None:
        if not self.heads:
            raise ValueError("heads must list at least one of linear, vitdet, upernet")
        if self.layers and len(self.layers) != 4:
            raise ValueError(f"layers must name 4 blocks for UPerNet, got {self.layers}")
        if self.resolution < 0:
            raise ValueError(f"resolution must be positive (or 0 for the model's), got {self.resolution}")
        if any(size < 1 for size in self.fewshot):
            raise ValueError(f"fewshot sizes must be positive, got {self.fewshot}")


def _load_samples(
    manifest: Any, rows: list[dict[str, str]], columns: list[str], preprocess: Any, failures: FailureLog
) -> list[SegmentationSample]:
    samples = []
    for row in progress_bar(rows, desc="read images and masks", unit="img", leave=False):
        try:
            samples.append(load_sample(manifest, row, columns, preprocess))
        except (ValueError, OSError) as error:  # recorded, never fatal
            failures.record(manifest.resolve(row), str(error), stage="segment-read")
    return samples


def dice_summary(
    predicted: torch.Tensor, samples: list[SegmentationSample], names: list[str]
) -> dict[str, Any]:
    """Dice per structure (mean ± std over images with that structure annotated) and their mean."""
    target = torch.stack([s.masks for s in samples])
    known = torch.stack([s.known for s in samples])  # (N, C)
    dice = dice_per_image(predicted, target)  # (N, C)
    per_structure = {name: mean_std(dice[known[:, c], c].tolist()) for c, name in enumerate(names)}
    per_image = [float(dice[i][known[i]].mean()) for i in range(len(samples)) if known[i].any()]
    return {"per_structure": per_structure, "mean": mean_std(per_image)}


def _save_predictions(
    out: Path, head: str, samples: list[SegmentationSample], predicted: torch.Tensor, names: list[str]
) -> None:
    for sample, masks in zip(samples, predicted, strict=True):
        safe_id = sample.id.replace("/", "__")
        grey = sample.pixels[0].numpy()
        grey = (grey - grey.min()) / max(float(grey.max() - grey.min()), 1e-6)
        overlay = np.repeat(grey[..., None] * 255, 3, axis=2).astype(np.float32)  # (H, W, 3)
        for index, name in enumerate(names):
            mask = masks[index].numpy()
            with atomic_path(out / "predictions" / head / safe_id / f"{name}.png") as temporary:
                Image.fromarray((mask * 255).astype(np.uint8)).save(temporary, format="PNG")
            colour = _COLOURS[index % len(_COLOURS)]
            overlay[mask] = 0.55 * overlay[mask] + 0.45 * colour
        with atomic_path(out / "overlays" / head / f"{safe_id}.png") as temporary:
            Image.fromarray(overlay.clip(0, 255).astype(np.uint8)).save(temporary, format="PNG")


@dataclass
class SegmentResult:
    summary: dict[str, MeanStd]
    heads: dict[str, dict[str, Any]]
    fewshot: dict[str, Any]
    outputs: dict[str, Path]
    seconds: float

    def __str__(self) -> str:
        parts = [f"{name} Dice {format_mean_std(self.summary[f'dice/{name}'], 3)}" for name in self.heads]
        return "; ".join(parts) + f" -> {self.outputs['json']}"


class _Runner:
    """Holds what every head of a run shares: samples, frozen features, splits, checkpoints."""

    def __init__(self, config: SegmentConfig, callbacks: Sequence[Callback] = ()) -> None:
        from raddino.features.embed import preprocess_config_for
        from raddino.models import load_encoder
        from raddino.training.distributed import pick_device

        self.config = config
        self.out = Path(config.out)
        self.callbacks = callbacks
        manifest = load_inputs(config.input)
        if manifest.source is None or Path(manifest.source).is_dir():
            raise ManifestError(f"{config.input}: segmentation needs a manifest CSV with mask columns")
        wanted = [c if c in manifest.columns else f"mask_{c}" for c in config.structures]
        self.columns = wanted or mask_columns(manifest.columns)
        missing = [c for c in self.columns if c not in manifest.columns]
        if missing or not self.columns:
            raise ManifestError(
                f"{config.input}: no mask column(s) {missing or 'mask_*'} (columns: {manifest.columns})"
            )
        self.names = [structure_name(column) for column in self.columns]
        if config.training.hflip:
            check_flip(self.names)
        if config.overwrite:
            for folder in ("checkpoints", "training"):
                shutil.rmtree(self.out / folder, ignore_errors=True)
        self.failures = FailureLog(self.out / "errors.csv")
        self.failures.reset()
        device = pick_device(config.device, 0)
        encoder = load_encoder(config.model)
        self.embed_dim = encoder.embed_dim
        layers = config.layers or default_layers(encoder.num_layers)
        preprocess = preprocess_config_for(config.model)
        if config.resolution:
            preprocess = dataclasses.replace(
                preprocess, shortest_edge=config.resolution, crop_size=(config.resolution, config.resolution)
            )
        samples = _load_samples(manifest, manifest.rows, self.columns, preprocess, self.failures)
        if not samples:
            raise ManifestError(f"{config.input}: no image could be read; see {self.failures.path}")
        row_of = {row["id"]: row for row in manifest.rows}  # ids are unique (read_manifest checks)
        rows = [row_of[s.id] for s in samples]
        self.splits = resolve_splits(rows, manifest.columns, config.split_ratios, config.split_seed)
        self.split = {
            name: [samples[int(i)] for i in getattr(self.splits, name)] for name in ("train", "val", "test")
        }
        cache = config.cache_features and not config.training.augment
        self.features = FrozenFeatures(encoder, layers, device, cache)
        self.features.warm(samples, config.training.batch_size, config.progress)
        self.layers = layers
        settings = config_to_dict(config)
        for key in (
            "out",
            "fewshot",
            "fewshot_seeds",
            "save_predictions",
            "progress",
            "heads",
            "device",
            "overwrite",
            "tracking",
        ):
            settings.pop(key)
        settings["splits"] = [[s.id for s in self.split[name]] for name in ("train", "val", "test")]
        self.fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()

    def trained(
        self, head: HeadName, train: list[SegmentationSample], seed: int, tag: str
    ) -> tuple[Any, dict]:
        """A head trained on ``train``, from its checkpoint when an identical run saved one.

        A head is trained on the engine in ``out/training/<tag>`` (checkpoints along the way, so a killed
        run resumes); the finished head goes to ``out/checkpoints/<tag>.pt``.
        """
        path = self.out / "checkpoints" / f"{tag}.pt"
        key = hashlib.sha256(f"{self.fingerprint}/{head}/{seed}/{[s.id for s in train]}".encode()).hexdigest()
        if path.exists():
            saved = load_state(path, "segmentation head checkpoint", _RESTART)
            if saved.get("key") == key:
                from raddino.evaluate.segmentation.heads import make_head

                module = make_head(head, self.embed_dim, len(self.names), self.config.training.channels)
                module.load_state_dict(saved["state"])
                return module.to(self.features.device).eval(), saved["history"]
        run = RunFolder(self.out / "training" / tag, "segmentation training checkpoint", _RESTART)
        module, history = train_head(
            head,
            train,
            self.split["val"],
            self.features,
            self.embed_dim,
            len(self.names),
            self.config.training,
            seed,
            run,
            self.config.progress,
            fingerprint=key,
            callbacks=self.callbacks,
            tracking=dataclasses.replace(
                self.config.tracking, run_name=self.config.tracking.run_name or f"{self.out.name}-{tag}"
            ),
            config=self.config,
        )
        save_state({"key": key, "state": module.state_dict(), "history": history}, path)
        shutil.rmtree(run.checkpoints, ignore_errors=True)  # the finished head replaces them
        return module, history

    def evaluate(self, head: HeadName, module: Any) -> tuple[dict[str, Any], torch.Tensor]:
        test = self.split["test"]
        predicted = predict(module, head, test, self.features, self.config.training.batch_size)
        return dice_summary(predicted, test, self.names), predicted


def _fewshot(runner: _Runner, config: SegmentConfig) -> dict[str, Any]:
    curves: dict[str, Any] = {}
    train = runner.split["train"]
    sizes = sorted({min(size, len(train)) for size in config.fewshot})
    for head in config.heads:
        points = []
        for size in sizes:
            scores = []
            for seed in config.fewshot_seeds:
                order = np.random.default_rng(seed).permutation(len(train))[:size]
                subset = [train[int(i)] for i in sorted(order)]
                module, _ = runner.trained(head, subset, seed, f"fewshot-{head}-{size}-seed{seed}")
                scores.append(runner.evaluate(head, module)[0]["mean"].mean)
            points.append(mean_std(scores))
        curves[head] = points
    return {"sizes": sizes, "curves": curves}


def run_segment(config: SegmentConfig, callbacks: Sequence[Callback] = ()) -> SegmentResult:
    """Train and test each head; writes ``segment.{json,md,csv}``, masks, overlays and the few-shot curve.

    Args:
        config: The settings.
        callbacks: Called after every training step of every head (steps done, the step's record).

    Raises:
        StateFileError: a saved head or training checkpoint in ``out`` is corrupt or refused as unsafe.
    """
    started = time.perf_counter()
    runner = _Runner(config, callbacks)
    sizes = {name: len(samples) for name, samples in runner.split.items()}
    logger.info(
        "segment %s: structures %s, splits %s, layers %s", config.model, runner.names, sizes, runner.layers
    )
    heads: dict[str, dict[str, Any]] = {}
    summary: dict[str, MeanStd] = {}
    for head in config.heads:
        module, history = runner.trained(head, runner.split["train"], config.seed, head)
        scores, predicted = runner.evaluate(head, module)
        heads[head] = {**scores, "best_epoch": history["best_epoch"], "val_loss": history["val_loss"]}
        summary[f"dice/{head}"] = scores["mean"]
        summary.update({f"dice/{head}/{name}": value for name, value in scores["per_structure"].items()})
        if config.save_predictions:
            _save_predictions(runner.out, head, runner.split["test"], predicted, runner.names)
    fewshot = _fewshot(runner, config) if config.fewshot else {}
    encoder = encoder_name(config.model)
    rows = [
        [
            head,
            *(format_mean_std(heads[head]["per_structure"][n], 3) for n in runner.names),
            format_mean_std(heads[head]["mean"], 3),
        ]
        for head in heads
    ]
    markdown = (
        f"# Segmentation: {encoder}\n\nTest Dice, mean ± std over {sizes['test']} images (a correct empty "
        f"prediction scores 1); splits {sizes['train']}/{sizes['val']}/{sizes['test']} "
        f"({runner.splits.source}); "
        f"UPerNet layers {runner.layers}.\n\n" + markdown_table(["head", *runner.names, "mean"], rows)
    )
    details = {
        "structures": runner.names,
        "splits": sizes,
        "layers": runner.layers,
        "heads": heads,
        "failed_images": runner.failures.count,
        "fewshot": fewshot,
    }
    outputs = write_results(runner.out, "segment", encoder, summary, details, markdown)
    outputs["config"] = save_config(config, runner.out / "segment_config.yaml")
    if fewshot:
        from raddino.evaluate.figures import line_chart

        fewshot_summary = {
            f"dice/{head}@{size}": point
            for head, points in fewshot["curves"].items()
            for size, point in zip(fewshot["sizes"], points, strict=True)
        }
        outputs["fewshot_json"] = write_json(
            runner.out / "fewshot.json",
            {"task": "fewshot", "encoder": encoder, "summary": fewshot_summary, **fewshot},
        )
        outputs["fewshot_figure"] = line_chart(
            runner.out / "fewshot.png",
            fewshot["sizes"],
            fewshot["curves"],
            f"Few-shot segmentation: {encoder}",
            "training images",
            "test Dice",
        )
    return SegmentResult(summary, heads, fewshot, outputs, time.perf_counter() - started)
