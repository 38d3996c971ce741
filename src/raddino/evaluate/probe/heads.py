"""Many multi-label linear heads trained together on cached frozen features.

As DINOv2's linear evaluation does (``dinov2/eval/linear.py``), every (feature choice, learning rate) pair
gets its own head, all heads see the same mini-batches in one pass over the features, and the best head is
picked on validation afterwards. Each head has its own AdamW parameter group, so summing the heads' losses
and stepping once trains each exactly as if it were alone.

The paper's probe (§4.2): AdamW, lr 5e-5, cosine decay, 100 epochs, batch 96, BCE over findings with
missing labels masked out. The loop stays apart from :mod:`raddino.training`'s engine (one batched update
for every head is 4.3× faster than one optimiser per head) but takes its cosine from the engine's schedules.

Features are tensors in memory or memory-mapped views of the feature cache
(:class:`raddino.features.vectors.FeatureView`): each mini-batch is gathered and standardised on its own,
so the heads never need a standardised copy of the training set, and predictions go by blocks of rows.
Both give the same heads (the statistics of a view are summed in float64: within float rounding).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from raddino.features.vectors import CHUNK_ROWS, FeatureView
from raddino.io.progress import progress_bar
from raddino.training.schedules import cosine_schedule

Features = torch.Tensor | FeatureView


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
    """Training epochs of the heads (paper: 100)."""
    batch_size: int = 96
    """Images per mini-batch (paper: 96)."""
    weight_decay: float = 0.01
    """AdamW's default; the paper does not state one."""
    standardize: bool = True
    """Z-score each feature with training-split statistics (a per-feature affine map: still linear)."""
    threads: int = 1
    """Intra-op CPU threads while training; the heads' matrix products are small, and one thread is the
    fastest (several threads on a busy machine are up to 10× slower: benchmarks/evaluate.py)."""

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"epochs and batch_size must be at least 1, got {self.epochs}, {self.batch_size}"
            )
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")


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
    def predict(self, features: Mapping[str, Features]) -> list[np.ndarray]:
        """Probabilities (N, C) of every head, in ``specs`` order, for features by choice name.

        Views are read a block of rows at a time, each block once for all heads of its choice.
        """
        outputs: list[list[np.ndarray]] = [[] for _ in self.specs]
        for choice in dict.fromkeys(spec.feature for spec in self.specs):
            members = [i for i, spec in enumerate(self.specs) if spec.feature == choice]
            values = features[choice]
            for start in range(0, len(values), CHUNK_ROWS):
                block = _rows(values, slice(start, start + CHUNK_ROWS))
                inputs = (block - self.centers[choice]) / self.scales[choice]  # (n, D)
                for index in members:
                    outputs[index].append(torch.sigmoid(self.heads[index](inputs)).numpy())
        classes = self.heads[0].out_features if self.heads else 0
        return [np.concatenate(parts) if parts else np.zeros((0, classes), np.float32) for parts in outputs]


def _rows(values: Features, index: torch.Tensor | slice) -> torch.Tensor:
    """(n, D) float32 rows of a tensor or a memory-mapped view."""
    if isinstance(values, FeatureView):
        return torch.from_numpy(values.take(index if isinstance(index, slice) else index.numpy()))
    return values[index]


def _statistics(values: Features) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean and standard deviation (the scale clamped at 1e-6) of the training rows."""
    if isinstance(values, FeatureView):
        mean, std = values.mean_std()
        return torch.from_numpy(mean), torch.from_numpy(std).clamp(min=1e-6)
    return values.mean(dim=0), values.std(dim=0).clamp(min=1e-6)


class HeadGroup:
    """The heads reading one feature choice, stacked so they train as one batched matrix product.

    The update is AdamW's (Loshchilov & Hutter 2019; PyTorch's defaults: betas 0.9 / 0.999, eps 1e-8,
    decoupled weight decay) with one learning rate per head; it matches ``torch.optim.AdamW`` on a single
    head (tested) while costing one matrix product for all heads instead of one per head.
    """

    betas = (0.9, 0.999)
    eps = 1e-8

    def __init__(self, members: Sequence[tuple[int, HeadSpec]], dim: int, classes: int, seed: int) -> None:
        self.positions = [position for position, _ in members]
        self.specs = [spec for _, spec in members]
        self.feature = self.specs[0].feature
        weights = []
        for spec in self.specs:
            # Each head's init depends only on (seed, spec): a head trains the same with or without others.
            generator = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(spec.name.encode()))
            weights.append(torch.randn(classes, dim, generator=generator) * 0.01)  # DINOv2's N(0, 0.01) init
        self.classes = classes
        self.weight = torch.cat(weights)  # (H*C, D): head h owns rows h*C .. h*C+C-1
        self.bias = torch.zeros(len(self.specs) * classes)  # (H*C,)
        row_lrs = torch.tensor([spec.lr for spec in self.specs]).repeat_interleave(classes)  # (H*C,)
        self.row_lrs = {2: row_lrs[:, None], 1: row_lrs}
        self.moments = [(torch.zeros_like(p), torch.zeros_like(p)) for p in (self.weight, self.bias)]
        self.updates = 0

    def step(
        self,
        inputs: torch.Tensor,
        labels: torch.Tensor,
        decay: float,
        weight_decay: float,
        want_loss: bool = False,
    ) -> float:
        """One AdamW step of every head on a batch, on the masked BCE of :func:`masked_bce`.

        The gradient is written out (``(sigmoid(z) - y) / known`` at known labels) instead of taken by
        autograd: for ten small heads the bookkeeping of autograd costs more than the arithmetic.

        Args:
            inputs: (B, D) features.
            labels: (B, C) 0/1, NaN where missing.
            decay: Learning-rate multiplier of the schedule at this step.
            weight_decay: Decoupled weight decay.
            want_loss: Also compute the summed loss of the heads (for the progress bar).

        Returns:
            The summed loss before the step, or NaN when not asked.
        """
        heads = len(self.specs)
        with torch.no_grad():
            logits = torch.addmm(self.bias, inputs, self.weight.T)  # (B, H*C): every head in one product
            known = ~torch.isnan(labels)  # (B, C)
            targets = torch.nan_to_num(labels).repeat(1, heads)  # (B, H*C)
            scale = (known / known.sum().clamp(min=1)).repeat(1, heads)  # (B, H*C): mean over known labels
            loss = float("nan")
            if want_loss:
                losses = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
                loss = float((losses * scale).sum())
            logit_grad = (torch.sigmoid(logits) - targets) * scale  # (B, H*C)
            gradients = (logit_grad.T @ inputs, logit_grad.sum(dim=0))  # (H*C, D), (H*C,)
            self.updates += 1
            beta1, beta2 = self.betas
            correction1, correction2 = 1 - beta1**self.updates, 1 - beta2**self.updates
            for parameter, gradient, (mean, square) in zip(
                (self.weight, self.bias), gradients, self.moments, strict=True
            ):
                lr = self.row_lrs[parameter.dim()] * decay  # (H*C, 1) or (H*C,)
                parameter.mul_(1 - lr * weight_decay)
                mean.mul_(beta1).add_(gradient, alpha=1 - beta1)
                square.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
                denominator = (square.sqrt() / math.sqrt(correction2)).add_(self.eps)
                parameter.sub_(lr / correction1 * mean / denominator)
        return loss

    def to_linear(self) -> list[nn.Linear]:
        """The trained heads as ``nn.Linear`` modules, in member order."""
        heads = []
        for index in range(len(self.specs)):
            rows = slice(index * self.classes, (index + 1) * self.classes)
            head = nn.Linear(self.weight.shape[1], self.classes)
            with torch.no_grad():
                head.weight.copy_(self.weight[rows])
                head.bias.copy_(self.bias[rows])
            heads.append(head.eval())
        return heads


def train_linear_heads(
    features: Mapping[str, Features],
    labels: torch.Tensor,
    specs: Sequence[HeadSpec],
    training: HeadTraining,
    seed: int,
    progress: bool = True,
    epoch_features: Callable[[int], Mapping[str, torch.Tensor]] | None = None,
) -> TrainedHeads:
    """Train one linear head per spec on the same shuffled mini-batches.

    Args:
        features: Training features by choice name, each (N, D_choice): a float32 tensor, or a view of
            the memory-mapped feature cache whose mini-batches are read as they come.
        labels: (N, C) 0/1 with NaN where missing.
        specs: The heads to train.
        training: Epochs, batch size, weight decay, standardisation.
        seed: Seeds the heads' initialisation and the batch order (the same seed gives the same heads).
        progress: Show a progress bar over epochs.
        epoch_features: Optional ``epoch -> features`` of augmented views of the same training images,
            used instead of ``features`` for that epoch (standardised with the statistics of ``features``).

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
            centers[name], scales[name] = _statistics(values)
        else:
            centers[name] = torch.zeros(values.shape[1])
            scales[name] = torch.ones(values.shape[1])
    inputs: Mapping[str, Features] = features
    groups = [
        HeadGroup(
            [(i, s) for i, s in enumerate(specs) if s.feature == name], features[name].shape[1], classes, seed
        )
        for name in dict.fromkeys(spec.feature for spec in specs)
    ]
    steps_per_epoch = math.ceil(count / training.batch_size)
    decays = cosine_schedule(1.0, 0.0, training.epochs * steps_per_epoch)  # lr multiplier, 1 at step 0
    step = 0
    bar = progress_bar(
        range(training.epochs), desc=f"probe seed {seed}", unit="epoch", disable=not progress, leave=False
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(training.threads)
    try:
        for epoch in bar:
            if epoch_features is not None:
                torch.set_num_threads(threads)  # the encoder's forward does use every thread
                views = epoch_features(epoch)
                torch.set_num_threads(training.threads)
                inputs = {name: views[name] for name in features}
            order = torch.randperm(count, generator=generator)
            loss = 0.0
            for start in range(0, count, training.batch_size):
                batch = order[start : start + training.batch_size]
                batch_labels = labels[batch]  # (B, C)
                decay = float(decays[step])
                last = start + training.batch_size >= count
                loss = sum(
                    group.step(
                        (_rows(inputs[group.feature], batch) - centers[group.feature])
                        / scales[group.feature],
                        batch_labels,
                        decay,
                        training.weight_decay,
                        last,
                    )
                    for group in groups
                )
                step += 1
            bar.set_postfix(loss=f"{loss / len(specs):.4f}", refresh=False)
    finally:
        torch.set_num_threads(threads)
    heads: list[nn.Linear] = [nn.Linear(1, 1)] * len(specs)
    for group in groups:
        for position, head in zip(group.positions, group.to_linear(), strict=True):
            heads[position] = head
    return TrainedHeads(list(specs), heads, centers, scales)
