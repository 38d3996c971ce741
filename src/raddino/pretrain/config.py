"""The pre-training config: DINOv2's ``ssl_default_config.yaml`` sections and field names, typed.

Loaded with :func:`raddino.config.load_config` (unknown keys fail with their dotted name), overridden on
the command line with ``--set optim.base_lr=5e-4``, and saved merged as ``RUN/config.yaml``.

Units, as in DINOv2: an "epoch" is ``train.OFFICIAL_EPOCH_LENGTH`` iterations (not a pass over the data),
so every ``*_epochs`` field counts blocks of that many optimiser steps. The learning rate actually used is
``optim.base_lr`` scaled by the global batch (``optim.scaling_rule``; DINOv2's ``sqrt_wrt_1024`` multiplies
by sqrt(global batch / 1024)).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from raddino.config import ConfigError, load_config
from raddino.data.augment import MultiCropConfig
from raddino.pretrain.validation import ValidationProbeConfig
from raddino.training.tracking import TrackingConfig

ScalingRule = Literal["sqrt_wrt_1024", "linear_wrt_256", "none"]
Centering = Literal["centering", "sinkhorn_knopp"]
Precision = Literal["auto", "fp32", "bf16", "fp16"]
Strategy = Literal["fsdp", "ddp"]


@dataclass
class StudentConfig:
    """The student encoder (the teacher is its EMA copy, built without drop-path)."""

    arch: str = "vitb14"  # a raddino.models preset, used when pretrained_weights is null (random init)
    # Dinov2Config fields changed on the preset, e.g. {hidden_size: 192, num_hidden_layers: 6} for a CPU demo
    arch_overrides: dict[str, Any] = field(default_factory=dict)
    pretrained_weights: str | None = None
    """Encoder to continue from: transformers folder, DINOv2 .safetensors/.pth, preset:NAME or hub id
    (default: ``student.arch``, randomly initialised)."""
    dino_head_weights: str | None = None  # dino_head.safetensors to start the DINO head from
    ibot_head_weights: str | None = None  # ibot_head.safetensors (DINOv3 releases) for ibot.separate_head
    drop_path_rate: float = 0.1  # uniform over blocks as DINOv2's drop_path_uniform; student only
    activation_checkpointing: bool = False  # recompute blocks in backward: less memory at 518 px


@dataclass
class TeacherConfig:
    """EMA teacher and its temperature (DINOv2 defaults)."""

    momentum_teacher: float = 0.992
    final_momentum_teacher: float = 1.0
    warmup_teacher_temp: float = 0.04
    teacher_temp: float = 0.07
    warmup_teacher_temp_epochs: int = 30


@dataclass
class DinoConfig:
    """The CLS-token DINO loss, its head and the KoLeo regulariser (DINOv2 defaults)."""

    loss_weight: float = 1.0
    head_n_prototypes: int = 65536
    head_bottleneck_dim: int = 256
    head_nlayers: int = 3
    head_hidden_dim: int = 2048
    koleo_loss_weight: float = 0.1  # 0 turns KoLeo off
    head_weight_norm: bool | None = None
    """Weight-normalised last layer of the DINO and iBOT heads; null: the encoder family's (DINOv2: yes,
    DINOv3: a plain linear layer, its ``force_weight_norm: false``)."""


@dataclass
class IbotConfig:
    """The iBOT masked-patch loss (DINOv2 defaults); ``loss_weight: 0`` turns it off (paper's ablation)."""

    loss_weight: float = 1.0
    mask_sample_probability: float = 0.5
    mask_ratio_min_max: tuple[float, float] = (0.1, 0.5)
    separate_head: bool = False
    head_n_prototypes: int = 65536
    head_bottleneck_dim: int = 256
    head_nlayers: int = 3
    head_hidden_dim: int = 2048


@dataclass
class LossWeightSchedule:
    """DINOv3's ``linear_warmup_cosine_decay``: linear ``start`` → ``peak`` over ``warmup_epochs``, cosine
    ``peak`` → ``end`` over ``cosine_epochs`` (null: the rest of the run), then ``end``."""

    start: float = 0.0
    peak: float = 0.0
    end: float = 0.0
    warmup_epochs: int = 0
    cosine_epochs: int | None = None


@dataclass
class GramConfig:
    """Gram anchoring (DINOv3's ``gram:`` section, same names; off unless ``use_loss``).

    The Gram teacher is a frozen copy of the EMA teacher's encoder: loaded from it before iteration
    ``it_load_ema_teacher`` and, with ``rep_update``, copied again after every iteration ``i`` with
    ``i + 1 >= it_first_update`` and ``(i + 1) % update_frequency == 0``, at most ``max_updates`` times
    (DINOv3's ``train.py``). It sees the same global crops as the EMA teacher (DINOv3's separate
    higher-resolution Gram-teacher crops are not made).
    """

    use_loss: bool = False
    loss_weight: float = 1.0
    loss_weight_schedule: LossWeightSchedule | None = None  # replaces loss_weight when given
    it_load_ema_teacher: int = 0  # before this iteration the loss is off (no Gram teacher yet)
    rep_update: bool = True
    update_frequency: int = 50000
    it_first_update: int = 0
    max_updates: int | None = None  # null: unlimited
    normalized: bool = True  # L2-normalise the patch features (cosine similarities)
    img_level: bool = False  # one Gram matrix per image, else over the process's batch of patches
    remove_neg: bool = False
    remove_only_teacher_neg: bool = False
    tokens_used: Literal["all", "masked", "unmasked"] = "all"  # masked/unmasked need img_level: false


@dataclass
class OptimConfig:
    """AdamW with cosine schedules (DINOv2's ``optim`` section; RAD-DINO's base lr 1e-3, appendix C.1)."""

    epochs: int = 100
    weight_decay: float = 0.04
    weight_decay_end: float = 0.4
    base_lr: float = 1e-3
    warmup_epochs: int = 10
    min_lr: float = 1e-6
    clip_grad: float = 3.0  # per module (backbone, each head), as DINOv2; 0 turns clipping off
    freeze_last_layer_epochs: int = 1
    scaling_rule: ScalingRule = "sqrt_wrt_1024"
    patch_embed_lr_mult: float = 0.2
    layerwise_decay: float = 0.9
    adamw_beta1: float = 0.9
    adamw_beta2: float = 0.999


@dataclass
class TrainConfig:
    """Data, batch, schedule length and run mechanics."""

    dataset_path: str = ""
    """Image folder or manifest CSV of the images to pre-train on."""
    shards: str | None = None
    """Instead of dataset_path: a folder of ``raddino shard`` tar shards, one .tar, or a glob pattern."""
    shard_order: Literal["global", "shard"] = "global"
    """With shards: ``global`` (the folder path's order) or ``shard`` (a pass reads shard after shard)."""
    split: str | None = None  # keep only manifest rows of this split (e.g. "train")
    batch_size_per_gpu: int = 40
    grad_accumulation_steps: int = 1
    OFFICIAL_EPOCH_LENGTH: int = 1250  # iterations per "epoch" (DINOv2)
    max_iterations: int | None = None  # stop early (schedules still span optim.epochs)
    centering: Centering = "centering"
    seed: int = 0
    num_workers: int = 8
    """DataLoader workers per process that read and augment the images."""
    checkpoint_period: int = 1000  # iterations between checkpoints (and one at the end)
    keep_checkpoints: int = 2
    log_period: int = 10  # iterations between metric records
    export_at_end: bool = True  # write RUN/export/teacher (transformers folder) after the last step
    export_period: int | None = None  # also RUN/export/teacher_XXXXXXX every this many iterations


@dataclass
class ComputeConfig:
    """Where and how: device, precision, distribution."""

    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    """Where training runs; auto: CUDA, else MPS, else the CPU."""
    mixed_precision: Precision = "auto"  # auto: bf16 on GPUs that have it, else fp16; fp32 on CPU
    strategy: Strategy = "fsdp"  # FSDP2 per transformer block (DINOv2), or DDP


@dataclass
class PretrainConfig:
    """Everything ``raddino pretrain`` needs."""

    student: StudentConfig = field(default_factory=StudentConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    dino: DinoConfig = field(default_factory=DinoConfig)
    ibot: IbotConfig = field(default_factory=IbotConfig)
    gram: GramConfig = field(default_factory=GramConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    crops: MultiCropConfig = field(default_factory=MultiCropConfig)  # DINOv2 crops.* names + CXR ops
    train: TrainConfig = field(default_factory=TrainConfig)
    compute: ComputeConfig = field(default_factory=ComputeConfig)
    validation: ValidationProbeConfig = field(default_factory=ValidationProbeConfig)  # early stopping
    tracking: TrackingConfig = field(default_factory=TrackingConfig)  # MLflow / W&B besides metrics.jsonl

    def __post_init__(self) -> None:
        validate(self)

    @classmethod
    def translate_config_tree(cls, tree: dict[str, Any], source: str) -> dict[str, Any]:
        """DINOv2's / DINOv3's own train configs in our names (``raddino.pretrain.foreign_config``)."""
        from raddino.pretrain.foreign_config import translate_tree

        return translate_tree(tree, cls, source)

    @property
    def total_iterations(self) -> int:
        """Length of every schedule: ``optim.epochs × train.OFFICIAL_EPOCH_LENGTH``."""
        return self.optim.epochs * self.train.OFFICIAL_EPOCH_LENGTH

    @property
    def run_iterations(self) -> int:
        """Iterations this run executes (``train.max_iterations`` when it is shorter)."""
        limit = self.train.max_iterations
        return self.total_iterations if limit is None else min(limit, self.total_iterations)

    def global_batch_size(self, world_size: int) -> int:
        """Images per optimiser step over all processes and accumulation steps."""
        return self.train.batch_size_per_gpu * world_size * self.train.grad_accumulation_steps

    def scaled_lr(self, world_size: int) -> float:
        """The peak learning rate: DINOv2's ``apply_scaling_rules_to_cfg``.

        ``sqrt_wrt_1024``: base_lr × sqrt(global batch / 1024); ``linear_wrt_256``: base_lr × batch / 256.
        """
        batch = self.global_batch_size(world_size)
        if self.optim.scaling_rule == "sqrt_wrt_1024":
            return self.optim.base_lr * math.sqrt(batch / 1024.0)
        if self.optim.scaling_rule == "linear_wrt_256":
            return self.optim.base_lr * batch / 256.0
        return self.optim.base_lr


def _check(condition: bool, key: str, reason: str) -> None:
    if not condition:
        raise ValueError(f"{key}: {reason}")


def validate(config: PretrainConfig) -> None:
    """Reject values that cannot train; the message names the key.

    Raises:
        ValueError: (wrapped into :class:`raddino.config.ConfigError` by ``load_config``).
    """
    optim, train, ibot = config.optim, config.train, config.ibot
    _check(optim.epochs >= 1, "optim.epochs", f"must be at least 1, got {optim.epochs}")
    _check(0 <= optim.warmup_epochs <= optim.epochs, "optim.warmup_epochs", "must lie in [0, optim.epochs]")
    _check(optim.base_lr > 0, "optim.base_lr", f"must be positive, got {optim.base_lr}")
    _check(optim.clip_grad >= 0, "optim.clip_grad", "must be >= 0 (0 turns clipping off)")
    _check(0 < optim.layerwise_decay <= 1, "optim.layerwise_decay", "must lie in (0, 1]")
    _check(train.batch_size_per_gpu >= 1, "train.batch_size_per_gpu", "must be at least 1")
    _check(train.grad_accumulation_steps >= 1, "train.grad_accumulation_steps", "must be at least 1")
    _check(train.OFFICIAL_EPOCH_LENGTH >= 1, "train.OFFICIAL_EPOCH_LENGTH", "must be at least 1")
    _check(train.checkpoint_period >= 1, "train.checkpoint_period", "must be at least 1")
    _check(train.log_period >= 1, "train.log_period", "must be at least 1")
    _check(
        train.max_iterations is None or train.max_iterations >= 1,
        "train.max_iterations",
        "must be at least 1 (or null)",
    )
    low, high = ibot.mask_ratio_min_max
    _check(0 < low <= high <= 1, "ibot.mask_ratio_min_max", f"needs 0 < min <= max <= 1, got [{low}, {high}]")
    _check(
        config.dino.koleo_loss_weight == 0 or train.batch_size_per_gpu >= 2,
        "train.batch_size_per_gpu",
        "KoLeo needs at least 2 images per process (or dino.koleo_loss_weight: 0)",
    )
    _check(0 <= ibot.mask_sample_probability <= 1, "ibot.mask_sample_probability", "must lie in [0, 1]")
    _check(
        config.dino.loss_weight > 0 or ibot.loss_weight > 0,
        "dino.loss_weight",
        "the DINO and iBOT losses cannot both be off",
    )
    _check(0 <= config.student.drop_path_rate < 1, "student.drop_path_rate", "must lie in [0, 1)")
    _check(
        not (train.shards and train.dataset_path),
        "train.shards",
        "set train.shards or train.dataset_path, not both",
    )
    _check(not (train.shards and train.split), "train.split", "not available with train.shards")
    _validate_gram(config.gram, config.optim.epochs)


def _validate_gram(gram: GramConfig, epochs: int) -> None:
    if not gram.use_loss:
        return
    schedule = gram.loss_weight_schedule
    if schedule is not None:
        cosine = 0 if schedule.cosine_epochs is None else schedule.cosine_epochs
        _check(
            schedule.warmup_epochs >= 0 and cosine >= 0 and schedule.warmup_epochs + cosine <= epochs,
            "gram.loss_weight_schedule",
            f"warmup_epochs + cosine_epochs must be >= 0 and fit in optim.epochs ({epochs})",
        )
    _check(
        gram.it_load_ema_teacher >= 0, "gram.it_load_ema_teacher", "must be >= 0 (no Gram checkpoint option)"
    )
    _check(gram.update_frequency >= 1, "gram.update_frequency", "must be at least 1")
    _check(gram.max_updates is None or gram.max_updates >= 0, "gram.max_updates", "must be >= 0 (or null)")
    _check(
        not (gram.remove_neg and gram.remove_only_teacher_neg),
        "gram.remove_neg",
        "cannot be true together with gram.remove_only_teacher_neg",
    )
    _check(
        gram.tokens_used == "all" or not gram.img_level,
        "gram.tokens_used",
        f"{gram.tokens_used} patches need gram.img_level: false (images keep different numbers)",
    )


def load_pretrain_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    values: Mapping[str, Any] | None = None,
) -> PretrainConfig:
    """Load a pre-training config from YAML, explicit values (``{"train.dataset_path": ...}``) and
    ``key=value`` overrides, in that order of priority.

    Raises:
        ConfigError: an unknown key, a wrong type or an invalid value, naming the key; no data set.
    """
    config = load_config(PretrainConfig, path, overrides, values)
    if not config.train.dataset_path and not config.train.shards:
        raise ConfigError("train.dataset_path: no data; set it in the config or with --data")
    return config


__all__ = [
    "ComputeConfig",
    "DinoConfig",
    "GramConfig",
    "IbotConfig",
    "LossWeightSchedule",
    "OptimConfig",
    "PretrainConfig",
    "StudentConfig",
    "TeacherConfig",
    "TrainConfig",
    "load_pretrain_config",
    "validate",
]
