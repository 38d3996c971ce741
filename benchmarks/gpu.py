"""The GPU check in one command: pre-training step speed and ``embed`` throughput on a CUDA device.

On a CUDA machine (under 8 minutes end to end, warm-up and compilation included):

- the ViT-B/14 pre-training step at the paper's crops (2 × 518 + 8 × 196 px), batch 40, bf16 autocast,
  ``configs/rad_dino_vitb14.yaml`` at random init: without and with FSDP2 (one process, a process group of
  one, as ``torchrun --nproc_per_node 1`` runs it) × ``torch.compile`` of every encoder block off and on;
  and the DINOv3 ViT-B/16 step (``configs/rad_dinov3_vitb16.yaml``: 2 × 512 + 8 × 192, separate heads,
  Gram anchoring from the start) without FSDP (compiled too with ``--settings``). Each setting runs in its
  own process (its own peak memory and compile caches), the compiled ones last, within ``--budget``:
  warm-up steps, then timed ones; images/s, achieved TFLOP/s (FLOPs from the architecture,
  :mod:`benchmarks.flops`), % of the device's bf16 matmul peak measured here (8192² products), peak
  allocated memory.
- ``embed`` images/s end to end vs model only vs the official one-image path (transformers ``AutoModel``,
  one image at a time, fp32 as the rad-dino package runs it), in fp16 and bf16, on the same images after
  warm-up (:mod:`benchmarks.embed`'s paths), with the agreement of embed's and the reference's CLS
  vectors (mean-centred cosine, LayerScale-1.0 encoder).

Writes BENCHMARKS.md's section ``gpu`` and a JSON of every number. ``--tiny`` runs the same code on CPU
with test-sized models, tiny crops and one timed step, in this process (FSDP2 over gloo, compilation with
the ``eager`` backend), so the suite can run it (tests/benchmarks/test_gpu_script.py).

    python benchmarks/gpu.py --json gpu.json          # on the GPU machine; or: bash benchmarks/gpu.sh
    python benchmarks/gpu.py --tiny --json /tmp/gpu.json --benchmarks-file /tmp/BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import embed as embed_paths
from benchmarks.flops import ViTShape, config_step_flops, vit_forward_flops
from benchmarks.report import BENCHMARKS_FILE, write_section

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SETTINGS = {  # name → (architecture, FSDP2, torch.compile)
    "vitb14": ("vitb14", False, False),
    "vitb14-compile": ("vitb14", False, True),
    "vitb14-fsdp": ("vitb14", True, False),
    "vitb14-fsdp-compile": ("vitb14", True, True),
    "vitb16-dinov3": ("vitb16", False, False),
    "vitb16-dinov3-compile": ("vitb16", False, True),
}
DEFAULT_SETTINGS = [name for name in SETTINGS if name != "vitb16-dinov3-compile"]  # the 8-minute budget
TINY_OVERRIDES = {
    "vitb14": ["student.arch=test"],
    "vitb16": [
        "student.arch=test16",
        "crops.global_crops_size=64",
        "crops.local_crops_size=32",
        "ibot.separate_head=true",
        "ibot.head_n_prototypes=64",
        "ibot.head_hidden_dim=32",
        "ibot.head_bottleneck_dim=16",
        "dino.head_weight_norm=false",
        "gram.use_loss=true",
        "gram.it_load_ema_teacher=0",
    ],
}


def step_config(arch: str, tiny: bool) -> Any:
    """The setting's ``PretrainConfig``: the paper-scale config on a GPU, ``configs/test.yaml`` when tiny."""
    from raddino.pretrain.config import load_pretrain_config

    if tiny:
        return load_pretrain_config(
            CONFIGS / "test.yaml", ["train.dataset_path=synthetic", *TINY_OVERRIDES[arch]]
        )
    name = "rad_dino_vitb14.yaml" if arch == "vitb14" else "rad_dinov3_vitb16.yaml"
    overrides = ["train.dataset_path=synthetic", "student.pretrained_weights=null"]
    return load_pretrain_config(CONFIGS / name, [*overrides, "compute.mixed_precision=bf16"])


def _one_process_group(device: torch.device) -> Any:
    """A process group of one (FSDP2 needs one) and a context that makes the task shard."""
    import torch.distributed as dist

    from raddino.training.distributed import DistributedContext

    class OneProcessSharded(DistributedContext):
        @property
        def is_distributed(self) -> bool:  # shard although the job has one process
            return True

    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    return OneProcessSharded(rank=0, world_size=1, local_rank=0, device=device)


def run_setting(name: str, steps: int, warmup: int, tiny: bool) -> dict[str, float]:
    """Build the setting's pre-training step, run ``warmup`` + ``steps`` steps; times, FLOPs, memory."""
    import resource

    import torch.distributed as dist

    from benchmarks.pretrain import synthetic_batch
    from raddino.pretrain.task import PretrainTask
    from raddino.training import MixedPrecision, optimization_step
    from raddino.training.distributed import DistributedContext

    arch, fsdp, compiled = SETTINGS[name]
    config = step_config(arch, tiny)
    device = torch.device("cpu" if tiny else "cuda")
    dtype = None if tiny else torch.bfloat16
    context = (
        _one_process_group(device)
        if fsdp
        else DistributedContext(rank=0, world_size=1, local_rank=0, device=device)
    )
    torch.manual_seed(0)
    task = PretrainTask(config, context)
    optimization = task.build(device)
    optimization.model.train()
    if compiled:  # every encoder block's forward; FSDP2's hooks stay outside the compiled code
        # One graph serves every block (parameters are graph inputs); crop sizes x grad modes add a few.
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
        for network in (task.model.student, task.model.teacher):
            for block in network.encoder.blocks:
                block.forward = torch.compile(block.forward, backend="eager" if tiny else "inductor")
    gram = task.model.gram_teacher
    if gram is not None and not gram.loaded:
        gram.copy_from(
            task.model.teacher.encoder, count=False
        )  # what it_load_ema_teacher does at its iteration
    values = {"learning_rate": 1e-4, "weight_decay": 0.04, "last_layer_learning_rate": 1e-4}
    values |= {"momentum": 0.994, "teacher_temperature": 0.04}
    optimization.apply_schedules(optimization.optimizer, values)
    patch = 16 if arch == "vitb16" else 14
    batch = synthetic_batch(config, device, patch)
    precision = MixedPrecision(device, dtype)

    def step() -> None:
        optimization_step(optimization, precision, None, 0, [(batch, 1.0)], task.loss, values)

    for _ in range(warmup):
        step()
    _synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps):
        began = time.perf_counter()
        step()
        _synchronize(device)
        times.append(time.perf_counter() - began)
    encoder_config = task.model.student.encoder.config
    flops = config_step_flops(config, encoder_config, int(batch["n_masked_patches"]))
    if gram is not None:  # the Gram teacher's forward on the global crops
        flops += vit_forward_flops(
            ViTShape.from_config(encoder_config),
            config.crops.global_crops_size,
            2 * config.train.batch_size_per_gpu,
        )
    if device.type == "cuda":
        memory = torch.cuda.max_memory_allocated(device) / 2**30
    else:
        memory = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if fsdp and dist.is_initialized():
        dist.destroy_process_group()
    times.sort()
    return {
        "step_s": times[len(times) // 2],
        "best_step_s": times[0],
        "images_per_s": config.train.batch_size_per_gpu / times[len(times) // 2],
        "tflop_per_step": flops / 1e12,
        "memory_gib": memory,
    }


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def spawn_setting(name: str, args: argparse.Namespace, seconds_left: float) -> dict[str, Any]:
    """:func:`run_setting` in a fresh process (its own memory statistics and compile caches), given at most
    ``seconds_left`` (or ``--setting-timeout``) so the whole check keeps to its budget."""
    timeout = min(args.setting_timeout, seconds_left)
    if timeout < 30:
        return {"error": "skipped: the run's time budget (--budget) was spent"}
    command = [sys.executable, __file__, "--child", name, "--steps", str(args.steps)]
    command += ["--warmup", str(args.warmup)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"stopped after {timeout:.0f} s (--setting-timeout / --budget)"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("bench-json=")]
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1][:300]}
    return json.loads(lines[-1].removeprefix("bench-json="))


def embed_rows(args: argparse.Namespace, work: Path) -> dict[str, dict[str, float]]:
    """(a) model only, (b) embed end to end, (c) the official one-image path (fp32), per precision."""
    from raddino.data.preprocess import PreprocessConfig
    from raddino.models import Encoder

    device = torch.device("cpu" if args.tiny else "cuda")
    count, side = (4, 64) if args.tiny else (args.images, 1024)
    paths = embed_paths.make_images(work / "images", count, side)
    model_dir = work / "model"
    if args.tiny:
        encoder = Encoder.from_preset("test", seed=0, layerscale_value=1.0)
        preprocess = PreprocessConfig(shortest_edge=56, crop_size=(56, 56))
    else:
        encoder, preprocess = Encoder.from_preset("vitb14", seed=0, layerscale_value=1.0), PreprocessConfig()
    encoder.save_pretrained(model_dir, preprocess=preprocess)
    batch_size, workers = (2, 0) if args.tiny else (64, None)
    reference_rate, reference_cls = embed_paths.reference(model_dir, paths, device)
    rows: dict[str, dict[str, float]] = {}
    for precision in ("fp32",) if args.tiny else ("fp16", "bf16"):
        model_rate = embed_paths.model_only(model_dir, paths, batch_size, device, precision)
        embed_rate, embed_cls = embed_paths.end_to_end(
            model_dir,
            work / "images",
            work / f"emb-{precision}.parquet",
            batch_size,
            device.type,
            precision,
            workers,
        )
        rows[precision] = {
            "model_only": model_rate,
            "embed": embed_rate,
            "reference_fp32": reference_rate,
            "embed_vs_reference": embed_rate / reference_rate,
            **embed_paths.centred_cosines(reference_cls, embed_cls),
        }
    return rows


def matmul_peak(tiny: bool) -> float:
    """The device's measured dense matmul FLOP/s: bf16 8192² on a GPU, fp32 256² when tiny."""
    if tiny:
        return embed_paths.matmul_peak(torch.device("cpu"), torch.float32, side=256, repeats=3)
    return embed_paths.matmul_peak(torch.device("cuda"), torch.bfloat16)


def render(results: dict[str, Any]) -> str:
    """BENCHMARKS.md's ``gpu`` section."""
    peak = results["matmul_peak_flops"]
    lines = [
        f"Device: {results['device']}; measured matmul peak {peak / 1e12:.1f} TFLOP/s "
        f"({'fp32 256², tiny CPU mode' if results['tiny'] else 'bf16, 8192²'}). Pre-training step: "
        f"{results['warmup']} warm-up + {results['steps']} timed steps per setting"
        f"{' (in one process)' if results['tiny'] else ', each setting in its own process'}; the median "
        "step. FLOPs from the architecture (attention products included). "
        f"The run took {results['seconds']:.0f} s.",
        "",
        "| setting | images/s | step (s) | TFLOP/step | achieved TFLOP/s | % of matmul peak "
        "| peak memory (GiB) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in results["pretrain"].items():
        if "error" in row:
            lines.append(f"| {name} | failed: {row['error']} | | | | | |")
            continue
        achieved = row["tflop_per_step"] * 1e12 / row["step_s"]
        lines.append(
            f"| {name} | {row['images_per_s']:.1f} | {row['step_s']:.3f} | {row['tflop_per_step']:.3g} | "
            f"{achieved / 1e12:.3g} | {achieved / peak:.1%} | {row['memory_gib']:.1f} |"
        )
    lines += [
        "",
        "| embed, precision | model only (img/s) | end to end (img/s) "
        "| official one-image path, fp32 (img/s) | end to end / official "
        "| CLS agreement (mean-centred cosine, min) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for precision, row in results["embed"].items():
        lines.append(
            f"| {precision} | {row['model_only']:.1f} | {row['embed']:.1f} | {row['reference_fp32']:.1f} | "
            f"{row['embed_vs_reference']:.1f}× | {row['same_image_min']:.4f} |"
        )
    if results["tiny"]:
        lines += [
            "",
            "**The GPU rows are unmeasured**: this section was written by the tiny CPU mode "
            "(`--tiny`: test-sized models, tiny crops); run `bash benchmarks/gpu.sh` on a CUDA machine.",
        ]
    return "\n".join(lines)


def _embed(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as scratch:
        return embed_rows(args, Path(scratch))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiny", action="store_true", help="CPU, test-sized models, in this process")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per setting (default 5; tiny 1)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 2; tiny 1)")
    parser.add_argument("--images", type=int, default=512, help="embed: images per path on a GPU")
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=DEFAULT_SETTINGS)
    parser.add_argument("--setting-timeout", type=int, default=180, help="seconds per setting's process")
    parser.add_argument("--budget", type=int, default=450, help="seconds for all settings and embed")
    parser.add_argument("--json", type=Path, default=None, help="write every number here")
    parser.add_argument("--benchmarks-file", type=Path, default=BENCHMARKS_FILE)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.steps = args.steps or (1 if args.tiny else 5)
    args.warmup = args.warmup or (1 if args.tiny else 2)
    if args.child:
        print("bench-json=" + json.dumps(run_setting(args.child, args.steps, args.warmup, tiny=False)))
        return
    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit("benchmarks/gpu.py: no CUDA device here (use --tiny for the CPU check)")
    if args.tiny:
        torch.set_num_threads(1)
    began = time.perf_counter()
    results: dict[str, Any] = {
        "device": "CPU (tiny mode)" if args.tiny else torch.cuda.get_device_name(0),
        "tiny": args.tiny,
        "steps": args.steps,
        "warmup": args.warmup,
        "matmul_peak_flops": matmul_peak(args.tiny),
        "pretrain": {},
    }
    # Uncompiled settings, then embed, then the compiled ones (the slowest to start) within the budget.
    for name in sorted(args.settings, key=lambda name: SETTINGS[name][2]):
        if SETTINGS[name][2] and "embed" not in results:
            results["embed"] = _embed(args)
        if args.tiny:
            run = run_setting(name, args.steps, args.warmup, tiny=True)
        else:
            run = spawn_setting(name, args, args.budget - (time.perf_counter() - began))
        results["pretrain"][name] = run
        print(f"{name}: {run}", flush=True)
    if "embed" not in results:
        results["embed"] = _embed(args)
    results["seconds"] = time.perf_counter() - began
    if args.json:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    body = render(results)
    print(body)
    write_section("gpu", body, path=args.benchmarks_file)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
