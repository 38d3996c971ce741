"""Does the report generator read the image? A tiny LM with image tokens against the same LM without them.

On synthetic phantoms (frontal views, findings drawn from their labels, a "Findings" paragraph per study)
this script:

1. embeds every image once with a frozen, randomly initialised test-sized encoder (no weights are
   downloaded; random ViT features still carry where the bright and dark structures are);
2. trains a tokenizer on the training split's reports and a 2-layer Llama from scratch, twice, with the
   same seed and settings: with the projected image tokens, and with zeros in their place
   (``zero_images``, the no-image baseline that can only learn the reports' statistics); each run keeps
   the epoch of lowest loss on the validation split and stops after ``--patience`` epochs without a lower
   one (a run of fixed length memorises the training reports' random phrasing and writes worse text);
3. greedy-decodes the test split and scores ROUGE-L and BLEU-4 (median [95% CI], 500 bootstraps) and a
   label-level F1: findings parsed from the generated text by the phantom vocabulary, against the labels.

The parser's own F1 on the reference reports is reported as well (it should be 100).

    python benchmarks/report_generation.py                    # CPU, about 10 minutes on two cores
    python benchmarks/report_generation.py --studies 6000 --epochs 40 --device cuda
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import write_section

FINDINGS = (
    "cardiomegaly",
    "pleural_effusion",
    "lung_opacity",
    "nodule",
    "pneumothorax",
    "support_device",
    "fibrosis",
)
# Phrases of src/raddino/data/phantoms/reports.py that assert each finding; a sentence with "no" negates.
PATTERNS = {
    "cardiomegaly": r"cardiomegaly|enlarged",
    "pleural_effusion": r"effusion",
    "lung_opacity": r"patchy opacity|airspace opacity|consolidation",
    "nodule": r"nodul|mass-like",
    "pneumothorax": r"pneumothorax",
    "support_device": r"chest tube|leads",
    "fibrosis": r"reticula|fibrosis|interstitial",
}


def parse_findings(report: str) -> dict[str, int]:
    """Findings a phantom report asserts (1) or not (0), sentence by sentence, negations skipped."""
    found = dict.fromkeys(FINDINGS, 0)
    for sentence in re.split(r"(?<=\.)\s+", report.lower()):
        if re.search(r"\bno\b", sentence):
            continue
        for finding, pattern in PATTERNS.items():
            if re.search(pattern, sentence):
                found[finding] = 1
    return found


def label_f1(predicted: list[dict[str, int]], truth: list[dict[str, int]]) -> tuple[float, dict[str, float]]:
    """Macro F1 ×100 over the findings present in the test set, and each finding's F1."""
    from sklearn.metrics import f1_score

    per_finding = {}
    for finding in FINDINGS:
        y_true = [row[finding] for row in truth]
        if sum(y_true) == 0:
            continue
        per_finding[finding] = 100.0 * f1_score(y_true, [row[finding] for row in predicted], zero_division=0)
    return float(np.mean(list(per_finding.values()))), per_finding


def paired_differences(image_csv: Path, zeros_csv: Path, samples: int, seed: int) -> dict[str, str]:
    """ROUGE-L and BLEU-4 of the image run minus the zeros run, median [95% CI] over the same bootstrap
    resamples of the test studies (paired: each resample scores both runs on the same studies)."""
    from raddino.reportgen.score import bleu4, bootstrap, read_generated, rouge_l

    references, with_image = read_generated(image_csv)
    references_zeros, with_zeros = read_generated(zeros_csv)
    if references != references_zeros:
        raise ValueError(f"{image_csv} and {zeros_csv} hold different studies")
    rouge_image, rouge_zeros = rouge_l(references, with_image), rouge_l(references, with_zeros)
    pick = lambda texts, rows: [texts[i] for i in rows]  # noqa: E731
    statistics = {
        "ROUGE-L": lambda rows: float(rouge_image[rows].mean() - rouge_zeros[rows].mean()),
        "BLEU-4": lambda rows: (
            bleu4(pick(references, rows), pick(with_image, rows))
            - bleu4(pick(references, rows), pick(with_zeros, rows))
        ),
    }
    found = {}
    for name, statistic in statistics.items():
        median, low, high = bootstrap(statistic, len(references), samples, seed)
        found[name] = f"{median:+.1f} [{low:+.1f}, {high:+.1f}]"
    return found


def make_data(
    root: Path, studies: int, size: int, hidden: int, subtle_fraction: float, seed: int
) -> tuple[Path, Path, Path]:
    """Phantoms, the frozen encoder folder and a tokenizer + tiny LM folder."""
    from raddino.data.phantoms import PhantomSettings, generate_phantoms
    from raddino.data.preprocess import PreprocessConfig
    from raddino.models import Encoder
    from raddino.reportgen import build_causal_lm, train_report_tokenizer

    # phantoms are drawn at 64 px at least and resized to the encoder's ``size`` by its preprocessing
    manifest = generate_phantoms(
        root / "phantoms",
        n=studies,
        size=max(size, 64),
        seed=seed,
        workers=1,
        masks=False,
        progress=False,
        settings=PhantomSettings(lateral_fraction=0.0, subtle_fraction=subtle_fraction),
    )
    encoder_dir = root / "encoder"
    Encoder.from_preset("test", seed=seed).save_pretrained(
        encoder_dir, preprocess=PreprocessConfig(shortest_edge=size, crop_size=(size, size))
    )
    with open(manifest, newline="", encoding="utf-8") as handle:
        train_reports = [row["report"] for row in csv.DictReader(handle) if row["split"] == "train"]
    tokenizer = train_report_tokenizer(train_reports, vocab_size=600)
    lm_dir = root / "lm"
    build_causal_lm(tokenizer, lm_dir, hidden_size=hidden, num_layers=2, num_heads=4, seed=seed)
    return manifest, encoder_dir, lm_dir


def run(args: argparse.Namespace, root: Path) -> str:
    from raddino.features.cache import FeatureConfig
    from raddino.reportgen import (
        ReportGenerateConfig,
        ReportTrainConfig,
        StudySelection,
        generate_reports,
        markdown_table,
        score_reports,
        train_report_model,
    )

    manifest, encoder_dir, lm_dir = make_data(
        root, args.studies, args.size, args.hidden, args.subtle_fraction, args.seed
    )
    with open(manifest, newline="", encoding="utf-8") as handle:
        labels = {row["id"]: {f: int(row[f]) for f in FINDINGS} for row in csv.DictReader(handle)}
    features = FeatureConfig(
        model=str(encoder_dir), cache_dir=str(root / "cache"), device=args.device, num_workers=0
    )
    results, rows, timings = [], [], {}
    for name, zero in (("with image tokens", False), ("image tokens → zeros", True)):
        out = root / ("blind" if zero else "image")
        started = time.perf_counter()
        summary = train_report_model(
            ReportTrainConfig(
                input=str(manifest),
                language_model=str(lm_dir),
                out=str(out),
                features=features,
                zero_images=zero,
                learning_rate=args.lr,
                epochs=args.epochs,
                batch_size=args.batch_size,
                micro_batch_size=args.batch_size,
                device=args.device,
                checkpoint_every=10_000,
                seed=args.seed,
                val_split=args.val_split,
                early_stopping_patience=args.patience if args.val_split else 0,
                projector_dropout=args.projector_dropout,
            )
        )
        generated = root / f"{out.name}.csv"
        generate_reports(
            ReportGenerateConfig(
                model=str(out),
                input=str(manifest),
                out=str(generated),
                features=features,
                studies=StudySelection(split="test"),
                batch_size=64,
                device=args.device,
            )
        )
        timings[name] = time.perf_counter() - started
        scores = score_reports(generated, name=name, samples=500, seed=args.seed, optional=False)
        with open(generated, newline="", encoding="utf-8") as handle:
            table = list(csv.DictReader(handle))
        truth = [labels[row["id"]] for row in table]
        macro, per_finding = label_f1([parse_findings(row["generated"]) for row in table], truth)
        reference_macro, _ = label_f1([parse_findings(row["reference"]) for row in table], truth)
        results.append(scores)
        rows.append(
            (name, summary, macro, per_finding, reference_macro, table[0]["generated"], table[0]["reference"])
        )
        print(f"{name}: {summary}, label F1 {macro:.1f}, {timings[name]:.0f} s", flush=True)

    differences = paired_differences(root / "image.csv", root / "blind.csv", 500, args.seed)
    findings = list(rows[0][3])
    lines = [
        f"Phantoms: {args.studies} frontal studies drawn at {max(args.size, 64)} px, encoded at "
        f"{args.size} px ({results[0].count} test studies, "
        f"{args.subtle_fraction:.0%} of positive findings subtle); "
        f"frozen random-init `test` encoder (2 blocks, 32 wide, {(args.size // 14) ** 2} patch tokens); "
        f"tokenizer (byte-level BPE, 600) and a 2-layer {args.hidden}-wide Llama trained from scratch with "
        f"the projector; up to {args.epochs} epochs, batch {args.batch_size}, lr {args.lr:g}, cosine with 3% "
        "warm-up (a from-scratch LM needs more than LLaVA's 2e-5 for a pre-trained one)"
        + (
            f", model of the epoch of lowest `{args.val_split}` loss, early stopping after {args.patience} "
            "epochs without a lower one"
            if args.val_split
            else ", last epoch kept"
        )
        + (f", projector dropout {args.projector_dropout:g}" if args.projector_dropout else "")
        + "; greedy decoding up to 150 new tokens. Both runs use identical settings but the image tokens.",
        "",
        markdown_table(results).split("\n\nMedian")[0],
        "",
        "Paired difference, with image tokens − zeros (same 500 resamples of the test studies): "
        + ", ".join(f"{name} **{value}**" for name, value in differences.items())
        + ".",
        "",
        "| Run | epochs run | kept epoch | val loss | last train loss | label macro-F1 | "
        + " | ".join(findings)
        + " | wall time |",
        "|---|---:|---:|---:|---:|---:|" + "---:|" * len(findings) + "---:|",
    ]
    for name, summary, macro, per_finding, _, _, _ in rows:
        cells = " | ".join(f"{per_finding[f]:.1f}" for f in findings)
        epochs_run = summary.steps / (summary.total_steps / args.epochs)
        kept = summary.best_epoch if summary.best_epoch is not None else "last"
        val = f"{summary.best_val_loss:.4f}" if summary.best_val_loss is not None else "–"
        lines.append(
            f"| {name} | {epochs_run:.0f} | {kept} | {val} | {summary.final_loss:.3f} | {macro:.1f} "
            f"| {cells} | {timings[name]:.0f} s |"
        )
    lines += [
        "",
        f'Label F1: findings parsed from the text ({", ".join(FINDINGS)}; a sentence with "no" negates), '
        f"macro over the findings present in the test split; the parser scores {rows[0][4]:.1f} on the "
        "reference reports. ROUGE-L / BLEU-4: median [95% CI] over 500 bootstrap resamples, ×100.",
        "",
        f"Example (first test study), reference: _{rows[0][6]}_",
        "",
        f"With image tokens: _{rows[0][5]}_",
        "",
        f"Zeros: _{rows[1][5]}_",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--studies", type=int, default=3000)
    parser.add_argument("--size", type=int, default=56)
    parser.add_argument("--hidden", type=int, default=64, help="Width of the tiny Llama.")
    parser.add_argument("--epochs", type=int, default=30, help="Most epochs (early stopping may end sooner).")
    parser.add_argument("--val-split", default="val", help="Split that picks the epoch ('' keeps the last).")
    parser.add_argument("--patience", type=int, default=5, help="Epochs without a lower val loss to stop.")
    parser.add_argument("--projector-dropout", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--subtle-fraction", type=float, default=0.0, help="Share of subtle findings.")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: a shared 2-core box slows down with more)."
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-write", action="store_true", help="Print instead of writing BENCHMARKS.md.")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as folder:
        body = run(args, Path(folder))
    print(body)
    if not args.no_write:
        write_section("report_generation", "## Report generation: image tokens vs none\n\n" + body)


if __name__ == "__main__":
    main()
