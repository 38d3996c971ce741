"""DINOv3-style pre-training on phantoms: random init vs the recipe with and without Gram anchoring.

The sibling of ``benchmarks/pretrain_learning.py`` (whose embedding, probe, kNN and paired-bootstrap
functions it imports) for ``configs/demo_cpu_dinov3.yaml``. Per seed, from one random initialisation
(checked equal across the variants), on the images of the phantoms' ``train`` split only:

- random init: the untrained teacher (step 0 of both runs);
- the DINOv3-style recipe with Gram anchoring (the demo's ``gram:`` block, its iterations scaled to the
  run: the Gram teacher loaded and refreshed at the same fractions of the run as in the 900-iteration demo);
- the same with ``gram.use_loss=false``.

The teacher is exported every quarter of the run (``train.export_period``). At each snapshot the frozen
teacher is scored on the held-out subjects:

- segmentation Dice: a linear head (BatchNorm + 1×1 conv on the last block's patch tokens,
  ``raddino segment``'s ``linear`` head and its trainer: Dice + BCE, Adam, cosine, best validation loss)
  trained on the ``train`` split's masks, the epoch picked on ``val``, Dice on ``test`` (mean over images
  of the mean over structures); DINOv3's claim (§4.2) is that Gram anchoring stops dense features from
  degrading late in training, so the Dice is reported per snapshot;
- at the end of the run, linear-probe AUPRC (macro and per finding) of CLS and CLS ⊕ patch-mean on
  ``val`` + ``test`` with the paired bootstrap interval of the difference to random init, and kNN.

    python benchmarks/pretrain_learning_dinov3.py [--iterations 400] [--images 600] [--seeds 0 1 2] \
        [--workdir DIR]   # finished pre-training runs in DIR are reused, a killed one resumes
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.pretrain_learning import FEATURE_SETS, Scores, embed, paired_interval, score
from benchmarks.report import write_section
from raddino.data.phantoms import generate_phantoms
from raddino.data.phantoms.settings import FINDINGS, PhantomSettings
from raddino.data.preprocess import PreprocessConfig
from raddino.evaluate.metrics import dice_per_image
from raddino.evaluate.segmentation import SegTraining
from raddino.evaluate.segmentation.data import SegmentationSample, load_sample
from raddino.evaluate.segmentation.train import FrozenFeatures, predict, train_head
from raddino.io.atomic import atomic_write_text
from raddino.io.manifest import Manifest, read_manifest
from raddino.models import Encoder, load_encoder
from raddino.pretrain.config import PretrainConfig, load_pretrain_config
from raddino.pretrain.meta_arch import SSLMetaArch
from raddino.pretrain.train import pretrain
from raddino.reportgen.score import bootstrap
from raddino.training import RunFolder

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo_cpu_dinov3.yaml"
DEMO_ITERATIONS = 900  # the demo's run, to which its gram.* iterations belong
EPOCH_LENGTH = 25
SNAPSHOTS = 4  # teacher exports per run: every quarter
BOOTSTRAP = 1000
# Anatomy only: at 112 px a ViT/16 sees 7 × 7 patches, too coarse for ribs; finding masks are empty on most
# images (an empty, correct prediction scores 1) and would measure prevalence more than features.
STRUCTURES = (
    "left_lung",
    "right_lung",
    "heart",
    *(f"{side}_{zone}_zone" for side in ("right", "left") for zone in ("upper", "mid", "lower")),
)
RANDOM, GRAM_ON, GRAM_OFF = "random init", "DINOv3 recipe, Gram on", "DINOv3 recipe, Gram off"
VARIANTS: dict[str, list[str]] = {GRAM_ON: [], GRAM_OFF: ["gram.use_loss=false"]}


def epoch_length(iterations: int) -> int:
    """Iterations per "epoch" of the schedules: the demo's 25, or the whole run when shorter (smoke runs)."""
    return min(EPOCH_LENGTH, iterations)


def gram_overrides(iterations: int) -> list[str]:
    """The demo's Gram schedule (load at 100, refresh every 200 from 300, of 900) scaled to ``iterations``."""
    scale = iterations / DEMO_ITERATIONS

    def scaled(value: int) -> int:
        return max(1, round(value * scale))

    return [
        f"gram.it_load_ema_teacher={scaled(100)}",
        f"gram.update_frequency={scaled(200)}",
        f"gram.it_first_update={scaled(300)}",
    ]


def gram_refreshes(config: PretrainConfig) -> list[int]:
    """Iterations after which the Gram teacher is refreshed (the rule in ``GramConfig``'s docstring)."""
    gram = config.gram
    if not gram.use_loss or not gram.rep_update:
        return []
    done = [
        i + 1
        for i in range(config.total_iterations)
        if i + 1 >= gram.it_first_update and (i + 1) % gram.update_frequency == 0
    ]
    return done if gram.max_updates is None else done[: gram.max_updates]


@dataclass
class Evaluation:
    """One frozen teacher's held-out scores."""

    dice_per_image: np.ndarray  # (N_test,) mean Dice over structures, for the paired bootstrap
    dice_per_structure: dict[str, float]
    probes: dict[str, Scores] = field(default_factory=dict)  # per feature set, final snapshots only

    @property
    def dice(self) -> float:
        return float(self.dice_per_image.mean())


@dataclass
class SegmentationData:
    """Preprocessed images and masks of one seed's phantoms, split by subject."""

    train: list[SegmentationSample]
    val: list[SegmentationSample]
    test: list[SegmentationSample]


def load_segmentation(manifest: Manifest, preprocess: PreprocessConfig) -> SegmentationData:
    columns = [f"mask_{name}" for name in STRUCTURES]
    samples = {"train": [], "val": [], "test": []}  # type: dict[str, list[SegmentationSample]]
    for row in manifest.rows:
        samples[row["split"]].append(load_sample(manifest, row, columns, preprocess))
    return SegmentationData(samples["train"], samples["val"], samples["test"])


def segmentation_dice(
    encoder: Encoder, data: SegmentationData, training: SegTraining, seed: int
) -> tuple[np.ndarray, dict[str, float]]:
    """Dice on ``data.test`` of a linear head trained on ``data.train`` (epoch chosen on ``data.val``).

    Returns:
        (N_test,) each test image's mean Dice over the structures, and each structure's mean Dice.
    """
    features = FrozenFeatures(encoder, [], torch.device("cpu"), cache=True)
    with tempfile.TemporaryDirectory(prefix="seg-head-") as folder:
        head, _ = train_head(
            "linear",
            data.train,
            data.val,
            features,
            encoder.embed_dim,
            len(STRUCTURES),
            training,
            seed,
            RunFolder(folder, "segmentation training checkpoint"),
            progress=False,
        )
    predicted = predict(head, "linear", data.test, features, training.batch_size)
    dice = dice_per_image(predicted, torch.stack([s.masks for s in data.test])).double()  # (N, C)
    per_structure = dict(zip(STRUCTURES, dice.mean(dim=0).tolist(), strict=True))
    return dice.mean(dim=1).numpy(), per_structure  # every phantom has every structure annotated


def pretrained_run(config: PretrainConfig, run: Path) -> tuple[float, float]:
    """Pre-train into ``run`` (resuming a killed run) unless it finished; (seconds, iterations/s).

    The timing is kept in ``run/benchmark_timing.json``, so a rerun that reuses the run reports it too.
    """
    timing = run / "benchmark_timing.json"
    if (run / "export" / "teacher" / "config.json").exists():
        if not timing.exists():
            return float("nan"), float("nan")
        recorded = json.loads(timing.read_text(encoding="utf-8"))
        return float(recorded["seconds"]), float(recorded["iterations_per_second"])
    latest = run / "checkpoints" / "latest.txt"
    start = int(latest.read_text().strip()[5:12]) if latest.exists() else 0  # step_XXXXXXX.pt
    began = time.perf_counter()
    result = pretrain(config, run, progress=True)
    elapsed = time.perf_counter() - began
    if result.export is None:
        raise RuntimeError(f"{run}: the run ended without its final export")
    speed = (result.iterations - start) / elapsed
    atomic_write_text(timing, json.dumps({"seconds": elapsed, "iterations_per_second": speed}))
    return elapsed, speed


def late_losses(run: Path, fraction: float = 0.25) -> dict[str, float]:
    """Mean of each loss term over the last ``fraction`` of the run's logged iterations (metrics.jsonl)."""
    with open(run / "metrics.jsonl", encoding="utf-8") as handle:
        records = [json.loads(line) for line in handle if line.strip()]
    records = [r for r in records if "train/dino" in r]
    late = records[int(len(records) * (1 - fraction)) :]
    terms = ("dino", "ibot", "koleo", "gram")
    return {t: float(np.mean([r[f"train/{t}"] for r in late])) for t in terms if f"train/{t}" in late[0]}


@dataclass
class SeedRun:
    seed: int
    held_labels: dict[str, np.ndarray]
    steps: list[int]
    evaluations: dict[str, list[Evaluation]]  # variant -> per step (random init's: one, at step 0)
    seconds: dict[str, float]
    speed: dict[str, float]
    losses: dict[str, dict[str, float]]  # variant -> loss term -> mean over the last quarter
    prototypes: int  # of the DINO head
    refreshes: list[int]
    counts: tuple[int, int, int]


def run_seed(seed: int, args: argparse.Namespace, workdir: Path) -> SeedRun:
    """One seed's phantoms, both pre-training runs and every snapshot's scores."""
    manifest_path = workdir / "phantoms" / "manifest.csv"
    if not manifest_path.exists():  # no subtle findings: pretrain_learning.py's reason
        manifest_path = generate_phantoms(
            workdir / "phantoms",
            n=args.images,
            size=128,
            seed=seed,
            settings=PhantomSettings(subtle_fraction=0.0),
            progress=False,
        )
    period = args.iterations // SNAPSHOTS
    common = [
        f"train.dataset_path={manifest_path}",
        "train.split=train",
        f"train.seed={seed}",
        f"train.batch_size_per_gpu={args.batch}",
        f"optim.epochs={args.iterations // epoch_length(args.iterations)}",
        f"train.OFFICIAL_EPOCH_LENGTH={epoch_length(args.iterations)}",
        f"train.export_period={period}",
        f"train.checkpoint_period={period}",
        *gram_overrides(args.iterations),
    ]
    configs = {name: load_pretrain_config(CONFIG, [*common, *extra]) for name, extra in VARIANTS.items()}
    initial = [SSLMetaArch(c).teacher.encoder.state_dict() for c in configs.values()]
    assert all(torch.equal(initial[0][k], other[k]) for other in initial[1:] for k in initial[0]), (
        "the variants must start from the same initialisation"
    )
    manifest = read_manifest(manifest_path)
    rows = manifest.rows
    train = np.array([row["split"] == "train" for row in rows])
    labels = {f: np.array([int(float(row[f] or 0)) for row in rows]) for f in FINDINGS}
    labels = {f: y for f, y in labels.items() if len(set(y[train])) == 2 and len(set(y[~train])) == 2}
    crops = configs[GRAM_ON].crops
    size, paths = crops.global_crops_size, manifest.paths()
    preprocess = PreprocessConfig(
        shortest_edge=size, crop_size=(size, size), image_mean=(crops.mean,) * 3, image_std=(crops.std,) * 3
    )
    data = load_segmentation(manifest, preprocess)
    training = SegTraining(epochs=args.seg_epochs, batch_size=16, lr=args.seg_lr)
    total = configs[GRAM_ON].total_iterations
    steps = [period * k for k in range(1, SNAPSHOTS)] + [total]

    def evaluate(encoder: Encoder, with_probe: bool) -> Evaluation:
        per_image, per_structure = segmentation_dice(encoder, data, training, seed)
        evaluation = Evaluation(per_image, per_structure)
        if with_probe:
            features = embed(encoder, paths, size, crops.mean, crops.std)
            evaluation.probes = {kind: score(features[kind], labels, train) for kind in FEATURE_SETS}
        print(
            f"seed {seed}: Dice {per_image.mean():.3f}",
            {k: round(s.auprc, 3) for k, s in evaluation.probes.items()},
        )
        return evaluation

    evaluations = {RANDOM: [evaluate(SSLMetaArch(configs[GRAM_ON]).teacher.encoder, True)]}
    seconds, speed, losses = {}, {}, {}
    for name, config in configs.items():
        run = workdir / ("gram_on" if name == GRAM_ON else "gram_off")
        seconds[name], speed[name] = pretrained_run(config, run)
        losses[name] = late_losses(run)
        exports = [*(f"teacher_{step:07d}" for step in steps[:-1]), "teacher"]  # the last: export_at_end
        evaluations[name] = [
            evaluate(load_encoder(run / "export" / folder), with_probe=folder == "teacher")
            for folder in exports
        ]
    held = {f: y[~train] for f, y in labels.items()}
    counts = (len(data.train), len(data.val), len(data.test))
    refreshes = gram_refreshes(configs[GRAM_ON])
    prototypes = configs[GRAM_ON].dino.head_n_prototypes
    return SeedRun(seed, held, steps, evaluations, seconds, speed, losses, prototypes, refreshes, counts)


def dice_difference(a: Evaluation, b: Evaluation) -> tuple[float, float, float]:
    """Mean per-image Dice of ``a`` − ``b`` and its 95% paired bootstrap interval over the test images."""
    difference = a.dice_per_image - b.dice_per_image
    _, low, high = bootstrap(lambda index: float(difference[index].mean()), len(difference), BOOTSTRAP)
    return float(difference.mean()), low, high


def _mean_std(values: list[float]) -> str:
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def dice_tables(runs: list[SeedRun]) -> list[str]:
    """Dice per snapshot per variant (mean ± std over seeds), and Gram on − off per seed."""
    steps = runs[0].steps
    lines = [
        "| variant | " + " | ".join(f"step {s}" for s in [0, *steps]) + " | last − best earlier |",
        "|---|" + "---:|" * (len(steps) + 2),
    ]
    for name in VARIANTS:
        curves = [[run.evaluations[RANDOM][0].dice] + [e.dice for e in run.evaluations[name]] for run in runs]
        drop = [curve[-1] - max(curve[:-1]) for curve in curves]
        cells = [_mean_std([curve[i] for curve in curves]) for i in range(len(steps) + 1)]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {np.mean(drop):+.3f} |")
    lines += [
        "",
        "Gram on − Gram off, mean test Dice per image, with the 95% interval of the paired difference over "
        f"{BOOTSTRAP} bootstrap resamples of the test images:",
        "",
        "| seed | " + " | ".join(f"step {s}" for s in steps) + " |",
        "|---:|" + "---:|" * len(steps),
    ]
    pairs = [  # seed -> step -> (Δ, low, high)
        [dice_difference(on, off) for on, off in zip(*(run.evaluations[v] for v in VARIANTS), strict=True)]
        for run in runs
    ]
    for run, row in zip(runs, pairs, strict=True):
        lines.append(
            f"| {run.seed} | " + " | ".join(f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}]" for d, lo, hi in row) + " |"
        )
    lines.append(
        "| mean | "
        + " | ".join(f"{np.mean([r[i][0] for r in pairs]):+.3f}" for i in range(len(steps)))
        + " |"
    )
    final = [row[-1] for row in pairs]
    lines += [
        "",
        f"At the last snapshot Gram on − Gram off is {np.mean([d for d, _, _ in final]):+.3f} Dice on "
        f"average; the paired interval lies above 0 in {sum(lo > 0 for _, lo, _ in final)} of {len(runs)} "
        f"seeds and below 0 in {sum(hi < 0 for _, _, hi in final)}.",
    ]
    lines += ["", "Dice per structure at the last snapshot, mean over seeds:", ""]
    lines += ["| variant | " + " | ".join(STRUCTURES) + " |", "|---|" + "---:|" * len(STRUCTURES)]
    for name in [RANDOM, *VARIANTS]:
        last = [run.evaluations[name][-1].dice_per_structure for run in runs]
        cells = [f"{np.mean([d[s] for d in last]):.3f}" for s in STRUCTURES]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def probe_tables(runs: list[SeedRun]) -> list[str]:
    """pretrain_learning.py's probe and kNN tables at the last snapshot, with the Dice beside them."""
    lines = [
        "| variant | features | mean probe AUPRC | mean Δ vs random | seeds with the Δ interval above 0 "
        "| mean kNN balanced acc. | mean kNN AUPRC |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    per_seed = [
        "| seed | train / val / test images | variant | features | probe AUPRC | Δ vs random [95% CI] "
        "| kNN balanced acc. | test Dice | pre-training (s) | it/s |",
        "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    summary: dict[tuple[str, str], list[tuple[Scores, float, float]]] = {}
    for run in runs:
        baseline = run.evaluations[RANDOM][0].probes
        for name in [RANDOM, *VARIANTS]:
            last = run.evaluations[name][-1]
            timing = "— | —" if name == RANDOM else f"{run.seconds[name]:.0f} | {run.speed[name]:.2f}"
            for kind in FEATURE_SETS:
                s, base = last.probes[kind], baseline[kind]
                low, delta = 0.0, "—"
                if name != RANDOM:
                    low, high = paired_interval(s.probe_scores, base.probe_scores, run.held_labels)
                    delta = f"{s.auprc - base.auprc:+.3f} [{low:+.3f}, {high:+.3f}]"
                summary.setdefault((name, kind), []).append((s, s.auprc - base.auprc, low))
                per_seed.append(
                    f"| {run.seed} | {' / '.join(map(str, run.counts))} | {name} | {kind} | {s.auprc:.3f} | "
                    f"{delta} | {s.knn_balanced:.3f} | {last.dice:.3f} | " + timing + " |"
                )
    for (name, kind), entries in summary.items():
        above = "—" if name == RANDOM else f"{sum(low > 0 for _, _, low in entries)} of {len(entries)}"
        delta = "—" if name == RANDOM else f"{np.mean([d for _, d, _ in entries]):+.3f}"
        lines.append(
            f"| {name} | {kind} | {np.mean([s.auprc for s, _, _ in entries]):.3f} | {delta} | {above} | "
            f"{np.mean([s.knn_balanced for s, _, _ in entries]):.3f} | "
            f"{np.mean([s.knn_auprc for s, _, _ in entries]):.3f} |"
        )
    findings = list(runs[0].held_labels)
    lines += ["", "Per seed, last snapshot:", "", *per_seed]
    for kind in FEATURE_SETS:
        lines += ["", f"Probe AUPRC per finding, {kind}, last snapshot, mean over seeds:", ""]
        lines += ["| variant | " + " | ".join(findings) + " |", "|---|" + "---:|" * len(findings)]
        for name in [RANDOM, *VARIANTS]:
            means = [np.mean([s.per_finding[f] for s, _, _ in summary[(name, kind)]]) for f in findings]
            lines.append(f"| {name} | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    return lines


def describe(args: argparse.Namespace, runs: list[SeedRun]) -> str:
    """The setting paragraph: sizes, schedule and why."""
    total = runs[0].steps[-1]
    prevalence = float(np.mean([y.mean() for run in runs for y in run.held_labels.values()]))
    gram = ", ".join(item.removeprefix("gram.") for item in gram_overrides(args.iterations))
    return (
        f"`configs/demo_cpu_dinov3.yaml` (4-block, 128-wide DINOv3 ViT/16 with RoPE and 4 registers, 112 px "
        f"global / 48 px local crops) at batch {args.batch}, {total} iterations per pre-trained variant from "
        f"the same random initialisation, on the `train`-split images of {args.images} phantoms at 128 px "
        f"(no subtle findings), {len(runs)} seeds (each seed draws its own phantoms, initialisation, crops "
        f"and masks). Gram anchoring: the demo's 900-iteration schedule scaled to {total} ({gram}, "
        f"max_updates 3: Gram teacher refreshed after iterations {runs[0].refreshes}); Gram off: "
        "`gram.use_loss=false`, nothing else changed. Sizes: the budget of ≤ ~35 min for the whole benchmark "
        "on 2 shared CPU cores, where the demo ran at 0.4–1 it/s at batch 16; batch "
        f"{args.batch} buys more iterations, which a late-training effect needs. Teacher exported every "
        f"{total // SNAPSHOTS} iterations. Segmentation: `raddino segment`'s linear head (BatchNorm + 1×1 "
        f"conv on the last block's 7 × 7 patch tokens, upsampled) trained {args.seg_epochs} epochs (Adam, lr "
        f"{args.seg_lr}, cosine, Dice + BCE, batch 16) on the `train` split's masks of {len(STRUCTURES)} "
        "structures (both lungs, heart, six lung zones), the epoch of lowest `val` loss kept, Dice on the "
        "`test` subjects (per image, mean over structures). Probe and kNN as `pretrain_learning`: fitted on "
        "`train`, scored on `val` + `test` (other subjects; prevalence "
        f"{prevalence:.2f} on average, the AUPRC of a useless encoder)."
    )


def loss_table(runs: list[SeedRun]) -> list[str]:
    """The loss terms late in each run, mean over seeds, beside the uniform prediction's DINO loss."""
    prototypes = runs[0].prototypes
    terms = list(runs[0].losses[GRAM_ON])
    lines = [
        f"Loss terms over the last quarter of each run, mean over seeds (a DINO loss of ln {prototypes} = "
        f"{np.log(prototypes):.3f} is a uniform prediction over the prototypes):",
        "",
        "| variant | " + " | ".join(terms) + " |",
        "|---|" + "---:|" * len(terms),
    ]
    for name in VARIANTS:
        means = {t: np.mean([run.losses[name][t] for run in runs]) for t in runs[0].losses[name]}
        lines.append(
            f"| {name} | " + " | ".join(f"{means[t]:.3f}" if t in means else "—" for t in terms) + " |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=400)
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--seg-epochs", type=int, default=5)
    parser.add_argument("--seg-lr", type=float, default=1e-2)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--dry-run", action="store_true", help="print the section, leave BENCHMARKS.md")
    args = parser.parse_args()
    if args.iterations % SNAPSHOTS or args.iterations % epoch_length(args.iterations):
        parser.error(f"--iterations must be a multiple of {SNAPSHOTS}, and of {EPOCH_LENGTH} above it")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="raddino-pretrain-learning-dinov3-"))
    began = time.perf_counter()
    runs = [run_seed(seed, args, workdir / f"seed{seed}") for seed in args.seeds]
    lines = [
        describe(args, runs),
        "",
        "Segmentation Dice on the test subjects per teacher snapshot, mean ± std over seeds (step 0: the "
        "random initialisation both runs start from; last − best earlier: the last snapshot's Dice minus "
        "the best of the earlier ones, mean over seeds, negative when the dense features degraded late):",
        "",
        *dice_tables(runs),
        "",
        "Linear probe and kNN at the last snapshot:",
        "",
        *probe_tables(runs),
        "",
        *loss_table(runs),
        "",
        f"Pre-training: {sum(sum(run.seconds.values()) for run in runs) / 60:.0f} min in all (timed when "
        f"each run ran); this invocation: {(time.perf_counter() - began) / 60:.0f} min wall. Small synthetic "
        "data sets: each interval covers the choice of held-out images for one seed; the seeds show how much "
        "the initialisation and the data draw move the result.",
    ]
    body = "\n".join(lines)
    if args.dry_run:
        print(body)
    else:
        write_section("pretrain_learning_dinov3", body)


if __name__ == "__main__":
    main()
