"""Settings of ``raddino finetune``: what is trained (the mode), how (the optimiser recipe) and on what.

Defaults follow the fine-tuning recipes that DINOv2-family ViTs are usually fine-tuned with (BEiT / MAE /
DINOv2 fine-tuning, as in timm): AdamW, peak lr 1e-4 at the top block, layer-wise lr decay 0.75, a head
lr ×10, linear warm-up then cosine, weight decay 0.05, drop-path 0.1. The frozen baseline is the
paper's probe protocol (§4.2: a linear head on the frozen encoder's CLS token) trained by the same loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from raddino.evaluate.labels import UncertainPolicy
from raddino.evaluate.segmentation.heads import HeadName
from raddino.models.lora import check_lora
from raddino.training import Precision
from raddino.training.distributed import DeviceName
from raddino.training.tracking import TrackingConfig

Mode = Literal["frozen", "last-k", "lora", "full"]
MODES: tuple[Mode, ...] = ("frozen", "last-k", "lora", "full")
FinetuneTask = Literal["classify", "segment"]


@dataclass
class EncoderLora:
    """LoRA adapters on the encoder's projections (``mode: lora``, through ``peft``)."""

    rank: int = 8
    """Rank ``r`` of each low-rank update ``B·A``."""
    alpha: float = 16.0
    """Updates are scaled by ``alpha / rank``."""
    dropout: float = 0.0
    """Dropout on the adapters' input."""
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    """Linear modules to adapt, by name: the attention projections by default; add ``fc1``, ``fc2`` for
    the MLPs (DINOv3: ``up_proj``, ``down_proj``)."""
    export: Literal["merged", "adapter"] = "merged"
    """merged: the adapters folded into the weights (a plain transformers folder); adapter: the base
    encoder's folder plus ``lora_adapter/`` (peft's format, for ``PeftModel.from_pretrained``)."""

    def __post_init__(self) -> None:
        check_lora(self)


@dataclass
class FinetuneAugment:
    """Training augmentations (validation and test see the plain preprocessed image)."""

    crop_area: float = 0.8
    """Smallest share of the image a random crop keeps (1: no cropping)."""
    rotation: float = 10.0
    """Largest rotation in degrees, either way."""
    brightness: float = 0.1
    """Largest brightness shift, as a fraction of the image's value range."""
    contrast: float = 0.1
    """Largest contrast change: the image's deviation from its mean is scaled by 1 ± this."""
    hflip: float = 0.0
    """Probability of a horizontal flip; 0 by default, since left and right matter on a chest X-ray."""

    def __post_init__(self) -> None:
        if not 0.0 < self.crop_area <= 1.0:
            raise ValueError(f"augment.crop_area must lie in (0, 1], got {self.crop_area}")
        for name in ("rotation", "brightness", "contrast"):
            if getattr(self, name) < 0:
                raise ValueError(f"augment.{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.hflip <= 1.0:
            raise ValueError(f"augment.hflip must lie in [0, 1], got {self.hflip}")


@dataclass
class FinetuneConfig:
    """Settings of ``raddino finetune``."""

    input: str = ""
    """Manifest CSV with label columns (classify) or ``mask_*`` columns (segment), ``subject_id`` /
    ``split`` where known."""
    model: str = ""
    """Encoder to start from: transformers folder, DINOv2/DINOv3 file, ``preset:NAME`` or hub id."""
    out: str = "finetune"
    """Output folder: one sub-folder per mode, ``finetune.{json,md,csv}``."""
    task: FinetuneTask = "classify"
    """classify: multi-label findings; segment: structure masks with a segmentation head."""
    modes: list[Mode] = field(default_factory=lambda: ["frozen", "lora"])
    """Modes trained one after another: frozen (the probe baseline), last-k blocks, lora, full."""
    last_k: int = 2
    """Blocks trained (the last ones) in mode last-k; the final norm is trained with them."""
    lora: EncoderLora = field(default_factory=EncoderLora)
    """Rank, alpha, dropout, target modules and export of the adapters (``mode: lora``)."""
    head: Literal["linear", "mlp"] = "linear"
    """Classification head on [CLS, mean of patch tokens]: one linear layer, or Linear-GELU-Linear."""
    seg_head: HeadName = "linear"
    """Segmentation head (``task: segment``): linear, vitdet or upernet (4 intermediate layers)."""
    layers: list[int] = field(default_factory=list)
    """UPerNet's 4 intermediate blocks (default: evenly spread, ending at the last)."""
    labels: list[str] = field(default_factory=list)
    """Label columns (classify); default: every column holding only 0 / 1 / -1 / empty."""
    structures: list[str] = field(default_factory=list)
    """Mask columns (segment); default: every ``mask_*`` column."""
    uncertain: UncertainPolicy = "missing"
    """How a -1 (uncertain) label counts."""
    pos_weight: bool = False
    """Weigh each finding's positives by negatives / positives among the training labels."""
    augment: FinetuneAugment = field(default_factory=FinetuneAugment)
    """Crop, rotation, brightness / contrast and flip of the training images."""
    epochs: int = 10
    """Passes over the training images."""
    batch_size: int = 32
    """Images per optimiser step."""
    micro_batch_size: int = 0
    """Images per forward pass; gradients are accumulated up to ``batch_size`` (0: one pass)."""
    lr: float = 1e-4
    """Peak learning rate of the top block; lower blocks get ``lr × layerwise_decay^depth``."""
    head_lr_mult: float = 10.0
    """The head's lr is ``lr × head_lr_mult`` (the frozen mode's head too)."""
    layerwise_decay: float = 0.75
    """Per-block lr decay from the top (1: the same lr everywhere)."""
    patch_embed_lr_mult: float = 1.0
    """Extra lr factor of the patch embedding (DINOv2 pre-training: 0.2)."""
    weight_decay: float = 0.05
    """AdamW's weight decay (none on biases, norms, LayerScale gammas, tokens)."""
    warmup_epochs: float = 1.0
    """Linear warm-up before the cosine decay, in epochs."""
    min_lr_ratio: float = 0.01
    """The cosine decays to ``lr × min_lr_ratio``."""
    drop_path: float = 0.1
    """Stochastic depth of the trained blocks (frozen blocks run as at inference)."""
    max_grad_norm: float = 1.0
    """Gradient clipping (0: none)."""
    patience: int = 0
    """Stop after this many epochs without a better validation score (0: every epoch)."""
    precision: Precision = "auto"
    """Autocast: auto is bf16 (or fp16) on a GPU, fp32 on the CPU."""
    device: DeviceName = "auto"
    """Where the model trains; auto: CUDA, else MPS, else the CPU (under torchrun: one GPU a process)."""
    parallel: Literal["auto", "ddp", "fsdp"] = "auto"
    """Under torchrun: auto is FSDP2 for full and DDP for the other modes."""
    resolution: int = 0
    """Resize / crop to this size instead of the model's preprocessing (0: the model's)."""
    split_ratios: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    """Train / val / test shares when the manifest has no ``split`` column (made by subject)."""
    split_seed: int = 0
    """Seed of the split by subject when the manifest has no ``split`` column."""
    seed: int = 0
    """Seed of the head, the data order and the augmentations."""
    bootstrap: int = 500
    """Bootstrap resamples of the test images for the 95% intervals (0: none)."""
    checkpoint_every: int = 50
    """Optimiser steps between checkpoints (also at every epoch's end)."""
    max_steps: int = 0
    """Stop (with a checkpoint) after this many steps of each mode; 0 trains every epoch."""
    progress: bool = True
    """Show progress bars."""
    overwrite: bool = False
    """Discard earlier runs in ``out`` instead of resuming them."""
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    """MLflow or W&B besides metrics.jsonl (--tracking, --tracking-uri); one tracked run per mode."""

    def __post_init__(self) -> None:
        if not self.modes:
            raise ValueError(f"modes must list at least one of {', '.join(MODES)}")
        unknown = [mode for mode in self.modes if mode not in MODES]
        if unknown:
            raise ValueError(f"modes: unknown {unknown}; choose from {', '.join(MODES)}")
        for name in ("epochs", "batch_size", "last_k", "checkpoint_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.micro_batch_size < 0 or self.micro_batch_size > self.batch_size:
            raise ValueError(
                f"micro_batch_size must lie in [0, batch_size={self.batch_size}], got {self.micro_batch_size}"
            )
        if self.lr <= 0 or self.head_lr_mult <= 0 or self.patch_embed_lr_mult <= 0:
            raise ValueError("lr, head_lr_mult and patch_embed_lr_mult must be positive")
        if not 0 < self.layerwise_decay <= 1:
            raise ValueError(f"layerwise_decay must lie in (0, 1], got {self.layerwise_decay}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ValueError(f"drop_path must lie in [0, 1), got {self.drop_path}")
        if self.warmup_epochs < 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError("warmup_epochs must be >= 0 and min_lr_ratio in [0, 1]")
        if self.patience < 0 or self.bootstrap < 0 or self.max_steps < 0 or self.resolution < 0:
            raise ValueError("patience, bootstrap, max_steps and resolution must be >= 0")
        if self.layers and len(self.layers) != 4:
            raise ValueError(f"layers must name 4 blocks for UPerNet, got {self.layers}")

    @property
    def micro_batch(self) -> int:
        return self.micro_batch_size or self.batch_size
