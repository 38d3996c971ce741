"""Does pre-training learn? The CPU demo recipe vs random init vs the recipe without iBOT, on phantoms.

Each pre-trained variant runs ``configs/demo_cpu.yaml`` for the same number of iterations (a fixed CPU
budget) from the same random initialisation, on the images of the phantoms' ``train`` split only (no
labels). The teacher is then frozen; a probe is fitted on the ``train`` split's labels and everything is
scored on the held-out ``val`` + ``test`` subjects, which neither pre-training nor the probe has seen:

- linear probe: scikit-learn logistic regression per finding, AUPRC per finding and macro average (the
  paper's metric), with a paired bootstrap 95% interval of the difference to random init (1000 resamples
  of the held-out images);
- kNN: DINO's temperature-weighted vote (k = 20, T = 0.07, cosine similarity): accuracy per finding
  (macro, beside always answering the majority class), balanced accuracy (0.5 = chance) and AUPRC of the
  vote.

Two feature sets, as ``raddino evaluate probe`` offers: the CLS token, and CLS ⊕ the mean of the patch
tokens (the probe's ``cls+patch_mean``, the paper's "CLS plus pooled patches").

    python benchmarks/pretrain_learning.py [--iterations 900] [--images 1000] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import write_section
from raddino.data.phantoms import generate_phantoms
from raddino.data.phantoms.settings import FINDINGS, PhantomSettings
from raddino.data.preprocess import InferencePreprocessor, PreprocessConfig
from raddino.io.images import read_image
from raddino.io.manifest import read_manifest
from raddino.models import Encoder, load_encoder
from raddino.pretrain.config import PretrainConfig, load_pretrain_config
from raddino.pretrain.meta_arch import SSLMetaArch
from raddino.pretrain.train import pretrain
from raddino.reportgen.score import bootstrap

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo_cpu.yaml"
FEATURE_SETS = ("cls", "cls+patch_mean")
BOOTSTRAP = 1000
EPOCH_LENGTH = 25  # iterations per "epoch" of the schedules
VARIANTS: dict[str, list[str] | None] = {
    "random init (no pre-training)": None,  # the pre-trained runs' starting point
    "full recipe (DINO + iBOT + KoLeo)": [],
    "iBOT off (ibot.loss_weight 0)": ["ibot.loss_weight=0"],
}


@torch.no_grad()
def embed(encoder: Encoder, paths: list[Path], size: int, mean: float, std: float) -> dict[str, np.ndarray]:
    """CLS and CLS ⊕ patch-mean embeddings of ``paths`` with the release's preprocessing at ``size``."""
    preprocess = InferencePreprocessor(
        PreprocessConfig(
            shortest_edge=size, crop_size=(size, size), image_mean=(mean,) * 3, image_std=(std,) * 3
        )
    )
    encoder.eval()
    cls, patch_mean = [], []
    for start in range(0, len(paths), 64):
        pixels = torch.stack([preprocess(read_image(path)) for path in paths[start : start + 64]])
        output = encoder.forward_features(pixels)
        cls.append(output.cls)  # (B, D)
        patch_mean.append(output.patch_tokens.mean(dim=(2, 3)))  # (B, D, h, w) -> (B, D)
    cls_all, mean_all = torch.cat(cls).numpy(), torch.cat(patch_mean).numpy()
    return {"cls": cls_all, "cls+patch_mean": np.concatenate([cls_all, mean_all], axis=1)}


def knn_vote(train: np.ndarray, train_y: np.ndarray, test: np.ndarray) -> np.ndarray:
    """DINO's weighted kNN vote (k 20, T 0.07) on L2-normalised features: positive share in [0, 1]."""
    train_n = train / np.linalg.norm(train, axis=1, keepdims=True)
    test_n = test / np.linalg.norm(test, axis=1, keepdims=True)
    similarity = test_n @ train_n.T  # (N_test, N_train)
    top = np.argsort(-similarity, axis=1)[:, :20]
    weights = np.exp(np.take_along_axis(similarity, top, axis=1) / 0.07)
    return (weights * train_y[top]).sum(axis=1) / weights.sum(axis=1)


@dataclass
class Scores:
    """One encoder's scores on the held-out rows with one feature set."""

    auprc: float  # probe, macro over findings
    per_finding: dict[str, float]  # probe AUPRC per finding
    probe_scores: dict[str, np.ndarray]  # probe probabilities per finding, for the paired bootstrap
    knn: float  # kNN accuracy, macro
    knn_balanced: float
    knn_auprc: float
    majority: float  # accuracy of always answering the majority class, macro


def score(features: np.ndarray, labels: dict[str, np.ndarray], train: np.ndarray) -> Scores:
    """Probe and kNN scores on the held-out rows (``~train``), per finding and macro-averaged."""
    held = ~train
    scaled = StandardScaler().fit(features[train]).transform(features)
    probe_scores, auprc = {}, {}
    knn, balanced, knn_auprc, majority = [], [], [], []
    for finding, y in labels.items():
        probe = LogisticRegression(max_iter=3000, C=0.1).fit(scaled[train], y[train])
        probe_scores[finding] = probe.predict_proba(scaled[held])[:, 1]
        auprc[finding] = float(average_precision_score(y[held], probe_scores[finding]))
        vote = knn_vote(features[train], y[train], features[held])
        truth, predicted = y[held].astype(bool), vote > 0.5
        knn.append(float((predicted == truth).mean()))
        balanced.append(0.5 * (predicted[truth].mean() + (~predicted[~truth]).mean()))
        knn_auprc.append(float(average_precision_score(truth, vote)))
        majority.append(max(truth.mean(), 1 - truth.mean()))
    return Scores(
        auprc=float(np.mean(list(auprc.values()))),
        per_finding=auprc,
        probe_scores=probe_scores,
        knn=float(np.mean(knn)),
        knn_balanced=float(np.mean(balanced)),
        knn_auprc=float(np.mean(knn_auprc)),
        majority=float(np.mean(majority)),
    )


def paired_interval(
    a: dict[str, np.ndarray], b: dict[str, np.ndarray], truth: dict[str, np.ndarray]
) -> tuple[float, float]:
    """95% interval of macro AUPRC(a) − AUPRC(b) over bootstrap resamples of the held-out images."""
    count = len(next(iter(truth.values())))

    def difference(index: np.ndarray) -> float:
        return float(
            np.mean(
                [
                    average_precision_score(y[index], a[f][index])
                    - average_precision_score(y[index], b[f][index])
                    for f, y in truth.items()
                    if 0 < y[index].sum() < count  # a resample without positives has no AUPRC
                ]
            )
        )

    _, low, high = bootstrap(difference, count, samples=BOOTSTRAP)
    return low, high


@dataclass
class SeedRun:
    """One seed's phantoms, the three encoders' scores and the held-out set they were scored on."""

    seed: int
    results: list[tuple[str, dict[str, Scores], float]]  # (variant, scores per feature set, seconds)
    held_labels: dict[str, np.ndarray]
    train_images: int
    held_images: int


def run_seed(seed: int, iterations: int, images: int, workdir: Path) -> SeedRun:
    """Phantoms drawn with ``seed``, the three variants pre-trained with ``train.seed = seed``, scored."""
    manifest = workdir / "phantoms" / "manifest.csv"
    if not manifest.exists():
        # No subtle findings: at 128 px a subtle nodule or pneumothorax is a pixel or two, below what a
        # 112 px ViT/14 can see, and would only add label noise to every variant alike.
        settings = PhantomSettings(subtle_fraction=0.0)
        manifest = generate_phantoms(
            workdir / "phantoms", n=images, size=128, seed=seed, settings=settings, progress=False
        )
    common = [
        f"train.dataset_path={manifest}",
        "train.split=train",
        f"train.seed={seed}",
        f"optim.epochs={max(1, iterations // EPOCH_LENGTH)}",
        f"train.OFFICIAL_EPOCH_LENGTH={EPOCH_LENGTH}",
    ]
    table = read_manifest(manifest)
    rows, paths = table.rows, table.paths()
    train = np.array([row["split"] == "train" for row in rows])
    labels = {f: np.array([int(float(row[f] or 0)) for row in rows]) for f in FINDINGS}
    labels = {f: y for f, y in labels.items() if len(set(y[train])) == 2 and len(set(y[~train])) == 2}
    config: PretrainConfig = load_pretrain_config(CONFIG, common)
    results: list[tuple[str, dict[str, Scores], float]] = []
    for name, overrides in VARIANTS.items():
        began = time.perf_counter()
        if overrides is None:
            encoder = SSLMetaArch(config).teacher.encoder
        else:
            run = workdir / name.split(" ")[0].replace("(", "")
            variant = load_pretrain_config(CONFIG, [*common, *overrides])
            result = pretrain(variant, run, progress=True)
            assert result.export is not None
            encoder = load_encoder(result.export)
        elapsed = time.perf_counter() - began
        crops = config.crops
        features = embed(encoder, paths, crops.global_crops_size, crops.mean, crops.std)
        scores = {kind: score(features[kind], labels, train) for kind in FEATURE_SETS}
        results.append((name, scores, elapsed))
        print(f"seed {seed}", name, {kind: (s.auprc, s.knn_balanced) for kind, s in scores.items()})
    held = {f: y[~train] for f, y in labels.items()}
    return SeedRun(seed, results, held, int(train.sum()), int((~train).sum()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=900, help="the demo's budget (raddino demo)")
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="raddino-pretrain-learning-"))
    runs = [run_seed(seed, args.iterations, args.images, workdir / f"seed{seed}") for seed in args.seeds]

    iterations = max(1, args.iterations // EPOCH_LENGTH) * EPOCH_LENGTH
    findings = list(runs[0].held_labels)
    prevalence = float(np.mean([y.mean() for run in runs for y in run.held_labels.values()]))
    majority = float(np.mean([run.results[0][1]["cls"].majority for run in runs]))
    lines = [
        f"`configs/demo_cpu.yaml` (4-block, 128-wide ViT/14, 112 px global / 56 px local crops, batch 16), "
        f"{iterations} iterations per pre-trained variant from the same random initialisation, on the "
        f"`train`-split images of {args.images} phantoms at 128 px (no subtle findings), {len(runs)} seeds "
        "(each seed draws its own phantoms, initialisation, crops and masks). Frozen teacher; probe and kNN "
        "fitted on the `train` split, scored on the held-out `val` + `test` images (other subjects; "
        f"prevalence {prevalence:.2f} on average over {len(findings)} findings, so a useless encoder scores "
        f"an AUPRC near {prevalence:.2f}). Probe: logistic regression per finding (C 0.1, standardised "
        "features), macro AUPRC; 95% interval of the paired difference to random init over "
        f"{BOOTSTRAP} bootstrap resamples of the held-out images. kNN: DINO's weighted vote (k 20, T 0.07), "
        f"macro accuracy (majority class: {majority:.3f}), balanced accuracy (0.5 = chance) and AUPRC of "
        "the vote.",
        "",
        "| variant | features | mean probe AUPRC | mean Δ vs random | seeds with the Δ interval above 0 "
        "| mean kNN balanced acc. | mean kNN AUPRC |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    per_seed = [
        "| seed | train / held-out images | variant | features | probe AUPRC | Δ vs random [95% CI] "
        "| kNN accuracy | kNN balanced acc. | kNN AUPRC | pre-training time (s) |",
        "|---:|---:|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    summary: dict[tuple[str, str], list[tuple[Scores, float, float]]] = {}
    for run in runs:
        baseline = run.results[0][1]
        for name, scores, elapsed in run.results:
            for kind in FEATURE_SETS:
                s, base = scores[kind], baseline[kind]
                low = high = 0.0
                if s is base:
                    delta = "—"
                else:
                    low, high = paired_interval(s.probe_scores, base.probe_scores, run.held_labels)
                    delta = f"{s.auprc - base.auprc:+.3f} [{low:+.3f}, {high:+.3f}]"
                summary.setdefault((name, kind), []).append((s, s.auprc - base.auprc, low))
                per_seed.append(
                    f"| {run.seed} | {run.train_images} / {run.held_images} | {name} | {kind} | "
                    f"{s.auprc:.3f} | {delta} | {s.knn:.3f} | {s.knn_balanced:.3f} | {s.knn_auprc:.3f} | "
                    f"{elapsed:.0f} |"
                )
    for (name, kind), entries in summary.items():
        is_baseline = name == runs[0].results[0][0]
        above = "—" if is_baseline else f"{sum(low > 0 for _, _, low in entries)} of {len(entries)}"
        delta = "—" if is_baseline else f"{np.mean([d for _, d, _ in entries]):+.3f}"
        lines.append(
            f"| {name} | {kind} | {np.mean([s.auprc for s, _, _ in entries]):.3f} | {delta} | {above} | "
            f"{np.mean([s.knn_balanced for s, _, _ in entries]):.3f} | "
            f"{np.mean([s.knn_auprc for s, _, _ in entries]):.3f} |"
        )
    lines += ["", "Per seed:", "", *per_seed]
    for kind in FEATURE_SETS:
        lines += [
            "",
            f"Probe AUPRC per finding, {kind}, mean over seeds:",
            "",
            "| variant | " + " | ".join(findings) + " |",
            "|---|" + "---:|" * len(findings),
        ]
        for name in VARIANTS:
            entries = summary[(name, kind)]
            means = [np.mean([s.per_finding[f] for s, _, _ in entries]) for f in findings]
            lines.append(f"| {name} | " + " | ".join(f"{m:.3f}" for m in means) + " |")
    lines += [
        "",
        "Small synthetic data sets: each interval covers the choice of held-out images for one seed; the "
        "seeds show how much the initialisation and the data draw move the result. The time column is "
        "wall-clock on a shared machine.",
    ]
    write_section("pretrain_learning", "\n".join(lines))


if __name__ == "__main__":
    main()
