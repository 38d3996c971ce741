"""What each key of DINOv2's and DINOv3's own train configs becomes here: mapped, honoured or refused.

The table is the one in ``docs/config_keys.md``. Each rule takes the key's value and the whole foreign
config (dotted keys) and returns a :class:`Decision`: **mapped** to our fields (values in our names),
**honoured** as a no-op (what we do anyway, with the reason), or **refused** (a value we cannot do, with
the reason). Keys that appear in neither our config nor this table stay unknown and fail as misspellings.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from raddino.pretrain.foreign_arch import ARCH_KEYS, architecture


@dataclass(frozen=True)
class Decision:
    """One key's fate: ``values`` are our dotted keys (mapped); ``reason`` says why (honoured, refused)."""

    kind: Literal["mapped", "honoured", "refused"]
    values: dict[str, Any] = field(default_factory=dict)
    reason: str = ""


def mapped(values: dict[str, Any], reason: str = "") -> Decision:
    return Decision("mapped", values, reason)


def honoured(reason: str) -> Decision:
    return Decision("honoured", {}, reason)


def refused(reason: str) -> Decision:
    return Decision("refused", {}, reason)


@dataclass
class Context:
    """The merged foreign config, flattened to dotted keys, and its family (``dinov2`` / ``dinov3``)."""

    flat: dict[str, Any]
    family: str
    has_out: bool = False

    def group(self, prefix: str) -> dict[str, Any]:
        """The leaves under ``prefix.`` with the prefix removed."""
        start = f"{prefix}."
        return {key[len(start) :]: value for key, value in self.flat.items() if key.startswith(start)}


Rule = Callable[[Any, Context], Decision]


def noop(reason: str) -> Rule:
    """Honoured whatever the value."""
    return lambda value, context: honoured(reason)


def only(allowed: tuple[Any, ...], ok: str, refuse: str) -> Rule:
    """Honoured for the values in ``allowed``; any other value is refused with ``refuse``."""
    return lambda value, context: honoured(ok) if value in allowed else refused(refuse)


def rename(ours: str, convert: Callable[[Any], Any] = lambda value: value) -> Rule:
    """Mapped to our key ``ours``, the value converted."""
    return lambda value, context: mapped({ours: convert(value)})


def _arch(value: Any, context: Context) -> Decision:
    return _arch_part("student.arch")(value, context)


def _arch_part(key: str) -> Rule:
    def rule(value: Any, context: Context) -> Decision:
        arch = architecture(context.flat, context.family)
        if key in arch.refused:
            return refused(arch.refused[key])
        if arch.refused:
            return honoured("the architecture is refused on another student key")
        return mapped(arch.values(), f"part of student.arch {arch.arch}")

    return rule


def _precision(value: Any, context: Context) -> Decision:
    dtypes = {"fp16": "fp16", "bf16": "bf16", "fp32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
    if value not in dtypes:
        return refused("one of fp16, bf16, fp32")
    return mapped({"compute.mixed_precision": dtypes[value]}, "autocast dtype; weights stay fp32")


def _sharding(value: Any, context: Context) -> Decision:
    strategies = {"SHARD_GRAD_OP": "fsdp", "FULL_SHARD": "fsdp", "HYBRID_SHARD": "fsdp", "NO_SHARD": "ddp"}
    if value not in strategies:
        return refused(f"one of {', '.join(strategies)}")
    return mapped({"compute.strategy": strategies[value]}, "FSDP2 per block; memory and speed, not results")


def _lr(value: Any, context: Context) -> Decision:
    if context.family == "dinov2":
        return honoured("DINOv2 overwrites it with the scaled optim.base_lr; ours is printed at start")
    if value is None:
        return _from_schedule("lr")(value, context)
    return mapped(
        {"optim.base_lr": _dinov3_base_lr(float(value), context)}, "DINOv3 scales lr by 4·sqrt(B/1024)"
    )


def _dinov3_base_lr(lr: float, context: Context) -> float:
    """DINOv3's ``apply_scaling_rules_to_cfg`` multiplies by ``4 * sqrt(B / 1024)`` under ``sqrt_wrt_1024``
    (DINOv2's base_lr by ``sqrt(B / 1024)``), so our base_lr is 4 × DINOv3's lr; linear_wrt_256 is alike."""
    rule = context.flat.get("optim.scaling_rule", "sqrt_wrt_1024")
    return 4.0 * lr if rule == "sqrt_wrt_1024" else lr


def _from_schedule(name: str) -> Rule:
    """A null DINOv3 value that ``schedules.<name>`` replaces (schedules v2)."""

    def rule(value: Any, context: Context) -> Decision:
        if value is not None:
            return refused(f"DINOv3 ignores it when schedules.{name} is given; leave it null")
        if context.group(f"schedules.{name}"):
            return honoured(f"given by schedules.{name}")
        return refused(f"null needs schedules.{name}")

    return rule


def _schedule(name: str) -> Rule:
    """``schedules.<name>.*``: DINOv3's linear warm-up then cosine, as our fields where they can say it."""

    def rule(value: Any, context: Context) -> Decision:
        group = context.group(f"schedules.{name}")
        start, peak, end = (float(group.get(k, 0.0)) for k in ("start", "peak", "end"))
        warmup = int(group.get("warmup_epochs", 0))
        epochs = int(context.flat.get("optim.epochs", 100))
        cosine = group.get("cosine_epochs")
        if cosine is not None and int(cosine) != epochs - warmup:
            return refused(
                f"schedules.{name}: a cosine shorter than the run (then constant) is offered only for gram"
            )
        if name == "lr":
            if start != 0:
                return refused("schedules.lr: our warm-up starts from 0")
            scales_end = context.flat.get("optim.scaling_rule", "sqrt_wrt_1024") != "none"
            if end != 0 and scales_end:
                return refused(
                    "schedules.lr.end: DINOv3 scales it with the batch rule; optim.min_lr is not scaled"
                )
            return mapped(
                {
                    "optim.base_lr": _dinov3_base_lr(peak, context),
                    "optim.min_lr": end,
                    "optim.warmup_epochs": warmup,
                    "optim.freeze_last_layer_epochs": int(group.get("freeze_last_layer_epochs", 0)),
                }
            )
        if name == "teacher_temp":
            if peak != end:
                return refused(
                    "schedules.teacher_temp: ours warms up to teacher_temp and stays there (peak = end)"
                )
            values = {"teacher.warmup_teacher_temp": start, "teacher.teacher_temp": peak}
            return mapped({**values, "teacher.warmup_teacher_temp_epochs": warmup})
        if warmup != 0 and start != peak:
            return refused(f"schedules.{name}: ours has no warm-up (start = peak or warmup_epochs: 0)")
        ours = {"weight_decay": ("optim.weight_decay", "optim.weight_decay_end")}
        first, last = ours.get(name, ("teacher.momentum_teacher", "teacher.final_momentum_teacher"))
        return mapped({first: peak, last: end})

    return rule


def _output_dir(value: Any, context: Context) -> Decision:
    if value in (None, "", ".") or _placeholder(value):
        return honoured("the run folder is --out")
    if not context.has_out:
        return honoured("the run folder is the out argument of pretrain()")
    return mapped({"out": str(value)})


def _placeholder(value: Any) -> bool:
    return isinstance(value, str) and bool(re.fullmatch(r"<[^>]*>", value.strip()))


def _export_period(value: Any, context: Context) -> Decision:
    period = int(value)
    return mapped({"train.export_period": period if period > 0 else None}, "teacher snapshots (RUN/export)")


def _keep_every(value: Any, context: Context) -> Decision:
    total = int(context.flat.get("optim.epochs", 100)) * int(
        context.flat.get("train.OFFICIAL_EPOCH_LENGTH", 1250)
    )
    if value is None or int(value) >= total:
        return honoured("never reached in this run")
    return refused(
        "permanent checkpoints every N iterations are not kept; teacher snapshots: train.export_period"
    )


def _rgb(ours: str) -> Rule:
    def rule(value: Any, context: Context) -> Decision:
        if ours in context.flat:
            return honoured(f"superseded by {ours}, given in the same config")
        if isinstance(value, (int, float)):
            return mapped({ours: float(value)})
        if isinstance(value, list) and value and all(math.isclose(v, value[0]) for v in value):
            return mapped({ours: float(value[0])})
        return refused(f"per-channel statistics: X-ray crops are grey, normalised by one {ours}; set {ours}")

    return rule


def _flips(value: Any, context: Context) -> Decision:
    return mapped({"crops.horizontal_flip_p": 0.5 if value else 0.0}, "DINOv2/v3 flip with p = 0.5")


def _head_norm(value: Any, context: Context) -> Decision:
    if value:
        return refused("a weight-normalised last layer with its gain frozen at 1 is not offered")
    return honoured("the last layer's weight-norm gain trains (when dino.head_weight_norm is on)")


def _grad_scaler(value: Any, context: Context) -> Decision:
    if value:
        return honoured("fp16 runs scale the loss (torch GradScaler); bf16 and fp32 need none")
    return refused("fp16 without loss scaling is not offered; use bf16 or fp32")


SPEED = "speed and memory only, not the result"
ENABLED = "read only when its section's enabled is true"
NEVER = "refused: not offered here"

RULES: list[tuple[str, Rule]] = [
    (
        "MODEL.WEIGHTS",
        only(
            ("", None),
            "no training checkpoint to start from",
            "a DINOv2/v3 training checkpoint; continue an encoder with student.pretrained_weights",
        ),
    ),
    (
        "MODEL.META_ARCHITECTURE",
        only(
            ("SSLMetaArch",),
            "DINO + iBOT + KoLeo with an EMA teacher",
            "distillation meta-architectures are not offered (SSLMetaArch only)",
        ),
    ),
    ("MODEL.DEVICE", noop("the device is compute.device (auto: CUDA when present)")),
    ("MODEL.DTYPE", only(("float32",), "master weights are fp32", "master weights are always fp32")),
    ("compute_precision.grad_scaler", _grad_scaler),
    ("compute_precision.*param_dtype", _precision),
    (
        "compute_precision.*reduce_dtype",
        noop("weights are fp32 under autocast, so gradients are reduced in fp32"),
    ),
    ("compute_precision.*buffer_dtype", noop("buffers are fp32")),
    ("compute_precision.*sharding_strategy", _sharding),
    ("dino.global_ignore_diagonal", noop("DINOv3's SSLMetaArch does not read it (its own comment)")),
    ("dino.head_norm_last_layer", _head_norm),
    ("ibot.head_norm_last_layer", _head_norm),
    ("dino.force_weight_norm", rename("dino.head_weight_norm", bool)),
    (
        "dino.koleo_loss_distributed",
        only(
            (False,),
            "KoLeo within each process's batch, as DINOv2",
            "KoLeo over all processes is not offered",
        ),
    ),
    ("dino.koleo_topk", only((1,), "KoLeo with the nearest neighbour", "only koleo_topk: 1")),
    ("dino.koleo_distributed_*", noop("read only with koleo_loss_distributed: true")),
    (
        "dino.reweight_dino_local_loss",
        only(
            (False,),
            "local crops weigh as global ones",
            "a schedule of the local crops' DINO weight is not offered",
        ),
    ),
    ("dino.local_loss_weight_schedule.*", noop("read only with reweight_dino_local_loss: true")),
    (
        "ibot.mask_random_circular_shift",
        only((False,), "masks as DINOv2 draws them", "circular shifts of the masks are not offered"),
    ),
    (
        "ibot.force_masking_even_with_zero_weight",
        only((False,), "no masks when ibot.loss_weight is 0", NEVER),
    ),
    (
        "gram.compute_stats",
        only((False,), "no auxiliary statistics", "auxiliary Gram statistics are not computed"),
    ),
    (
        "gram.ema_teacher",
        only(
            (False,),
            "a frozen Gram teacher, DINOv3's default",
            "the EMA teacher as Gram teacher is not offered",
        ),
    ),
    (
        "gram.ckpt",
        only(
            (None,),
            "the Gram teacher is copied from the EMA teacher",
            "a Gram teacher from a checkpoint is not offered: set it null and gram.it_load_ema_teacher >= 0",
        ),
    ),
    (
        "gram.global_teacher_resize_*",
        noop("read only with crops.gram_teacher_crops_size (refused unless null)"),
    ),
    ("train.output_dir", _output_dir),
    (
        "train.saveckp_freq",
        noop("DINOv2/v3's train.py does not read it; checkpoints: train.checkpoint_period"),
    ),
    ("train.cache_dataset", noop("images are read through the manifest each time")),
    (
        "train.data_config",
        only((None,), "no extra data config", "DINOv3 data configs are not read; give a folder or manifest"),
    ),
    ("train.monitor_gradient_norm", noop("train/grad_norm_* are always logged")),
    ("train.chunk_schedule", only(([],), "no chunked schedule", NEVER)),
    ("train.use_teacher_head", only((True,), "the teacher's heads give the targets", NEVER)),
    ("train.learn_from_teacher_tokens", only((False,), "targets from the teacher's heads", NEVER)),
    ("train.checkpointing", rename("student.activation_checkpointing", bool)),
    ("train.checkpointing_full", noop("activation checkpointing per block (train.checkpointing)")),
    ("train.compile", noop(SPEED + " (eager PyTorch)")),
    ("train.cudagraphs", noop(SPEED)),
    ("train.sharded_eval_checkpoint", noop("checkpoints hold full state dicts")),
    ("train.cell_augmentation", only((False,), "no cell-image augmentation", NEVER)),
    ("train.cell_augmentation_type", noop("read only with cell_augmentation: true")),
    *[(key, _arch_part(key)) for key in ARCH_KEYS if key != "student.arch"],
    (
        "student.drop_path_uniform",
        only((True,), "drop-path is uniform over blocks", "only uniform drop-path"),
    ),
    (
        "student.drop_path_shape",
        only(("uniform",), "drop-path is uniform over blocks", "only uniform drop-path"),
    ),
    ("student.block_chunks", noop("FSDP2 wraps every block (" + SPEED + ")")),
    (
        "student.interpolate_antialias",
        only((False,), "bicubic position interpolation without antialiasing", "only without antialiasing"),
    ),
    (
        "student.interpolate_offset",
        noop("positions are interpolated to the grid size (transformers), not by a 0.1-offset scale"),
    ),
    ("student.patch_drop", only((0, 0.0), "no patch dropping", NEVER)),
    (
        "student.resume_from_teacher_chkpt",
        only(
            ("", None), "no teacher checkpoint", "give the teacher's encoder with student.pretrained_weights"
        ),
    ),
    (
        "student.norm_layer",
        only(("layernorm", "layernormbf16"), "LayerNorm (bf16 under autocast)", "only layernorm"),
    ),
    (
        "student.untie_cls_and_patch_norms",
        only((False,), "one final norm", "separate CLS/patch norms are not in transformers' DINOv3"),
    ),
    (
        "student.untie_global_and_local_cls_norm",
        only((False,), "one final norm", "a separate local-crop CLS norm is not offered"),
    ),
    ("*.in_chans", only((3,), "grey images enter as 3 equal channels", "encoders take 3 channels")),
    ("student.pos_embed_type", only(("rope",), "DINOv3 encoders use RoPE", "only rope")),
    ("student.pos_embed_rope_min_period", only((None,), "periods from pos_embed_rope_base", "only null")),
    ("student.pos_embed_rope_max_period", only((None,), "periods from pos_embed_rope_base", "only null")),
    (
        "student.pos_embed_rope_normalize_coords",
        only(("separate",), "coordinates normalised per axis", "only separate"),
    ),
    ("student.pos_embed_rope_dtype", noop("RoPE angles are computed in fp32")),
    (
        "student.fp8_enabled",
        only((False,), "no fp8 matmuls", "fp8 matmuls are not offered; use compute.mixed_precision bf16"),
    ),
    ("student.fp8_filter", noop("read only with fp8_enabled: true")),
    ("distillation.enabled", only((False,), "no distillation", "distillation is not offered")),
    ("multidistillation.enabled", only((False,), "no distillation", "distillation is not offered")),
    ("hrft.enabled", only((False,), "no high-resolution fine-tuning teacher", NEVER)),
    ("distillation.*", noop(ENABLED)),
    ("hrft.*", noop(ENABLED)),
    ("optim.lr", _lr),
    ("optim.optimizer", only(("adamw",), "AdamW", "only adamw")),
    (
        "optim.schedule_trunc_extra",
        only((0, 0.0, None), "no truncated schedule", "truncated schedules are not offered"),
    ),
    ("optim.dino_head_wd_multiplier", only((1, 1.0), "heads decay as the backbone", "only 1.0")),
    ("optim.multi_tensor_optim", noop(SPEED)),
    ("optim.dump_fsdp_weights_path", only(("", None), "no weight dumps", NEVER)),
    (
        "crops.global_local_crop_pairs_ratios",
        only((1, 1.0), "one crop resolution", "multi-resolution crop pairs are not offered"),
    ),
    (
        "crops.gram_teacher_crops_size",
        only(
            (None,),
            "the Gram teacher sees the global crops",
            "separate Gram-teacher crops are not made; the Gram teacher sees the global crops",
        ),
    ),
    ("crops.gram_teacher_no_distortions", noop("read only with gram_teacher_crops_size")),
    (
        "crops.localcrops_subset_of_globalcrops",
        only((False,), "local crops drawn from the whole image", NEVER),
    ),
    ("crops.share_color_jitter", only((False,), "each crop jitters on its own", NEVER)),
    ("crops.horizontal_flips", _flips),
    ("crops.rgb_mean", _rgb("crops.mean")),
    ("crops.rgb_std", _rgb("crops.std")),
    (
        "crops.teacher_to_student_resolution_scale",
        only((1, 1.0), "teacher and student crops at one size", NEVER),
    ),
    ("evaluation.eval_period_iterations", _export_period),
    ("evaluation.low_freq_every", noop("DINOv3's in-training benchmarks are not run; probe the snapshots")),
    ("evaluation.config_files.*", noop("DINOv3's in-training benchmarks are not run; probe the snapshots")),
    ("checkpointing.period", rename("train.checkpoint_period", int)),
    ("checkpointing.max_to_keep", rename("train.keep_checkpoints", int)),
    ("checkpointing.keep_every", _keep_every),
    *[
        (f"schedules.{name}.*", _schedule(name))
        for name in ("lr", "weight_decay", "momentum", "teacher_temp")
    ],
]
"""Foreign keys (fnmatch-style patterns, ``*`` spans dots) in order; the first match decides."""

NULL_FROM_SCHEDULE: Mapping[str, str] = {
    "optim.weight_decay": "weight_decay",
    "optim.weight_decay_end": "weight_decay",
    "optim.warmup_epochs": "lr",
    "optim.min_lr": "lr",
    "optim.freeze_last_layer_epochs": "lr",
    "teacher.momentum_teacher": "momentum",
    "teacher.final_momentum_teacher": "momentum",
    "teacher.warmup_teacher_temp": "teacher_temp",
    "teacher.teacher_temp": "teacher_temp",
    "teacher.warmup_teacher_temp_epochs": "teacher_temp",
}
"""Our keys that DINOv3's schedules-v2 files set to null: the schedule gives their value."""


def arch_rule() -> Rule:
    """The rule for ``student.arch`` when its value is a DINOv2/DINOv3 name (``vit_large``)."""
    return _arch


__all__ = ["NULL_FROM_SCHEDULE", "RULES", "Context", "Decision", "arch_rule", "honoured", "mapped", "refused"]
