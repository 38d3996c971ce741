"""Phantoms: generation speed, learnability of findings and metadata from pixels, and the contact sheet.

(a) Speed: ``generate_phantoms`` writes N phantoms at 518 px (8-bit PNG + 34 mask PNGs each) with every
core, and a smaller set with one worker as the reference; images/s, wall time, CPU ms per image.
(b) Learnability: M phantoms at 224 px rendered in memory, each reduced to 356 simple statistics (block
means, band-pass texture, per-lung-zone statistics), a scikit-learn logistic regression per finding with
5-fold cross-validation grouped by subject;
AUPRC per finding against its prevalence (the AUPRC of a random guess), also for subtle and obvious
positives separately; and the paper's metadata task on the same features (sex; age, weight and BMI in
five quantile bins), accuracy against the majority class.
(c) ``docs/images/phantoms_contact_sheet.png``: 16 phantoms with their masks outlined.

    python benchmarks/phantoms.py                       # 1000 at 518 px, 2000 at 224 px
    python benchmarks/phantoms.py --speed-n 200 --learn-n 600
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import write_section
from raddino.data.phantoms import (
    FINDINGS,
    generate_phantoms,
    plan_phantoms,
    render_phantom,
    write_contact_sheet,
)
from raddino.data.phantoms.spec import Phantom, PhantomSpec

ROOT = Path(__file__).resolve().parent.parent
SHEET = ROOT / "docs" / "images" / "phantoms_contact_sheet.png"
LEARN_SIZE = 224
ZONES = [f"{side}_{zone}_zone" for side in ("right", "left") for zone in ("upper", "mid", "lower")]


def cpu_seconds() -> float:
    """User + system CPU of this process and its finished children."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_generation(n: int, size: int, workers: int) -> dict[str, float]:
    """Wall and CPU time of one ``generate_phantoms`` run into a fresh temporary folder."""
    with tempfile.TemporaryDirectory() as folder:
        load = os.getloadavg()[0]
        cpu, start = cpu_seconds(), time.perf_counter()
        generate_phantoms(folder, n=n, size=size, seed=0, workers=workers, progress=False)
        wall = time.perf_counter() - start
        used = cpu_seconds() - cpu
        files = sum(1 for _ in Path(folder).rglob("*.png"))
    return {"n": n, "wall": wall, "rate": n / wall, "cpu_ms": 1000 * used / n, "files": files, "load": load}


def _blobness(image: np.ndarray, sigma: float) -> np.ndarray:
    """Bright-blob strength: sqrt of the Hessian determinant where both curvatures are negative (scale σ)."""
    from scipy import ndimage

    smooth = ndimage.gaussian_filter(image, sigma)
    dy, dx = np.gradient(smooth)
    dyy, dyx = np.gradient(dy)
    dxy, dxx = np.gradient(dx)
    determinant = (dxx * dyy - dxy * dyx) * sigma**4
    return np.where(dxx + dyy < 0, np.sqrt(np.maximum(determinant, 0.0)), 0.0)


def image_features(phantom: Phantom) -> np.ndarray:
    """Simple hand-made statistics of a 224 px phantom: (356,) float32.

    256 block means (16 × 16 grid: where things are bright), 64 block means of a band-pass magnitude
    (8 × 8 grid: fine structure such as lines and reticulation), and six numbers per lung zone (mean,
    standard deviation, band-pass mean, largest and 98th-percentile blob strength, area). Zone masks are
    anatomy only; no finding mask and no heart mask is used.
    """
    from scipy import ndimage

    image = phantom.image
    size = image.shape[0]
    means = image.reshape(16, size // 16, 16, size // 16).mean(axis=(1, 3))
    band = np.abs(ndimage.gaussian_filter(image, 1.0) - ndimage.gaussian_filter(image, 3.0))
    texture = band.reshape(8, size // 8, 8, size // 8).mean(axis=(1, 3))
    blobs = np.maximum(_blobness(image, 2.5), _blobness(image, 4.0))
    zones = []
    for name in ZONES:
        mask = phantom.masks[name]
        if mask.sum() < 5:  # laterals have no lung zones
            zones += [0.0] * 6
            continue
        values = image[mask]
        zones += [
            values.mean(),
            values.std(),
            band[mask].mean(),
            blobs[mask].max(),
            np.quantile(blobs[mask], 0.98),
        ]
        zones.append(mask.mean())
    return np.concatenate([means.ravel(), texture.ravel(), np.asarray(zones)]).astype(np.float32)


def _features(specs: list[PhantomSpec]) -> np.ndarray:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return np.stack([image_features(render_phantom(spec, LEARN_SIZE)) for spec in specs])


def render_features(specs: list[PhantomSpec], workers: int) -> np.ndarray:
    """(n, 356) features of each phantom at 224 px (see ``image_features``), rendered in parallel."""
    chunks = [specs[start : start + 50] for start in range(0, len(specs), 50)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return np.concatenate(list(pool.map(_features, chunks)))


def cross_validated_scores(features: np.ndarray, target: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Out-of-fold predicted probabilities (binary: of class 1; multi-class: (n, k)), 5 folds by subject."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes = np.unique(target)
    scores = np.zeros((len(target), len(classes)))
    for train, test in GroupKFold(n_splits=5).split(features, target, groups):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
        model.fit(features[train], target[train])
        scores[np.ix_(test, np.searchsorted(classes, model.classes_))] = model.predict_proba(features[test])
    return scores[:, 1] if len(classes) == 2 else scores


def learnability(n: int, workers: int) -> str:
    """The learnability section (markdown): AUPRC per finding, metadata accuracy."""
    from sklearn.metrics import average_precision_score

    specs = plan_phantoms(n, seed=0)
    start = time.perf_counter()
    features = render_features(specs, workers)
    render_time = time.perf_counter() - start
    groups = np.array([spec.subject.subject_id for spec in specs])
    lines = [
        "| finding | prevalence | AUPRC | AUPRC subtle only | AUPRC obvious only |",
        "|---|---:|---:|---:|---:|",
    ]
    ratios, near_chance = {}, []
    for name in FINDINGS:
        target = np.array([spec.labels[name] for spec in specs])
        scores = cross_validated_scores(features, target, groups)
        auprc = average_precision_score(target, scores)
        ratios[name] = auprc / target.mean()
        cells = [f"{target.mean():.3f}", f"**{auprc:.3f}**"]
        for severity in ("subtle", "obvious"):
            severities = np.array([spec.findings.severities.get(name, "") for spec in specs])
            keep = (target == 0) | (severities == severity)
            sub_target = target[keep]
            sub = average_precision_score(sub_target, scores[keep])
            if sub < 1.2 * sub_target.mean():
                near_chance.append(f"{severity} {name}")
            cells.append(f"{sub:.3f} (prev. {sub_target.mean():.3f})")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    meta_lines = [
        "| metadata (5-fold by subject) | classes | majority class | accuracy |",
        "|---|---:|---:|---:|",
    ]
    for name in ("sex", "age", "weight", "bmi"):
        values = np.array([spec.metadata()[name] for spec in specs])
        if name == "sex":
            target = (values == "F").astype(int)
        else:  # the paper bins age, weight and BMI into five intervals (RAD-DINO §2.5)
            edges = np.quantile(values.astype(float), [0.2, 0.4, 0.6, 0.8])
            target = np.digitize(values.astype(float), edges)
        scores = cross_validated_scores(features, target, groups)
        predicted = scores.argmax(axis=1) if scores.ndim == 2 else (scores > 0.5).astype(int)
        majority = np.bincount(target).max() / len(target)
        meta_lines.append(
            f"| {name} | {len(np.unique(target))} | {majority:.3f} | **{np.mean(predicted == target):.3f}** |"
        )
    low, high = min(ratios, key=ratios.__getitem__), max(ratios, key=ratios.__getitem__)
    summary = (
        f"AUPRC / prevalence ranges from {ratios[low]:.1f}× ({low}) to {ratios[high]:.1f}× ({high}). "
        f"Within 1.2× of chance: {', '.join(near_chance) or 'none'}."
    )
    views = {view: sum(spec.view == view for spec in specs) for view in ("PA", "AP", "LATERAL")}
    return (
        f"{n} phantoms at {LEARN_SIZE} px (seed 0, default settings: {views['PA']} PA, {views['AP']} AP, "
        f"{views['LATERAL']} lateral; {len(set(groups))} subjects), rendered in memory in "
        f"{render_time:.0f} s. "
        "Features (356 simple statistics, `image_features` in this script): 16 × 16 block means, 8 × 8 "
        "block means of a band-pass magnitude, and per lung-zone mask the mean, spread, band-pass mean, "
        "blob strength (largest, 98th percentile) and area; no finding or heart mask is used. Model: "
        "standardised logistic regression (C = 0.1), out-of-fold predictions from 5 folds grouped by "
        'subject. A random score\'s AUPRC equals the prevalence. "Subtle only" scores the subtle '
        'positives against all negatives (likewise "obvious only").\n\n'
        + "\n".join(lines)
        + "\n\n"
        + summary
        + "\n\n"
        + "\n".join(meta_lines)
    )


def contact_sheet() -> Path:
    """The README's contact sheet: the first 16 phantoms of seed 0 at 518 px, shown at 256 px."""
    phantoms = [render_phantom(spec, 518) for spec in plan_phantoms(16, seed=0)]
    SHEET.parent.mkdir(parents=True, exist_ok=True)
    return write_contact_sheet(phantoms, SHEET)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speed-n", type=int, default=1000, help="phantoms for the all-cores speed run")
    parser.add_argument("--reference-n", type=int, default=200, help="phantoms for the one-worker run")
    parser.add_argument("--learn-n", type=int, default=2000, help="phantoms for the learnability run")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    sheet = contact_sheet()
    print(f"contact sheet: {sheet}")
    learn_body = learnability(args.learn_n, args.workers)
    print(learn_body)
    single = time_generation(args.reference_n, 518, 1)
    parallel = time_generation(args.speed_n, 518, args.workers)
    print(single, parallel)
    speed_body = (
        f"`generate_phantoms(n, size=518)`: 8-bit PNG + 34 one-bit mask PNGs per phantom "
        f"({parallel['files'] / args.speed_n:.0f} files each), manifest, fresh folder; wall time includes "
        "starting the worker processes.\n\n"
        "| workers | phantoms | wall time | phantoms/s | CPU per phantom | speed-up vs 1 worker "
        "| load before |\n"
        "|---:|---:|---:|---:|---:|---:|---:|\n"
        f"| 1 | {single['n']:.0f} | {single['wall']:.1f} s | {single['rate']:.1f} | "
        f"{single['cpu_ms']:.0f} ms | 1.00× | {single['load']:.1f} |\n"
        f"| {args.workers} | {parallel['n']:.0f} | **{parallel['wall']:.1f} s** | {parallel['rate']:.1f} | "
        f"{parallel['cpu_ms']:.0f} ms | {parallel['rate'] / single['rate']:.2f}× "
        f"| {parallel['load']:.1f} |\n\n"
        'CPU per phantom (all processes) is the machine-independent cost; "load before" is the 1-minute load '
        "average when the run started: other processes on a shared machine slow the parallel run most.\n"
    )
    write_section(
        "phantoms",
        "## Phantoms (`raddino phantoms`)\n\n### Speed\n\n"
        + speed_body
        + "\n### Learnability\n\n"
        + learn_body
        + f"\n\nContact sheet of the first 16 phantoms: `{SHEET.relative_to(ROOT)}`.",
    )


if __name__ == "__main__":
    main()
