"""Training a segmentation head on a frozen encoder: Dice + cross-entropy, Adam, cosine, best validation loss.

The paper's recipe (§4.3): heads from scratch on the frozen encoder, Adam with lr 5e-4 and cosine decay,
100 epochs, the checkpoint with the lowest validation loss kept. Masks are multi-label (structures may
overlap, e.g. a lung and its zones), so the cross-entropy is a per-structure binary one.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from raddino.evaluate.seg_data import SegmentationSample, random_affine
from raddino.evaluate.seg_heads import HeadName, make_head
from raddino.models import Encoder


@dataclass
class SegTraining:
    """Optimisation of the segmentation heads (defaults: the paper's)."""

    epochs: int = 100
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


def train_head(
    name: HeadName,
    train: Sequence[SegmentationSample],
    val: Sequence[SegmentationSample],
    features: FrozenFeatures,
    embed_dim: int,
    classes: int,
    training: SegTraining,
    seed: int,
    progress: bool = True,
) -> tuple[nn.Module, dict[str, list[float] | int]]:
    """Train a fresh head; returns it at its best validation loss, and the loss history."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = make_head(name, embed_dim, classes, training.channels).to(features.device)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(head.parameters(), lr=training.lr, weight_decay=training.weight_decay)
    total_steps = training.epochs * math.ceil(len(train) / training.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )
    history: dict[str, list[float] | int] = {"train_loss": [], "val_loss": []}
    best_loss, best_state, best_epoch = math.inf, copy.deepcopy(head.state_dict()), 0
    bar = tqdm(
        range(training.epochs), desc=f"segment {name}", unit="epoch", disable=not progress, leave=False
    )
    for epoch in bar:
        head.train()
        running = 0.0
        for batch in _batches(len(train), training.batch_size, generator):
            chosen = [train[int(i)] for i in batch]
            masks, known = _batch_targets(chosen, features.device)
            if training.augment:
                maps, masks = _augmented_maps(features, chosen, training, generator)
            else:
                maps = features(chosen)
            logits = head(_head_inputs(name, maps), masks.shape[-2:])
            loss = segmentation_loss(logits, masks, known, training.dice_weight, training.ce_weight)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            running += loss.item() * len(chosen)
        val_loss = validation_loss(head, name, val, features, training) if val else running / len(train)
        history["train_loss"].append(running / len(train))  # type: ignore[union-attr]
        history["val_loss"].append(val_loss)  # type: ignore[union-attr]
        if val_loss < best_loss:
            best_loss, best_state, best_epoch = val_loss, copy.deepcopy(head.state_dict()), epoch
        bar.set_postfix(train=f"{running / len(train):.3f}", val=f"{val_loss:.3f}", refresh=False)
    head.load_state_dict(best_state)
    history["best_epoch"] = best_epoch
    return head.eval(), history


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
