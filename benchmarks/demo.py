"""Wall time and numbers of the full ``raddino demo`` (the README's ``make demo``), into BENCHMARKS.md.

Runs ``raddino demo --out OUT`` in a fresh folder (or reads a finished one with ``--existing``), then
writes section "demo": total wall time, each step's time, and the headline metrics of the pre-trained
encoder against random init (and iBOT off when the demo ran its ablation).

    python benchmarks/demo.py --out /tmp/demo_full
    python benchmarks/demo.py --out /tmp/demo_full --existing   # a demo that already ran
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

HEADLINE = (
    ("probe", "macro_auprc"),
    ("probe", "macro_auroc"),
    ("knn", "macro_auprc"),
    ("knn", "precision_at_k"),
    ("metadata", "accuracy/sex"),
    ("metadata", "accuracy/age"),
    ("metadata", "accuracy/weight"),
    ("segment", "dice/linear"),
)


def _mean(out: Path, folder: str, task: str, column: str) -> float:
    summary = json.loads((out / "eval" / folder / task / f"{task}.json").read_text(encoding="utf-8"))[
        "summary"
    ]
    return float(summary[column]["mean"])


def body(out: Path, wall: float | None) -> str:
    """The section text for a finished demo folder ``out``."""
    summary = json.loads((out / "demo.json").read_text(encoding="utf-8"))
    plan = summary["plan"]
    folders = {"pre-trained": "pretrained", "random init": "random"}
    if plan["ablation"]:
        folders["iBOT off"] = "ibot_off"
    pretrain = plan["pretrain"]
    iterations = pretrain["optim.epochs"] * pretrain["train.OFFICIAL_EPOCH_LENGTH"]
    wall_text = f"{wall / 60:.1f} min wall time" if wall is not None else "wall time not measured here"
    lines = [
        f"`raddino demo` (the README's `make demo`): {plan['images']} phantoms at {plan['size']} px "
        f"({plan.get('subtle_fraction', 0.5):.0%} of positive findings subtle), "
        f"{iterations} pre-training iterations of a "
        f"{pretrain['student.arch_overrides'].get('num_hidden_layers', '?')}-block, "
        f"{pretrain['student.arch_overrides'].get('hidden_size', '?')}-wide ViT/14 (batch "
        f"{pretrain['train.batch_size_per_gpu']}), export, and per encoder a linear probe "
        f"({len(plan['probe_seeds'])} seeds), kNN, metadata ({plan['metadata_folds']} folds), a linear "
        f"segmentation head ({plan['segment_epochs']} epochs) and a report generator "
        f"({plan['report_epochs']} epochs). **{wall_text}**, "
        f"{summary['total_seconds']:.0f} s inside the steps.",
        "",
        "| metric | " + " | ".join(folders) + " | pre-trained − random init |",
        "|---|" + "---:|" * (len(folders) + 1),
    ]
    for task, column in HEADLINE:
        values = [_mean(out, folder, task, column) for folder in folders.values()]
        lines.append(
            f"| {task} {column} | "
            + " | ".join(f"{v:.3f}" for v in values)
            + f" | {values[0] - values[1]:+.3f} |"
        )
    scores = summary["report_generation"]
    for metric in ("ROUGE-L", "BLEU-4"):
        values = [scores[name][metric] for name in folders]
        lines.append(
            f"| report {metric} (×100, median) | "
            + " | ".join(f"{v:.1f}" for v in values)
            + f" | {values[0] - values[1]:+.1f} |"
        )
    steps = sorted(summary["seconds"].items(), key=lambda item: -item[1])
    lines += [
        "",
        "Slowest steps: " + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in steps[:6]) + ".",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/demo_full"))
    parser.add_argument("--existing", action="store_true", help="Read a finished demo; do not run it.")
    parser.add_argument("--ablation", action="store_true", help="Run the demo with --ablation.")
    args = parser.parse_args()
    wall = None
    if not args.existing:
        if args.out.exists():
            shutil.rmtree(args.out)  # a fresh run: resumed steps would not be timed
        command = [str(Path(sys.executable).with_name("raddino")), "demo", "--out", str(args.out)]
        started = time.perf_counter()
        subprocess.run(command + (["--ablation"] if args.ablation else []), check=True)
        wall = time.perf_counter() - started
    text = body(args.out, wall)
    print(text)
    write_section("demo", text)


if __name__ == "__main__":
    main()
