"""Speed of one pre-training step on CPU: images/s, utilisation and peak memory, one process per variant.

A step is what the training engine runs per pre-training iteration (``raddino.training.optimization_step``
on :class:`~raddino.pretrain.task.PretrainTask`'s pieces): teacher forward (no gradient), student forward
over 2 global + n local crops with iBOT masks, DINO + iBOT + KoLeo losses, backward, the finiteness check of
every loss term, per-module gradient clipping, AdamW step, EMA teacher update. Batches are synthetic (data
loading is not measured).

Variants (the CPU demo sizes: ``configs/demo_cpu.yaml``, a 4-block 128-wide ViT/14 at 2 × 112 + 4 × 56 px,
batch 16, fp32): this project's step; the same step from lightly's DINOv2 blocks; the DINOv3 demo
(``configs/demo_cpu_dinov3.yaml``, ViT/16, separate heads); and the demo with DINOv2's full head (65,536
prototypes, 2048 hidden, 256 bottleneck) on the working tree and on ``--baseline`` (a git revision, checked
out with ``git worktree``), to measure the head's cost before and after a change.

Each variant runs in a fresh process (so its peak RSS is its own), ``--rounds`` times, the order of the
variants flipped every round so load from other jobs hits all alike; a process does one warm-up step and
``--steps`` timed ones and reports its best. Utilisation = FLOPs counted from the architecture
(:mod:`benchmarks.flops`) / step time / the best n×n fp32 matmul any process measured. The ViT-B/14 GPU
row is :mod:`benchmarks.gpu`'s.

    python benchmarks/pretrain.py --baseline 181b591~1 [--rounds 3] [--steps 3]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.flops import config_step_flops
from benchmarks.report import write_section
from raddino.data.collate import collate_multicrop
from raddino.pretrain.config import PretrainConfig, load_pretrain_config
from raddino.pretrain.dataset import MaskPlanner
from raddino.pretrain.meta_arch import SSLMetaArch, build_encoder
from raddino.pretrain.task import PretrainTask
from raddino.training import MixedPrecision, optimization_step
from raddino.training.distributed import DistributedContext

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
FULL_HEAD = ("dino.head_n_prototypes=65536", "dino.head_hidden_dim=2048", "dino.head_bottleneck_dim=256")


@dataclass(frozen=True)
class Variant:
    """One row: a config, the step's implementation and the revision whose ``src/`` runs it."""

    description: str
    config: str
    overrides: tuple[str, ...] = ()
    implementation: str = "raddino"
    revision: str = "current"


VARIANTS = {
    "raddino": Variant(
        "raddino: CPU demo ViT/14 (128 wide, 4 blocks), 2×112 + 4×56 px, batch 16", "demo_cpu"
    ),
    "lightly": Variant("lightly blocks: the same step", "demo_cpu", implementation="lightly"),
    "dinov3": Variant(
        "raddino DINOv3: CPU demo ViT/16 (128 wide, 4 blocks, 4 registers), separate heads, 2×112 + 4×48 px",
        "demo_cpu_dinov3",
    ),
    "head": Variant("raddino: the demo with DINOv2's head (65,536 prototypes)", "demo_cpu", FULL_HEAD),
    "head-baseline": Variant(
        "raddino at the baseline: the demo with DINOv2's head", "demo_cpu", FULL_HEAD, revision="baseline"
    ),
}


def load_variant_config(variant: Variant) -> PretrainConfig:
    return load_pretrain_config(
        CONFIGS / f"{variant.config}.yaml", ["train.dataset_path=synthetic", *variant.overrides]
    )


def _patch_size(config: PretrainConfig) -> int:
    return 16 if config.student.arch.endswith("16") else 14


def synthetic_batch(
    config: PretrainConfig, device: torch.device, patch_size: int = 14
) -> dict[str, torch.Tensor]:
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
    side = crops.global_crops_size // patch_size
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
    batch = synthetic_batch(config, device, _patch_size(config))

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
    batch = synthetic_batch(config, device, _patch_size(config))
    n_local = config.crops.local_crops_number
    side = config.crops.global_crops_size // _patch_size(config)

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


def lightly_available() -> bool:
    try:
        import lightly  # noqa: F401
    except ImportError:
        return False
    return True


def run_variant(name: str, steps: int) -> dict[str, float]:
    """In this process: build the variant's step, one warm-up step, ``steps`` timed; best time, FLOPs from
    the architecture, this process's peak RSS and the fp32 matmul peak right after."""
    variant = VARIANTS[name]
    at_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB → GiB, torch imported
    torch.manual_seed(0)
    config = load_variant_config(variant)
    cpu = torch.device("cpu")
    build = lightly_step if variant.implementation == "lightly" else raddino_step
    step = build(config, cpu, None)
    step()  # warm-up: allocations, kernels, optimiser state
    times, cpu_times = [], []
    for _ in range(steps):
        began, began_cpu = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - began)
        cpu_times.append(time.process_time() - began_cpu)
    masked = int(synthetic_batch(config, cpu, _patch_size(config))["n_masked_patches"])
    flops = config_step_flops(config, build_encoder(config).config, masked)
    return {
        "step_s": min(times),
        "cpu_s": min(cpu_times),  # one thread: the work done, less exposed to other jobs than wall time
        "flop_per_step": float(flops),
        "images_per_step": float(config.train.batch_size_per_gpu),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "rss_before_build_gib": at_start,
        "matmul_peak_flops": matmul_peak(cpu, torch.float32),
    }


def spawn(name: str, steps: int, sources: dict[str, Path], threads: int) -> dict[str, float]:
    """:func:`run_variant` in a fresh process of this Python with the variant's revision's ``src/``."""
    source = sources[VARIANTS[name].revision]
    env = {
        **os.environ,
        "PYTHONPATH": str(source),
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    command = [sys.executable, __file__, "--child", name, "--steps", str(steps)]
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("bench-json=")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"variant {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1].removeprefix("bench-json="))


def measure(names: list[str], rounds: int, steps: int, sources: dict[str, Path], threads: int) -> dict:
    """Every variant once per round, fresh processes, the order flipped every round."""
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    for round_index in range(rounds):
        for name in names if round_index % 2 == 0 else names[::-1]:
            runs[name].append(spawn(name, steps, sources, threads))
            print(f"round {round_index + 1}/{rounds} {name}: {runs[name][-1]['step_s']:.3f} s", flush=True)
    return runs


def summarise(runs: dict[str, list[dict[str, float]]]) -> tuple[dict[str, dict[str, float]], float]:
    peak = max(run["matmul_peak_flops"] for values in runs.values() for run in values)
    summary = {}
    for name, values in runs.items():
        step_s = statistics.median(run["step_s"] for run in values)
        summary[name] = {
            "step_s": step_s,
            "images_per_s": values[0]["images_per_step"] / step_s,
            "gflop_per_step": values[0]["flop_per_step"] / 1e9,
            "utilisation": values[0]["flop_per_step"] / step_s / peak,
            "peak_rss_gib": max(run["peak_rss_gib"] for run in values),
            "step_rss_gib": max(run["peak_rss_gib"] - run["rss_before_build_gib"] for run in values),
        }
    return summary, peak


def ratios(runs: dict, current: str, reference: str, key: str = "step_s") -> list[float]:
    """Per-round ratios current / reference of ``key`` (each round's pair ran back to back)."""
    return [a[key] / b[key] for a, b in zip(runs[current], runs[reference], strict=True)]


def render(runs: dict, args: argparse.Namespace, baseline: str | None, current_name: str) -> str:
    summary, peak = summarise(runs)
    lines = [
        "One training step (teacher forward, student forward/backward with iBOT masks, DINO + iBOT + KoLeo, "
        "clipping, AdamW, EMA), synthetic batches, fp32, one thread. Each variant ran in its own process "
        f"{args.rounds} times (order flipped each round); a process ran 1 warm-up + {args.steps} steps and "
        "reported its best; the table gives the median over processes. Utilisation = FLOPs from the "
        "architecture (`benchmarks/flops.py`: attention products included) / step time / the best "
        f"2048² fp32 matmul any process measured ({peak / 1e9:.1f} GFLOP/s). Peak memory: the variant's "
        "own process's peak RSS, and its growth from before the model was built (after the imports).",
        "",
        "| variant | images/s | step (s) | GFLOP/step | utilisation | peak RSS (GiB) | of it model + step |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, result in summary.items():
        lines.append(
            f"| {VARIANTS[name].description} | {result['images_per_s']:.1f} | {result['step_s']:.3f} | "
            f"{result['gflop_per_step']:.2f} | {result['utilisation']:.1%} | {result['peak_rss_gib']:.2f} | "
            f"{result['step_rss_gib']:.2f} |"
        )
    pairs = [("raddino", "lightly", "raddino / lightly")]
    if baseline:
        pairs.append(("head", "head-baseline", f"65,536-prototype head, {current_name} / {baseline}"))
    for current, reference, label in pairs:
        if current in runs and reference in runs:
            walls, cpus = ratios(runs, current, reference), ratios(runs, current, reference, "cpu_s")
            lines += [
                "",
                f"{label}: step time median {statistics.median(walls):.2f}× (rounds: "
                + ", ".join(f"{value:.2f}" for value in walls)
                + f"), CPU time per step median {statistics.median(cpus):.2f}× (rounds: "
                + ", ".join(f"{value:.2f}" for value in cpus)
                + "); below 1 = faster.",
            ]
    lines += [
        "",
        "The DINOv3 demo's Gram anchoring starts at iteration 100 (`gram.it_load_ema_teacher`), so this "
        "step has no Gram teacher forward. The ViT-B/14 and ViT-B/16 GPU steps are `benchmarks/gpu.py`'s "
        "section. The CPU is shared with other jobs: absolute times vary between runs; ratios of variants "
        "run back to back are the comparable numbers.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per process (after a warm-up)")
    parser.add_argument("--rounds", type=int, default=3, help="processes per variant")
    parser.add_argument("--baseline", default=None, help="git revision for the 65,536-prototype head row")
    parser.add_argument("--current", default=None, help="git revision to measure instead of the working tree")
    parser.add_argument("--variants", nargs="+", default=None, choices=sorted(VARIANTS))
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per process")
    parser.add_argument("--json", type=Path, default=None, help="also write the measurements here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print("bench-json=" + json.dumps(run_variant(args.child, args.steps)), flush=True)
        return
    names = args.variants or [name for name in VARIANTS if name != "head-baseline" or args.baseline]
    if "lightly" in names and not lightly_available():
        names.remove("lightly")
    with tempfile.TemporaryDirectory(prefix="pretrain-bench-") as scratch:
        sources = {"current": Path(scratch) / "current-src"}
        shutil.copytree(ROOT / "src", sources["current"])  # edits made while this runs change nothing
        from benchmarks.revisions import add_worktree, git

        revisions = {"baseline": args.baseline, "current": args.current}
        commits = {}
        for role, revision in revisions.items():
            if revision:
                commits[role] = add_worktree(revision, Path(scratch) / role, role)[:7]
                sources[role] = Path(scratch) / role / "src"
        try:
            runs = measure(names, args.rounds, args.steps, sources, args.threads)
        finally:
            for role in commits:
                git("worktree", "remove", "--force", str(Path(scratch) / role))
        baseline = commits.get("baseline")
    if args.json:
        record = {"baseline": baseline, "current": commits.get("current", "working tree"), "runs": runs}
        args.json.write_text(json.dumps(record, indent=1), encoding="utf-8")
    current_name = f"`{commits['current']}` ({args.current})" if "current" in commits else "the working tree"
    body = render(runs, args, f"`{baseline}` ({args.baseline})" if baseline else None, current_name)
    print(body)
    write_section("pretrain", body)


if __name__ == "__main__":
    main()
