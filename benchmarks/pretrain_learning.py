"""Does pre-training learn? The CPU demo recipe vs random init vs the recipe without iBOT, on phantoms.

Each pre-trained variant runs ``configs/demo_cpu.yaml`` for the same number of iterations (a fixed CPU
budget) from the same random initialisation; the teacher is then frozen and its CLS embeddings of the
phantoms' held-out split are scored by

- a linear probe: scikit-learn logistic regression per finding, trained on the ``train`` + ``val`` splits,
  AUPRC on ``test``, macro average over findings (the paper's metric, one seed);
- kNN: DINO's temperature-weighted vote (k = 20, T = 0.07, cosine similarity), accuracy per finding,
  macro average, beside the accuracy of always answering the majority class; and balanced accuracy, which
  the rare findings do not swamp.

    python benchmarks/pretrain_learning.py [--iterations 100] [--images 400]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import write_section
from raddino.data.phantoms import generate_phantoms
from raddino.data.preprocess import InferencePreprocessor, PreprocessConfig
from raddino.io.images import read_image
from raddino.io.manifest import read_manifest
from raddino.models import Encoder, load_encoder
from raddino.pretrain.config import PretrainConfig, load_pretrain_config
from raddino.pretrain.meta_arch import SSLMetaArch
from raddino.pretrain.train import pretrain

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo_cpu.yaml"
FINDINGS = ("cardiomegaly", "pleural_effusion", "lung_opacity", "nodule", "pneumothorax", "support_device")


@torch.no_grad()
def embed(encoder: Encoder, manifest: Path, size: int, mean: float, std: float) -> np.ndarray:
    """CLS embeddings (N, D) of every manifest image with the release's preprocessing at ``size``."""
    rows = read_manifest(manifest)
    preprocess = InferencePreprocessor(
        PreprocessConfig(
            shortest_edge=size, crop_size=(size, size), image_mean=(mean,) * 3, image_std=(std,) * 3
        )
    )
    encoder.eval()
    features = []
    paths = rows.paths()
    for start in range(0, len(paths), 64):
        pixels = torch.stack(
            [preprocess(read_image(path)) for path in paths[start : start + 64]]
        )  # (B, 3, S, S)
        features.append(encoder.forward_features(pixels).cls)  # (B, D)
    return torch.cat(features).numpy()


def knn_predict(train: np.ndarray, train_y: np.ndarray, test: np.ndarray) -> np.ndarray:
    """DINO's weighted kNN vote (k 20, T 0.07) on L2-normalised features; binary predictions."""
    train_n = train / np.linalg.norm(train, axis=1, keepdims=True)
    test_n = test / np.linalg.norm(test, axis=1, keepdims=True)
    similarity = test_n @ train_n.T  # (N_test, N_train)
    top = np.argsort(-similarity, axis=1)[:, :20]
    weights = np.exp(np.take_along_axis(similarity, top, axis=1) / 0.07)
    vote = (weights * train_y[top]).sum(axis=1) / weights.sum(axis=1)
    return vote > 0.5


def score(features: np.ndarray, manifest: Path) -> dict[str, float]:
    rows = read_manifest(manifest).rows
    split = np.array([row["split"] for row in rows])
    train, test = split != "test", split == "test"
    scaler = StandardScaler().fit(features[train])
    scaled = scaler.transform(features)
    auprc, knn, balanced, majority, prevalence = [], [], [], [], []
    for finding in FINDINGS:
        labels = np.array([int(float(row[finding] or 0)) for row in rows])
        if len(set(labels[train])) < 2 or len(set(labels[test])) < 2:
            continue
        probe = LogisticRegression(max_iter=3000, C=0.1).fit(scaled[train], labels[train])
        auprc.append(average_precision_score(labels[test], probe.predict_proba(scaled[test])[:, 1]))
        predicted = knn_predict(features[train], labels[train], features[test])
        truth = labels[test].astype(bool)
        knn.append(float((predicted == truth).mean()))
        balanced.append(0.5 * (predicted[truth].mean() + (~predicted[~truth]).mean()))
        majority.append(max(labels[test].mean(), 1 - labels[test].mean()))
        prevalence.append(labels[test].mean())
    return {
        "auprc": float(np.mean(auprc)),
        "knn": float(np.mean(knn)),
        "knn_balanced": float(np.mean(balanced)),
        "majority": float(np.mean(majority)),
        "prevalence": float(np.mean(prevalence)),
        "findings": float(len(auprc)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="raddino-pretrain-learning-"))
    manifest = workdir / "phantoms" / "manifest.csv"
    if not manifest.exists():
        manifest = generate_phantoms(workdir / "phantoms", n=args.images, size=128, seed=0, progress=False)
    epoch_length = 25
    epochs = max(1, args.iterations // epoch_length)
    common = [
        f"train.dataset_path={manifest}",
        f"optim.epochs={epochs}",
        f"train.OFFICIAL_EPOCH_LENGTH={epoch_length}",
    ]
    variants: dict[str, list[str] | None] = {
        "random init (no pre-training)": None,
        "full recipe (DINO + iBOT + KoLeo)": [],
        "iBOT off (ibot.loss_weight 0)": ["ibot.loss_weight=0"],
    }
    results: list[tuple[str, dict[str, float], float]] = []
    config: PretrainConfig = load_pretrain_config(CONFIG, common)
    for name, overrides in variants.items():
        began = time.perf_counter()
        if overrides is None:
            encoder = SSLMetaArch(config).teacher.backbone
        else:
            run = workdir / name.split(" ")[0].replace("(", "")
            variant = load_pretrain_config(CONFIG, [*common, *overrides])
            result = pretrain(variant, run, progress=True)
            assert result.export is not None
            encoder = load_encoder(result.export)
        elapsed = time.perf_counter() - began
        crops = config.crops
        features = embed(encoder, manifest, crops.global_crops_size, crops.mean, crops.std)
        results.append((name, score(features, manifest), elapsed))
        print(name, results[-1])

    baseline = results[0][1]
    lines = [
        f"`configs/demo_cpu.yaml` (4-block, 128-wide ViT/14, 112 px global / 56 px local crops, batch 16), "
        f"{epochs * epoch_length} iterations per pre-trained variant from the same random initialisation, on "
        f"{args.images} phantoms at 128 px (splits by subject from the generator). Frozen teacher, CLS "
        "token; "
        f"linear probe = logistic regression per finding (train+val → test), macro AUPRC over "
        f"{int(baseline['findings'])} findings (test prevalence {baseline['prevalence']:.2f} on average); "
        "kNN = DINO's weighted vote (k 20, T 0.07), macro accuracy "
        f"(majority-class accuracy {baseline['majority']:.3f}) and balanced accuracy (mean of sensitivity "
        "and specificity, 0.5 = chance).",
        "",
        "| variant | linear-probe AUPRC | Δ vs random | kNN accuracy | kNN balanced accuracy | Δ vs random "
        "| pre-training time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, metrics, elapsed in results:
        lines.append(
            f"| {name} | {metrics['auprc']:.3f} | {metrics['auprc'] - baseline['auprc']:+.3f} | "
            f"{metrics['knn']:.3f} | {metrics['knn_balanced']:.3f} | "
            f"{metrics['knn_balanced'] - baseline['knn_balanced']:+.3f} | "
            f"{elapsed:.0f} |"
        )
    lines += [
        "",
        "One seed, one small synthetic data set on a shared CPU: differences of a few hundredths are within "
        "noise. The time column is wall-clock on a machine other jobs were using.",
    ]
    write_section("pretrain_learning", "\n".join(lines))


if __name__ == "__main__":
    main()
