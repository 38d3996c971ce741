"""Many multi-label linear heads trained together on cached frozen features.

As DINOv2's linear evaluation does (``dinov2/eval/linear.py``), every (feature choice, learning rate) pair
gets its own head, all heads see the same mini-batches in one pass over the features, and the best head is
picked on validation afterwards. Each head has its own AdamW parameter group, so summing the heads' losses
and stepping once trains each exactly as if it were alone.

The paper's probe (§4.2): AdamW, lr 5e-5, cosine decay, 100 epochs, batch 96, BCE over findings with
missing labels masked out.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm


@dataclass(frozen=True)
class HeadSpec:
    """One head: which features it reads and its learning rate."""

    feature: str
    lr: float

    @property
    def name(self) -> str:
        return f"{self.feature} lr={self.lr:g}"


@dataclass
class HeadTraining:
    """Optimisation of the heads (defaults: the paper's linear probe)."""

    epochs: int = 100
    batch_size: int = 96
    weight_decay: float = 0.01
    """AdamW's default; the paper does not state one."""
    standardize: bool = True
    """Z-score each feature with training-split statistics (a per-feature affine map: still linear)."""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"epochs and batch_size must be at least 1, got {self.epochs}, {self.batch_size}"
            )
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")


def masked_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy averaged over the known labels only.

    Args:
        logits: (B, C).
        labels: (B, C) 0/1 with NaN where missing.
    """
    known = ~torch.isnan(labels)  # (B, C)
    losses = nn.functional.binary_cross_entropy_with_logits(
        logits, torch.nan_to_num(labels), reduction="none"
    )  # (B, C)
    return (losses * known).sum() / known.sum().clamp(min=1)


@dataclass
class TrainedHeads:
    """Heads after training, with the standardisation they were trained under."""

    specs: list[HeadSpec]
    heads: list[nn.Linear]
    centers: dict[str, torch.Tensor]
    scales: dict[str, torch.Tensor]

    @torch.no_grad()
    def predict(self, features: Mapping[str, torch.Tensor]) -> list[np.ndarray]:
        """Probabilities (N, C) of every head, in ``specs`` order, for features by choice name."""
        outputs = []
        for spec, head in zip(self.specs, self.heads, strict=True):
            inputs = (features[spec.feature] - self.centers[spec.feature]) / self.scales[spec.feature]
            outputs.append(torch.sigmoid(head(inputs)).numpy())
        return outputs


def train_linear_heads(
    features: Mapping[str, torch.Tensor],
    labels: torch.Tensor,
    specs: Sequence[HeadSpec],
    training: HeadTraining,
    seed: int,
    progress: bool = True,
) -> TrainedHeads:
    """Train one linear head per spec on the same shuffled mini-batches.

    Args:
        features: Training features by choice name, each (N, D_choice) float32.
        labels: (N, C) 0/1 with NaN where missing.
        specs: The heads to train.
        training: Epochs, batch size, weight decay, standardisation.
        seed: Seeds the heads' initialisation and the batch order (the same seed gives the same heads).
        progress: Show a progress bar over epochs.

    Returns:
        The trained heads.
    """
    generator = torch.Generator().manual_seed(seed)
    count, classes = labels.shape
    centers, scales = {}, {}
    for name, values in features.items():
        if values.shape[0] != count:
            raise ValueError(f"feature '{name}' has {values.shape[0]} rows for {count} labels")
        if training.standardize:
            centers[name] = values.mean(dim=0)
            scales[name] = values.std(dim=0).clamp(min=1e-6)
        else:
            centers[name] = torch.zeros(values.shape[1])
            scales[name] = torch.ones(values.shape[1])
    inputs = {name: (values - centers[name]) / scales[name] for name, values in features.items()}
    heads = []
    for spec in specs:
        # Each head's init depends only on (seed, spec): a head trains the same with or without the others.
        head_generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(spec.name.encode()))
        head = nn.Linear(inputs[spec.feature].shape[1], classes)
        with torch.no_grad():  # DINOv2's linear classifier init: N(0, 0.01) weights, zero bias
            head.weight.copy_(torch.randn(head.weight.shape, generator=head_generator) * 0.01)
            head.bias.zero_()
        heads.append(head)
    optimizer = torch.optim.AdamW(
        [{"params": head.parameters(), "lr": spec.lr} for spec, head in zip(specs, heads, strict=True)],
        weight_decay=training.weight_decay,
    )
    steps_per_epoch = math.ceil(count / training.batch_size)
    total_steps = training.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )
    used = sorted({spec.feature for spec in specs})
    bar = tqdm(
        range(training.epochs), desc=f"probe seed {seed}", unit="epoch", disable=not progress, leave=False
    )
    for _ in bar:
        order = torch.randperm(count, generator=generator)
        for start in range(0, count, training.batch_size):
            batch = order[start : start + training.batch_size]
            batch_labels = labels[batch]  # (B, C)
            batch_inputs = {name: inputs[name][batch] for name in used}  # (B, D_choice) each
            loss = torch.stack(
                [
                    masked_bce(head(batch_inputs[spec.feature]), batch_labels)
                    for spec, head in zip(specs, heads, strict=True)
                ]
            ).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        bar.set_postfix(loss=f"{loss.item() / len(heads):.4f}", refresh=False)
    for head in heads:
        head.eval()
    return TrainedHeads(list(specs), heads, centers, scales)
