"""Frozen probe vs last-k vs LoRA vs full fine-tuning on phantoms, into BENCHMARKS.md section "finetune".

The encoder is the CPU demo's pre-trained one (``raddino demo`` / ``benchmarks/demo.py`` leave it in
``/tmp/demo_full/models/pretrained``: a 4-block, 128-wide ViT/14 pre-trained on 800 phantoms of seed 0);
the labelled set is phantoms of another seed (other subjects), split by subject as the manifest says.
Each (mode, seed) is its own ``raddino finetune`` process, so the peak resident memory of a mode is its
own. Reported: test AUPRC per finding and macro (mean over seeds, with the mean of the seeds' 95%
bootstrap intervals), the margin of each mode over the frozen probe with the seeds where it is ahead,
seconds and peak memory per epoch.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/finetune.py
    python benchmarks/finetune.py --existing --wall 14.1   # tables from the runs already in --out
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import write_section

FINDINGS = (
    "cardiomegaly", "pleural_effusion", "lung_opacity", "nodule", "pneumothorax", "support_device",
    "fibrosis",
)  # fmt: skip
MODES = ("frozen", "last-k", "lora", "full")


def _phantoms(folder: Path, images: int, size: int) -> Path:
    from raddino.data.phantoms import PhantomSettings, generate_phantoms

    settings = dataclasses.replace(PhantomSettings(), subtle_fraction=0.0)  # as the demo's pre-training set
    return generate_phantoms(folder, n=images, size=size, seed=7, workers=1, masks=False, progress=False,
                             settings=settings)  # fmt: skip


def _run(manifest: Path, encoder: Path, out: Path, mode: str, seed: int, args: argparse.Namespace) -> float:
    raddino = str(Path(sys.executable).with_name("raddino"))
    command = [raddino, "finetune", str(manifest), "--model", str(encoder), "--out", str(out),
               "--mode", mode, "--seed", str(seed), "--epochs", str(args.epochs), "--batch-size", "32",
               "--head-lr-mult", str(args.head_lr_mult), "--last-k", str(args.last_k), "--device", "cpu",
               "--set", "progress=false", "--set", f"bootstrap={args.bootstrap}",
               *(word for name in FINDINGS for word in ("--labels", name))]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    started = time.perf_counter()
    subprocess.run(["nice", "-n", "10", *command], check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _entries(out: Path, seeds: list[int]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for mode in MODES:
        files = [out / "runs" / f"{mode}-seed{seed}" / mode / "finetune.json" for seed in seeds]
        found[mode] = [json.loads(path.read_text()) for path in files if path.is_file()]
    return found


def _value(entry: dict[str, Any], key: str, part: str = "value") -> float:
    number = entry["test"][key][part]
    return float("nan") if number is None else float(number)


def _cell(entries: list[dict[str, Any]], key: str) -> str:
    values = [_value(e, key) for e in entries]
    if not np.isfinite(values).any():
        return "— (no positive in the test split)"
    low = np.nanmean([_value(e, key, "low") for e in entries])
    high = np.nanmean([_value(e, key, "high") for e in entries])
    return f"{np.nanmean(values):.3f} ± {np.nanstd(values):.3f} [{low:.2f}, {high:.2f}]"


def _margin(entries: list[dict[str, Any]], frozen: list[dict[str, Any]], key: str) -> str:
    pairs = [(_value(e, key), _value(f, key)) for e, f in zip(entries, frozen, strict=True)]
    differences = [a - b for a, b in pairs if np.isfinite(a) and np.isfinite(b)]
    ahead = sum(difference > 0 for difference in differences)
    return f"{np.mean(differences):+.3f} ({ahead}/{len(differences)})" if differences else "—"


def body(out: Path, args: argparse.Namespace, wall: float | None) -> str:
    found = _entries(out, args.seeds)
    modes = [mode for mode in MODES if found[mode]]
    meta = json.loads((out / "runs" / f"{modes[0]}-seed{args.seeds[0]}" / "finetune.json").read_text())
    splits = meta["splits"]
    manifest = out / "phantoms" / "manifest.csv"
    import csv

    with open(manifest, newline="") as handle:
        test = [row for row in csv.DictReader(handle) if row["split"] == "test"]
    prevalence = {name: np.mean([row[name] == "1" for row in test]) for name in FINDINGS}
    wall_text = (
        f"{wall / 60:.1f} min wall time for all runs" if wall is not None else "wall time not measured"
    )
    if args.existing:
        wall_text += " (runs made by `python benchmarks/finetune.py` with the same options, read back here)"
    lines = [
        f"Encoder: the CPU demo's pre-trained 4-block, 128-wide ViT/14 at 112 px ({args.encoder}). Data: "
        f"{args.images} phantoms of seed 7 at {args.size} px (other subjects than the demo's seed-0 "
        f"pre-training set; no subtle findings, as there), splits by subject {splits['train']}/"
        f"{splits['val']}/{splits['test']} images; {len(args.seeds)} seeds (head initialisation, data order, "
        f"augmentations) per mode, each run its own process. Recipe: {args.epochs} epochs, batch 32, AdamW, "
        f"lr 1e-4 at the top block with layer-wise decay 0.75, head lr ×{args.head_lr_mult:g} (so 1e-2 for "
        f"the head, also in the frozen probe), 1 warm-up epoch then cosine, weight decay 0.05, drop-path 0.1 "
        f"in trained blocks, crop / rotation / brightness / contrast augmentation without flips; "
        f"best epoch on validation macro AUPRC. last-k: the last {args.last_k} of 4 blocks; LoRA: rank 8, "
        f"alpha 16 on q/k/v/o. {wall_text}.",
        "",
        f"Test AUPRC: mean ± std over seeds [mean of the seeds' 95% bootstrap intervals, "
        f"{args.bootstrap} resamples of the {splits['test']} test images]. Prevalence in the test split "
        "(a useless model's AUPRC): "
        + ", ".join(f"{name} {value:.2f}" for name, value in prevalence.items())
        + ".",
        "",
        "| finding | " + " | ".join(modes) + " |",
        "|---|" + "---|" * len(modes),
    ]
    for key in ("macro_auprc", *(f"auprc/{name}" for name in FINDINGS), "macro_auroc"):
        label = f"**{key}**" if key.startswith("macro") else key.removeprefix("auprc/")
        lines.append(f"| {label} | " + " | ".join(_cell(found[mode], key) for mode in modes) + " |")
    others = [mode for mode in modes if mode != "frozen"]
    if "frozen" in modes and others:
        lines += [
            "",
            "Margin over the frozen probe (mean of the paired differences per seed; seeds ahead):",
            "",
            "| finding | " + " | ".join(others) + " |",
            "|---|" + "---|" * len(others),
        ]
        for key in ("macro_auprc", *(f"auprc/{name}" for name in FINDINGS)):
            label = key.removeprefix("auprc/")
            cells = [_margin(found[mode], found["frozen"], key) for mode in others]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| mode | trained parameters | s / epoch | peak RSS (MiB) | peak before training (MiB) |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode in modes:
        entries = found[mode]
        lines.append(
            f"| {mode} | {entries[0]['trainable_parameters']:,} of {entries[0]['total_parameters']:,} | "
            f"{np.mean([e['seconds_per_epoch'] for e in entries]):.1f} | "
            f"{np.mean([e['peak_rss_mib'] for e in entries]):.0f} | "
            f"{np.mean([e['peak_before_training_mib'] for e in entries]):.0f} |"
        )
    lines += [
        "",
        "Peak RSS is the whole process's (Python, torch, the preprocessed images); the CPU is shared with "
        "other jobs, so seconds vary between runs and only their ratios within this run compare.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/finetune_bench"))
    parser.add_argument("--encoder", type=Path, default=Path("/tmp/demo_full/models/pretrained"))
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--last-k", type=int, default=2)
    parser.add_argument("--head-lr-mult", type=float, default=100.0)
    parser.add_argument("--bootstrap", type=int, default=500)
    parser.add_argument("--existing", action="store_true", help="Tables from finished runs; train nothing.")
    parser.add_argument("--no-write", action="store_true", help="Print the section; leave BENCHMARKS.md.")
    parser.add_argument(
        "--wall", type=float, help="With --existing: the runs' wall time in minutes, as measured."
    )
    args = parser.parse_args()
    if not (args.encoder / "config.json").is_file():
        raise SystemExit(
            f"{args.encoder}: no encoder; run python benchmarks/demo.py first (it pre-trains one)"
        )
    wall = args.wall * 60 if args.existing and args.wall else None
    if not args.existing:
        manifest = _phantoms(args.out / "phantoms", args.images, args.size)
        wall = 0.0
        for seed in args.seeds:
            for mode in MODES:
                seconds = _run(
                    manifest, args.encoder, args.out / "runs" / f"{mode}-seed{seed}", mode, seed, args
                )
                print(f"{mode} seed {seed}: {seconds:.0f} s", flush=True)
                wall += seconds
    text = body(args.out, args, wall)
    print(text)
    if not args.no_write:
        write_section("finetune", text)


if __name__ == "__main__":
    main()
