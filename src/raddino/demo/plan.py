"""Sizes of the built-in demo: the full CPU demo (:func:`full_plan`) and the seconds-long one
(:func:`quick_plan`), with the pre-training recipe they run (``DEMO_CPU`` = ``configs/demo_cpu.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DemoPlan:
    """Sizes of one demo: the full CPU demo (:func:`full_plan`) or the seconds-long ``--quick`` one."""

    images: int
    size: int
    """Phantom side in pixels (the phantom generator's minimum is 64)."""
    pretrain: dict[str, Any]
    """``PretrainConfig`` values (dotted keys) on top of its defaults."""
    probe_epochs: int
    probe_seeds: tuple[int, ...]
    knn_ks: tuple[int, ...]
    metadata_folds: int
    segment_epochs: int
    segment_channels: int
    report_epochs: int
    report_hidden: int
    ablation: bool = False
    subtle_fraction: float = 0.0
    """Share of positive findings drawn subtle: at 128 px a subtle nodule or pneumothorax is a pixel or
    two, below what a 112 px ViT/14 can see, so the demo draws them all obvious."""


# configs/demo_cpu.yaml's recipe, in code so an installed package needs no repo files (a test checks that
# the two agree): a 4-block, 128-wide ViT/14 at 112 px global / 56 px local crops, 36 x 25 = 900
# iterations (about 3 min on 2 cores).
DEMO_CPU: dict[str, Any] = {
    "student.arch": "vits14",
    # LayerScale 0.1 instead of DINOv2's 1e-5: in a few hundred iterations the blocks must contribute
    # from the start, or every CLS token is the same and nothing is learnt.
    "student.arch_overrides": {
        "hidden_size": 128,
        "num_hidden_layers": 4,
        "num_attention_heads": 2,
        "image_size": 112,
        "layerscale_value": 0.1,
    },
    "student.drop_path_rate": 0.0,
    "dino.head_n_prototypes": 1024,  # 65536 prototypes are for 800k images
    "dino.head_bottleneck_dim": 64,
    "dino.head_hidden_dim": 256,
    "crops.global_crops_size": 112,
    "crops.local_crops_size": 56,
    "crops.local_crops_number": 4,
    "optim.epochs": 36,
    "optim.warmup_epochs": 1,
    "optim.base_lr": 8.0e-3,  # x sqrt(16 / 1024) = 1e-3 at batch 16 (DINOv2's sqrt scaling)
    "optim.freeze_last_layer_epochs": 1,
    "teacher.momentum_teacher": 0.98,  # a short run: the teacher follows faster than DINOv2's 0.992
    "teacher.final_momentum_teacher": 0.996,
    # Sinkhorn-Knopp and sharp teacher targets: with EMA centring at DINOv2's 0.04 -> 0.07 the teacher's
    # softmax goes uniform within ~100 iterations here and the CLS term teaches nothing (demo_cpu.yaml).
    "teacher.warmup_teacher_temp": 0.01,
    "teacher.teacher_temp": 0.02,
    "teacher.warmup_teacher_temp_epochs": 3,
    "train.centering": "sinkhorn_knopp",
    "train.batch_size_per_gpu": 16,
    "train.OFFICIAL_EPOCH_LENGTH": 25,
    "train.num_workers": 1,
    "train.checkpoint_period": 50,
    "train.log_period": 5,
    "compute.device": "cpu",
}

# configs/test.yaml's sizes: a 2-block, 32-wide ViT on 56 px crops, a few iterations.
_QUICK: dict[str, Any] = {
    "student.arch": "test",
    "student.drop_path_rate": 0.0,
    "dino.head_n_prototypes": 64,
    "dino.head_bottleneck_dim": 16,
    "dino.head_hidden_dim": 32,
    "ibot.head_n_prototypes": 64,
    "ibot.head_bottleneck_dim": 16,
    "ibot.head_hidden_dim": 32,
    "crops.global_crops_size": 56,
    "crops.local_crops_size": 28,
    "crops.local_crops_number": 2,
    "optim.epochs": 2,
    "optim.warmup_epochs": 1,
    "train.batch_size_per_gpu": 4,
    "train.OFFICIAL_EPOCH_LENGTH": 2,
    "train.num_workers": 0,
    "train.checkpoint_period": 2,
    "train.log_period": 1,
    "compute.device": "cpu",
}


def full_plan(ablation: bool = True) -> DemoPlan:
    """The README's demo: about 7 minutes on two CPU cores, 6 of them pre-training (two runs)."""
    return DemoPlan(
        images=800,
        size=128,
        pretrain=DEMO_CPU,
        probe_epochs=60,
        probe_seeds=(0, 1, 2),
        knn_ks=(10, 20),
        metadata_folds=3,
        segment_epochs=15,
        segment_channels=32,
        report_epochs=5,
        report_hidden=64,
        ablation=ablation,
    )


def quick_plan(ablation: bool = True) -> DemoPlan:
    """A tiny demo for tests: every step and every report section, in seconds."""
    return DemoPlan(
        images=48,
        size=64,
        pretrain=_QUICK,
        probe_epochs=3,
        probe_seeds=(0,),
        knn_ks=(3,),
        metadata_folds=2,
        segment_epochs=1,
        segment_channels=8,
        report_epochs=1,
        report_hidden=32,
        ablation=ablation,
    )


@dataclass
class DemoConfig:
    """Settings of ``raddino demo``."""

    out: str = "demo"
    """Output folder (re-running resumes)."""
    quick: bool = False
    """A tiny version (seconds): every step and section, no learning."""
    ablation: bool = True
    """Also pre-train with iBOT off (the paper's ablation)."""
    seed: int = 0
    """Seed of the phantoms, initialisation and splits."""
    seeds: int = 1
    """Pre-training seeds (seed, seed + 1, …), each against its own random init: with 3 the page says
    which margins hold over the seeds; each further seed adds one pre-training run (~4 min)."""

    def plan(self) -> DemoPlan:
        """The quick or the full plan, with or without the ablation."""
        return quick_plan(self.ablation) if self.quick else full_plan(self.ablation)
