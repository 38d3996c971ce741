"""Wall time and numbers of ``raddino demo`` over several pre-training seeds, into BENCHMARKS.md.

Runs ``raddino demo --out OUT --seeds N`` (default 3; re-running with ``--resume`` continues an interrupted
run, its finished steps skipped), or reads a finished one with ``--existing``, then writes section "demo":
wall time, each step's time, and per headline metric the encoders' means over the seeds with their range,
the pre-trained encoder's margin over random init per seed, its spread and the verdict of
:mod:`raddino.demo.robust` (the rule the demo page applies).

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/demo.py --out /tmp/demo_seeds
    python benchmarks/demo.py --out /tmp/demo_seeds --existing   # a demo that already ran
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import write_section
from raddino.demo.page import HEADLINE
from raddino.demo.robust import SeedMargin, headline

ENCODER_FOLDERS = {"pre-trained": "pretrained", "random init": "random", "iBOT off": "ibot_off"}


def _eval_root(out: Path, seed: int, first: int) -> Path:
    return out / "eval" if seed == first else out / "seeds" / f"seed{seed}" / "eval"


def _mean(out: Path, root: Path, encoder: str, task: str, column: str) -> float | None:
    path = root / ENCODER_FOLDERS[encoder] / task / f"{task}.json"
    if not path.is_file():
        return None
    value = json.loads(path.read_text(encoding="utf-8"))["summary"].get(column) or {}
    return None if value.get("mean") is None else float(value["mean"])


def _over_seeds(values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "—"
    mean = sum(present) / len(present)
    if len(present) == 1:
        return f"{mean:.3f}"
    return f"{mean:.3f} ({min(present):.3f}–{max(present):.3f})"


def _margin_rows(out: Path, summary: dict) -> list[str]:
    seeds, first = summary["seeds"], summary["seeds"][0]
    encoders = ["pre-trained", "random init"] + (["iBOT off"] if summary["plan"]["ablation"] else [])
    rows = []
    for task, columns in summary["seed_margins"].items():
        for column, margin in columns.items():
            if column not in HEADLINE:
                continue
            cells = [
                _over_seeds([_mean(out, _eval_root(out, s, first), e, task, column) for s in seeds])
                for e in encoders
            ]
            per_seed = " / ".join(f"{v:+.3f}" for v in margin["values"])
            spread = "—" if margin["spread"] is None else f"{margin['spread']:.3f}"
            rows.append(
                f"| {task} {column} | {' | '.join(cells)} | {margin['mean']:+.3f} | {per_seed} | {spread} "
                f"| {margin['verdict']} |"
            )
    header = "| metric | " + " | ".join(encoders) + " | margin (mean) | margin per seed | spread | verdict |"
    return [header, "|---|" + "---:|" * (len(encoders) + 3) + "---|", *rows]


def _margins(summary: dict) -> dict[str, dict[str, SeedMargin]]:
    return {
        task: {
            column: SeedMargin(tuple(m["values"]), m["mean"], m["spread"], m["verdict"])
            for column, m in columns.items()
        }
        for task, columns in summary["seed_margins"].items()
    }


def body(out: Path, wall: float | None) -> str:
    """The section text for a finished demo folder ``out``."""
    summary = json.loads((out / "demo.json").read_text(encoding="utf-8"))
    plan, seeds = summary["plan"], summary["seeds"]
    pretrain = plan["pretrain"]
    arch = pretrain.get("student.arch_overrides", {})
    iterations = pretrain["optim.epochs"] * pretrain["train.OFFICIAL_EPOCH_LENGTH"]
    wall_text = f"{wall / 60:.1f} min wall time" if wall is not None else "wall time not measured here"
    ablation = "; iBOT off (the ablation) on the first seed only" if plan["ablation"] else ""
    lines = [
        f"`raddino demo --seeds {len(seeds)}`: {plan['images']} phantoms at {plan['size']} px, per "
        f"pre-training seed ({', '.join(map(str, seeds))}) {iterations} iterations of a "
        f"{arch.get('num_hidden_layers', '?')}-block, "
        f"{arch.get('hidden_size', '?')}-wide ViT/14 (batch "
        f"{pretrain['train.batch_size_per_gpu']}) and its own random init, each evaluated by a linear probe "
        f"({len(plan['probe_seeds'])} probe seeds), kNN, metadata ({plan['metadata_folds']} folds) and a "
        f"linear segmentation head{ablation}. **{wall_text}**, {summary['total_seconds']:.0f} s inside "
        "the steps.",
        "",
        f"Headline: {headline(_margins(summary), HEADLINE, len(seeds))}. Encoder columns: mean over the "
        "seeds (min–max); margin: pre-trained − random init per seed, each against its own initialisation.",
        "",
        *_margin_rows(out, summary),
    ]
    scores = summary["report_generation"]
    lines += [
        "",
        "Report generation (first seed, ×100, median): "
        + "; ".join(
            f"{name} ROUGE-L {s['ROUGE-L']:.1f}, BLEU-4 {s['BLEU-4']:.1f}" for name, s in scores.items()
        )
        + ".",
    ]
    steps = sorted(summary["seconds"].items(), key=lambda item: -item[1])
    lines += ["", "Slowest steps: " + ", ".join(f"{n} {s:.0f} s" for n, s in steps[:6]) + "."]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/demo_seeds"))
    parser.add_argument(
        "--seeds", type=int, default=3, help="Pre-training seeds (at least 3 for the README)."
    )
    parser.add_argument("--existing", action="store_true", help="Read a finished demo; do not run it.")
    parser.add_argument("--resume", action="store_true", help="Continue an interrupted run in --out.")
    parser.add_argument("--no-ablation", action="store_true", help="Skip the iBOT-off run.")
    args = parser.parse_args()
    wall = None
    if not args.existing:
        if args.out.exists() and not args.resume:
            shutil.rmtree(args.out)  # a fresh run: resumed steps would not be timed
        command = [str(Path(sys.executable).with_name("raddino")), "demo", "--out", str(args.out)]
        command += ["--seeds", str(args.seeds)] + (["--no-ablation"] if args.no_ablation else [])
        started = time.perf_counter()
        subprocess.run(command, check=True)
        if not args.resume:
            wall = time.perf_counter() - started
            (args.out / "benchmark_wall.json").write_text(json.dumps({"seconds": round(wall, 1)}) + "\n")
    elif (args.out / "benchmark_wall.json").is_file():  # measured when this benchmark ran the demo
        wall = json.loads((args.out / "benchmark_wall.json").read_text(encoding="utf-8"))["seconds"]
    text = body(args.out, wall)
    print(text)
    write_section("demo", text)


if __name__ == "__main__":
    main()
