"""Training a segmentation head on a frozen encoder: Dice + cross-entropy, Adam, cosine, best validation loss.

The paper's recipe (§4.3): heads from scratch on the frozen encoder, Adam with lr 5e-4 and cosine decay,
100 epochs, the checkpoint with the lowest validation loss kept. Masks are multi-label (structures may
overlap, e.g. a lung and its zones), so the cross-entropy is a per-structure binary one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from raddino.evaluate.segmentation.data import SegmentationSample, random_affine
from raddino.evaluate.segmentation.heads import HeadName, make_head
from raddino.io.progress import progress_bar
from raddino.models import Encoder
from raddino.training import (
    Callback,
    Engine,
    LossTerms,
    MixedPrecision,
    Optimization,
    Plan,
    RunFolder,
    Schedules,
    StepResult,
    TaskBase,
    cosine_schedule,
)
from raddino.training.tracking import TrackingConfig


@dataclass
class SegTraining:
    """Optimisation of the segmentation heads (defaults: the paper's)."""

    epochs: int = 100
    """Training epochs of each head (paper: 100)."""
    batch_size: int = 8
    lr: float = 5e-4
    weight_decay: float = 0.0
    dice_weight: float = 1.0
    ce_weight: float = 1.0
    channels: int = 256
    """Width of the ViTDet / UPerNet decoders."""
    augment: bool = False
    """Random affine augmentation (runs the encoder on every batch instead of caching features)."""
    hflip: bool = False
    """Random horizontal flips; refused for sided structures (lungs, zones, left/right)."""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"epochs and batch_size must be at least 1, got {self.epochs}, {self.batch_size}"
            )
        if self.lr <= 0:
            raise ValueError(f"lr must be positive, got {self.lr}")


def segmentation_loss(
    logits: torch.Tensor,
    masks: torch.Tensor,
    known: torch.Tensor,
    dice_weight: float = 1.0,
    ce_weight: float = 1.0,
) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice loss per image and structure, over annotated structures only.

    Args:
        logits: (B, C, H, W).
        masks: (B, C, H, W) 0/1 floats.
        known: (B, C) bool, False where a structure is not annotated.
    """
    bce = nn.functional.binary_cross_entropy_with_logits(logits, masks, reduction="none").mean(
        dim=(2, 3)
    )  # (B, C)
    probabilities = torch.sigmoid(logits)
    intersection = (probabilities * masks).sum(dim=(2, 3))  # (B, C)
    total = probabilities.sum(dim=(2, 3)) + masks.sum(dim=(2, 3))
    dice_loss = 1 - (2 * intersection + 1) / (total + 1)  # +1 smoothing: an empty, correct prediction costs 0
    weights = known.float()
    return ((ce_weight * bce + dice_weight * dice_loss) * weights).sum() / weights.sum().clamp(min=1)


class FrozenFeatures:
    """Patch-token maps of the frozen encoder for a batch, cached per image when nothing is augmented.

    Returns ``len(layers) + 1`` maps per call: the asked intermediate blocks, then the last block.
    """

    def __init__(self, encoder: Encoder, layers: Sequence[int], device: torch.device, cache: bool) -> None:
        self.encoder = encoder.to(device).eval()
        self.indices = [*layers, -1]
        self.device = device
        self.cache: dict[str, list[torch.Tensor]] | None = {} if cache else None

    @torch.no_grad()
    def compute(self, pixels: torch.Tensor) -> list[torch.Tensor]:
        maps = self.encoder.forward_intermediates(pixels.to(self.device), self.indices)
        return [feature.patch_tokens.float() for feature in maps]  # each (B, D, h, w)

    def warm(self, samples: Sequence[SegmentationSample], batch_size: int, progress: bool = True) -> None:
        """Fill the cache in the samples' order, so every head (and a resumed run) reads features computed
        in the same batches, whatever order training first asks for them in."""
        if self.cache is None:
            return
        missing = list({s.id: s for s in samples if s.id not in self.cache}.values())
        starts = range(0, len(missing), batch_size)
        bar = progress_bar(starts, desc="frozen features", unit="batch", disable=not progress, leave=False)
        for start in bar:
            self(missing[start : start + batch_size])

    def __call__(self, samples: Sequence[SegmentationSample]) -> list[torch.Tensor]:
        if self.cache is None:
            return self.compute(torch.stack([s.pixels for s in samples]))
        missing = [s for s in samples if s.id not in self.cache]
        if missing:
            computed = self.compute(torch.stack([s.pixels for s in missing]))
            for position, sample in enumerate(missing):  # float16 halves the memory of the cache
                self.cache[sample.id] = [level[position].half().cpu() for level in computed]
        return [
            torch.stack([self.cache[s.id][level] for s in samples]).float().to(self.device)
            for level in range(len(self.indices))
        ]


def _head_inputs(name: HeadName, maps: list[torch.Tensor]) -> list[torch.Tensor]:
    return maps[:4] if name == "upernet" else maps[-1:]


def _batch_targets(
    samples: Sequence[SegmentationSample], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    masks = torch.stack([s.masks for s in samples]).float().to(device)  # (B, C, H, W)
    known = torch.stack([s.known for s in samples]).to(device)  # (B, C)
    return masks, known


def _batches(count: int, size: int, generator: torch.Generator | None) -> list[torch.Tensor]:
    order = torch.randperm(count, generator=generator) if generator is not None else torch.arange(count)
    return [order[start : start + size] for start in range(0, count, size)]


def _augmented_maps(
    features: FrozenFeatures,
    samples: Sequence[SegmentationSample],
    training: SegTraining,
    generator: torch.Generator,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    pixels = torch.stack([s.pixels for s in samples])  # (B, 3, H, W)
    masks = torch.stack([s.masks for s in samples]).float()  # (B, C, H, W)
    pixels, moved = random_affine(pixels, masks, generator)
    assert moved is not None  # masks were given
    masks = moved
    if training.hflip:
        flip = torch.rand(len(samples), generator=generator) < 0.5
        pixels[flip], masks[flip] = pixels[flip].flip(-1), masks[flip].flip(-1)
    return features.compute(pixels), masks.to(features.device)


@torch.no_grad()
def validation_loss(
    head: nn.Module,
    name: HeadName,
    samples: Sequence[SegmentationSample],
    features: FrozenFeatures,
    training: SegTraining,
) -> float:
    head.eval()
    total, count = 0.0, 0
    for batch in _batches(len(samples), training.batch_size, None):
        chosen = [samples[int(i)] for i in batch]
        masks, known = _batch_targets(chosen, features.device)
        logits = head(_head_inputs(name, features(chosen)), masks.shape[-2:])
        total += segmentation_loss(
            logits, masks, known, training.dice_weight, training.ce_weight
        ).item() * len(chosen)
        count += len(chosen)
    return total / max(count, 1)


class SegmentationTask(TaskBase):
    """One head trained on the frozen features, on the engine: one micro-batch per step, one epoch a pass
    over the training images in an order drawn from the task's generator, validation at each epoch's end
    keeping the state of lowest validation loss (the training loss when there is no validation split)."""

    def __init__(
        self,
        name: HeadName,
        train: Sequence[SegmentationSample],
        val: Sequence[SegmentationSample],
        features: FrozenFeatures,
        embed_dim: int,
        classes: int,
        training: SegTraining,
        seed: int,
    ) -> None:
        self.name, self.train_samples, self.val_samples = name, train, val
        self.features, self.training, self.seed = features, training, seed
        self.embed_dim, self.classes = embed_dim, classes
        self.description = f"segment {name}"
        self.steps_per_epoch = math.ceil(len(train) / training.batch_size)
        self.generator = torch.Generator().manual_seed(seed)  # batch order, affine draws and flips
        self.order = torch.arange(0)
        self.batch_images = 0
        self.running = 0.0  # sum of batch loss × batch images over the epoch so far
        self.history: dict[str, list[float] | int] = {"train_loss": [], "val_loss": []}
        self.best: dict[str, Any] = {"loss": math.inf, "epoch": 0, "state": {}}

    def build(self, device: torch.device) -> Optimization:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.head = make_head(self.name, self.embed_dim, self.classes, self.training.channels).to(device)
        self.best["state"] = _copy_state(self.head)
        optimizer = torch.optim.Adam(
            self.head.parameters(), lr=self.training.lr, weight_decay=self.training.weight_decay
        )
        total = self.training.epochs * self.steps_per_epoch
        schedules = Schedules({"learning_rate": cosine_schedule(self.training.lr, 0.0, total)}, total)
        return Optimization(self.head, optimizer, schedules)

    def micro_batches(self, step: int) -> list[tuple[Any, float]]:
        position = step % self.steps_per_epoch
        if position == 0:
            self.order = torch.randperm(len(self.train_samples), generator=self.generator)
        size = self.training.batch_size
        chosen = [self.train_samples[int(i)] for i in self.order[position * size : (position + 1) * size]]
        masks, known = _batch_targets(chosen, self.features.device)
        if self.training.augment:
            maps, masks = _augmented_maps(self.features, chosen, self.training, self.generator)
        else:
            maps = self.features(chosen)
        self.batch_images = len(chosen)
        return [((maps, masks, known), 1.0)]

    def loss(self, batch: Any, values: Mapping[str, float]) -> LossTerms:
        maps, masks, known = batch
        logits = self.head(_head_inputs(self.name, maps), masks.shape[-2:])
        training = self.training
        return LossTerms(segmentation_loss(logits, masks, known, training.dice_weight, training.ce_weight))

    def after_step(self, done: int, result: StepResult) -> dict[str, float]:
        self.running += result.losses["loss"] * self.batch_images
        return {"train/epoch": (done - 1) // self.steps_per_epoch}

    def validate(self, done: int) -> dict[str, float]:
        epoch = done // self.steps_per_epoch - 1
        train_loss = self.running / len(self.train_samples)
        if self.val_samples:
            val_loss = validation_loss(self.head, self.name, self.val_samples, self.features, self.training)
            self.head.train()
        else:
            val_loss = train_loss
        self.history["train_loss"].append(train_loss)  # type: ignore[union-attr]
        self.history["val_loss"].append(val_loss)  # type: ignore[union-attr]
        if val_loss < self.best["loss"]:
            self.best = {"loss": val_loss, "epoch": epoch, "state": _copy_state(self.head)}
        self.running = 0.0
        return {"train/epoch_loss": train_loss, **({"val/loss": val_loss} if self.val_samples else {})}

    def state_dict(self) -> dict[str, Any]:
        return {
            "head": self.head.state_dict(),
            "generator": self.generator.get_state(),
            "order": self.order,
            "running": self.running,
            "history": self.history,
            "best": self.best,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.head.load_state_dict(state["head"])
        self.generator.set_state(state["generator"])
        self.order, self.running = state["order"], float(state["running"])
        self.history = {key: list(value) for key, value in state["history"].items()}
        self.best = dict(state["best"])

    def trained_head(self) -> tuple[nn.Module, dict[str, list[float] | int]]:
        """The head at its best validation loss (eval mode), and the loss history with ``best_epoch``."""
        self.head.load_state_dict(self.best["state"])
        return self.head.eval(), {**self.history, "best_epoch": int(self.best["epoch"])}


def _copy_state(module: nn.Module) -> dict[str, torch.Tensor]:
    return {key: value.detach().clone() for key, value in module.state_dict().items()}


def train_head(
    name: HeadName,
    train: Sequence[SegmentationSample],
    val: Sequence[SegmentationSample],
    features: FrozenFeatures,
    embed_dim: int,
    classes: int,
    training: SegTraining,
    seed: int,
    run: RunFolder,
    progress: bool = True,
    fingerprint: str = "",
    callbacks: Sequence[Callback] = (),
    tracking: TrackingConfig | None = None,
    config: Any = None,
) -> tuple[nn.Module, dict[str, list[float] | int]]:
    """Train a fresh head (or finish one a killed run checkpointed in ``run``).

    Args:
        run: The head's run folder: ``metrics.jsonl``, a checkpoint at every tenth of the epochs.
        fingerprint: Identifies the settings; a checkpoint of other settings is discarded.
        callbacks: Called after every step with the steps done and their ``train`` record.
        tracking: MLflow / W&B besides ``metrics.jsonl``, with ``config`` as the tracked run's
            parameters.

    Returns:
        The head at its best validation loss, and the loss history (per epoch) with ``best_epoch``.
    """
    task = SegmentationTask(name, train, val, features, embed_dim, classes, training, seed)
    plan = Plan(
        total_steps=training.epochs * task.steps_per_epoch,
        steps_per_epoch=task.steps_per_epoch,
        checkpoint_epochs=max(1, training.epochs // 10),  # 10 checkpoints a run: the head and Adam state
    )
    precision = MixedPrecision(features.device, None)
    engine = Engine(
        task,
        run,
        plan,
        precision,
        progress=progress,
        fingerprint=fingerprint,
        mismatch="restart",
        callbacks=callbacks,
        tracking=tracking,
        config=config,
    )
    engine.fit()
    return task.trained_head()


@torch.no_grad()
def predict(
    head: nn.Module,
    name: HeadName,
    samples: Sequence[SegmentationSample],
    features: FrozenFeatures,
    batch_size: int,
) -> torch.Tensor:
    """(N, C, H, W) bool masks: sigmoid probability above 0.5."""
    head.eval()
    outputs = []
    for batch in _batches(len(samples), batch_size, None):
        chosen = [samples[int(i)] for i in batch]
        size = chosen[0].masks.shape[-2:]
        outputs.append((head(_head_inputs(name, features(chosen)), size) > 0).cpu())  # logit > 0 <=> p > 0.5
    return torch.cat(outputs)
