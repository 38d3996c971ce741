"""Speed of one pre-training step: images/s, model FLOP utilisation and peak memory.

A step is what the training engine runs per pre-training iteration (``raddino.training.optimization_step``
on :class:`~raddino.pretrain.task.PretrainTask`'s pieces): teacher forward (no gradient), student forward
over 2 global + n local crops with iBOT masks, DINO + iBOT + KoLeo losses, backward, the finiteness check of
every loss term, per-module gradient clipping, AdamW step, EMA teacher update. Batches are synthetic (data
loading is not measured).

- CPU: the CPU demo model (``configs/demo_cpu.yaml``: 4-block, 128-wide ViT/14, 112/56 px crops), batch 16,
  fp32.
- GPU (when present): ViT-B/14 at the paper's crops (2 × 518 + 8 × 196), batch 40, bf16 autocast.

MFU = FLOPs of one step (``torch.utils.flop_counter.FlopCounterMode``) / step time / the measured peak of a
large matmul on the same device (fp32 on CPU, bf16 on GPU), so it is a fraction of what this machine can do,
not of a datasheet number.

    python benchmarks/pretrain.py [--steps 5]
"""

from __future__ import annotations

import argparse
import copy
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import write_section
from raddino.data.collate import collate_multicrop
from raddino.pretrain.config import PretrainConfig, load_pretrain_config
from raddino.pretrain.dataset import MaskPlanner
from raddino.pretrain.meta_arch import SSLMetaArch
from raddino.pretrain.task import PretrainTask
from raddino.training import MixedPrecision, optimization_step
from raddino.training.distributed import DistributedContext

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def synthetic_batch(config: PretrainConfig, device: torch.device) -> dict[str, torch.Tensor]:
    """Random crops of the config's sizes with DINOv2-rule masks, collated as the loop's batches."""
    crops, batch = config.crops, config.train.batch_size_per_gpu
    generator = torch.Generator().manual_seed(0)
    samples = [
        {
            "global_crops": [
                torch.randn(3, crops.global_crops_size, crops.global_crops_size, generator=generator)
            ]
            * 2,
            "local_crops": [
                torch.randn(3, crops.local_crops_size, crops.local_crops_size, generator=generator)
            ]
            * crops.local_crops_number,
        }
        for _ in range(batch)
    ]
    side = crops.global_crops_size // 14
    planner = MaskPlanner(
        (side, side), config.ibot.mask_ratio_min_max, config.ibot.mask_sample_probability, batch
    )
    collated = collate_multicrop(samples, planner.masks(list(range(batch))))
    return {key: value.to(device) for key, value in collated.items()}


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """Best FLOP/s of an n×n matmul on ``device`` (n 2048 on CPU, 8192 on GPU)."""
    n = 8192 if device.type == "cuda" else 2048
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(5):
        if device.type == "cuda":
            torch.cuda.synchronize()
        began = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - began)
    return 2 * n**3 / best


def raddino_step(
    config: PretrainConfig, device: torch.device, dtype: torch.dtype | None
) -> Callable[[], None]:
    """This project's training step: the engine's, on the pre-training task (without data loading, logging
    and checkpoints)."""
    task = PretrainTask(config, DistributedContext(rank=0, world_size=1, local_rank=0, device=device))
    optimization = task.build(device)
    optimization.model.train()
    precision = MixedPrecision(device, dtype)
    values = {
        "learning_rate": 1e-4,
        "weight_decay": 0.04,
        "last_layer_learning_rate": 1e-4,
        "momentum": 0.994,
        "teacher_temperature": 0.04,
    }
    optimization.apply_schedules(optimization.optimizer, values)
    batch = synthetic_batch(config, device)

    def step() -> None:
        optimization_step(optimization, precision, None, 0, [(batch, 1.0)], task.loss, values)

    return step


def lightly_step(
    config: PretrainConfig, device: torch.device, dtype: torch.dtype | None
) -> Callable[[], None]:
    """The same step built from lightly's DINOv2 pieces: ``DINOProjectionHead``, ``DINOLoss``,
    ``IBOTPatchLoss``, ``KoLeoLoss``, ``update_momentum``, on the same encoder and batch (plain AdamW)."""
    from lightly.loss import DINOLoss, IBOTPatchLoss, KoLeoLoss
    from lightly.models.modules import DINOProjectionHead
    from lightly.models.utils import update_momentum

    dino = config.dino
    backbone = SSLMetaArch(config).student.encoder.to(device)
    head = DINOProjectionHead(
        backbone.embed_dim, dino.head_hidden_dim, dino.head_bottleneck_dim, dino.head_n_prototypes
    ).to(device)
    teacher_backbone = copy.deepcopy(backbone)
    teacher_head = DINOProjectionHead(  # weight_norm's computed weight cannot be deep-copied
        backbone.embed_dim, dino.head_hidden_dim, dino.head_bottleneck_dim, dino.head_n_prototypes
    ).to(device)
    teacher_head.load_state_dict(head.state_dict())
    teacher_backbone.requires_grad_(False)
    teacher_head.requires_grad_(False)
    dino_loss = DINOLoss(dino.head_n_prototypes).to(device)
    ibot_loss = IBOTPatchLoss(dino.head_n_prototypes).to(device)
    koleo_loss = KoLeoLoss()
    optimizer = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=1e-4, weight_decay=0.04)
    batch = synthetic_batch(config, device)
    n_local = config.crops.local_crops_number
    side = config.crops.global_crops_size // 14

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            indices = batch["mask_indices"]
            with torch.no_grad():
                teacher = teacher_backbone(batch["global_crops"])
                teacher_patches = teacher.patch_tokens.flatten(2).transpose(1, 2).flatten(0, 1)[indices]
                teacher_cls = teacher_head(teacher.cls)  # (2B, K)
                teacher_patch = teacher_head(teacher_patches)  # (M, K)
            student = backbone(batch["global_crops"], batch["masks"])
            student_patches = student.patch_tokens.flatten(2).transpose(1, 2).flatten(0, 1)[indices]
            student_global = head(student.cls)  # (2B, K)
            student_local = head(backbone(batch["local_crops"]).cls)  # (nB, K)
            loss = dino_loss(
                list(teacher_cls.chunk(2)), [*student_global.chunk(2), *student_local.chunk(n_local)], 0.04
            )
            masks = batch["masks"].view(-1, side, side)  # (2B, h, w)
            loss = loss + ibot_loss(teacher_patch, head(student_patches), masks, 0.04)
            loss = loss + 0.1 * sum((koleo_loss(cls) for cls in student.cls.chunk(2)), start=torch.zeros(()))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(backbone.parameters(), 3.0)
        torch.nn.utils.clip_grad_norm_(head.parameters(), 3.0)
        optimizer.step()
        update_momentum(backbone, teacher_backbone, 0.994)
        update_momentum(head, teacher_head, 0.994)

    return step


def measure(
    variants: dict[str, Callable[[], None]],
    config: PretrainConfig,
    device: torch.device,
    dtype: torch.dtype | None,
    steps: int,
) -> dict[str, dict[str, float]]:
    """Best step time (steps of the variants interleaved, so load from other jobs hits all alike), FLOPs,
    MFU and peak memory of each variant."""
    flops: dict[str, float] = {}
    for name, step in variants.items():
        step()  # warm-up: allocations, kernels, optimiser state
        with FlopCounterMode(display=False) as counter:
            step()
        flops[name] = counter.get_total_flops()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(steps):
        for name, step in variants.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            began = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - began)
    peak = matmul_peak(device, dtype or torch.float32)
    if device.type == "cuda":
        memory = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB
    results = {}
    for name in variants:
        seconds = min(times[name])
        results[name] = {
            "images_per_s": config.train.batch_size_per_gpu / seconds,
            "step_s": seconds,
            "tflop_per_step": flops[name] / 1e12,
            "mfu": flops[name] / seconds / peak,
            "peak_tflops": peak / 1e12,
            "memory_gib": memory,
        }
    return results


def lightly_available() -> bool:
    try:
        import lightly  # noqa: F401
    except ImportError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    cpu_config = load_pretrain_config(CONFIGS / "demo_cpu.yaml", ["train.dataset_path=synthetic"])
    cpu = torch.device("cpu")
    name = "CPU demo ViT (128 wide, 4 blocks), 2×112 + 4×56 px, batch 16, fp32"
    variants = {"raddino": raddino_step(cpu_config, cpu, None)}
    if lightly_available():
        variants["lightly blocks"] = lightly_step(cpu_config, cpu, None)
    for variant, result in measure(variants, cpu_config, cpu, None, args.steps).items():
        rows.append((f"{variant}: {name}", "cpu", result))
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        gpu_config = load_pretrain_config(
            CONFIGS / "rad_dino_vitb14.yaml",
            ["train.dataset_path=synthetic", "student.pretrained_weights=null"],
        )
        step = {"raddino": raddino_step(gpu_config, gpu, torch.bfloat16)}
        gpu_row = measure(step, gpu_config, gpu, torch.bfloat16, args.steps)["raddino"]
        rows.append(("raddino: ViT-B/14, 2×518 + 8×196 px, batch 40, bf16 autocast", "cuda", gpu_row))
    lines = [
        "One training step (teacher forward, student forward/backward with iBOT masks, DINO + iBOT + KoLeo, "
        "clipping, AdamW, EMA), synthetic batches, best of "
        f"{args.steps} steps after a warm-up (variants interleaved step by step). "
        "MFU = step FLOPs (FlopCounterMode) / time / measured matmul peak (fp32 on CPU, bf16 on GPU). "
        "Memory: peak RSS of the process on CPU, peak allocated on GPU.",
        "",
        "| setting | device | images/s | step (s) | TFLOP/step | matmul peak (TFLOP/s) | MFU "
        "| peak memory (GiB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, device, r in rows:
        lines.append(
            f"| {name} | {device} | {r['images_per_s']:.2f} | {r['step_s']:.3f} | "
            f"{r['tflop_per_step']:.4f} | {r['peak_tflops']:.3f} | {r['mfu']:.1%} | {r['memory_gib']:.2f} |"
        )
        print(lines[-1])
    if not torch.cuda.is_available():
        lines += [
            "",
            "No GPU on this machine: the ViT-B/14 row (paper crops, batch 40, bf16) was not measured.",
        ]
    if lightly_available():
        import lightly

        ours, theirs = rows[0][2], rows[1][2]
        lines += [
            "",
            f"lightly {lightly.__version__}: the same step from lightly's DINOv2 building blocks "
            "(projection head, DINO / iBOT / KoLeo losses, momentum update) on the same encoder and batch, "
            "with plain AdamW instead of layer-wise parameter groups (lightly centres inside its losses); "
            f"raddino / lightly step time: {ours['step_s'] / theirs['step_s']:.2f}× "
            "(below 1 = raddino faster).",
        ]
    else:
        lines += ["", "lightly comparison: not run (`pip install lightly` to add it)."]
    lines += [
        "",
        "The CPU is shared with other jobs: absolute numbers vary by a factor of several between runs; "
        "the ratio between interleaved variants is the comparable number.",
    ]
    write_section("pretrain", "\n".join(lines))


if __name__ == "__main__":
    main()
