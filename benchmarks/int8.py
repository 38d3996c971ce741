"""Int8 CPU inference of a pre-trained encoder against float32 (issue 19's gate), into BENCHMARKS.md.

Static per-channel int8 (``raddino.models.int8.quantize_int8``: torch.ao eager mode, x86 backend) is
calibrated on ``--calibration`` training images of a phantom manifest; PyTorch's dynamic per-tensor int8
(``quantize_dynamic``) is measured beside it for reference. On the held-out (test) images: macro AUPRC of a
logistic-regression probe on the findings (fitted on each encoder's own training-split CLS features),
the overlap of each test image's 10 nearest training images by cosine, mean-centred CLS cosine to float32,
and the speed ratio (alternating runs on the same batch after a warm-up). Speed is also measured on a
ViT-B/14 at 224 px (random weights: speed does not depend on them; no quality number is taken there).

x86's default qconfig keeps 7 of the 8 activation bits (``reduce_range``); that variant fails the gate
on the demo's encoders, the full-range one passes (see the section), and is what
``raddino export --format int8`` writes. The quantiser is :mod:`raddino.models.int8`, the gate's measures
and bounds :mod:`raddino.evaluate.int8_gate` (the command runs that gate before it writes anything).

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/int8.py \\
        --model /tmp/demo_seeds3/models/pretrained --manifest /tmp/demo_seeds3/phantoms/manifest.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import write_section
from raddino.data.preprocess import InferencePreprocessor, PreprocessConfig
from raddino.evaluate.int8_gate import (
    MAX_AUPRC_DROP,
    MIN_KNN_OVERLAP,
    centred_cosine,
    knn_overlap,
    probe_macro_auprc,
)
from raddino.io.images import read_image
from raddino.models.encoder import Encoder
from raddino.models.int8 import quantize_int8
from raddino.models.loading import load_encoder

FINDINGS = ("cardiomegaly", "pleural_effusion", "lung_opacity", "nodule", "pneumothorax", "fibrosis")


def seconds_per_batch(models: Sequence[nn.Module], pixels: torch.Tensor, repeats: int) -> list[float]:
    """Median seconds of one forward per model, run alternately on the same batch after a warm-up each."""
    times: list[list[float]] = [[] for _ in models]
    with torch.inference_mode():
        for model in models:
            model(pixels)
        for _ in range(repeats):
            for index, model in enumerate(models):
                started = time.perf_counter()
                model(pixels)
                times[index].append(time.perf_counter() - started)
    return [float(np.median(t)) for t in times]


def _split(manifest: Path, split: str) -> tuple[list[Path], np.ndarray]:
    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle) if r["split"] == split]
    labels = np.array([[int(r[f]) for f in FINDINGS] for r in rows])  # (N, findings)
    return [manifest.parent / r["path"] for r in rows], labels


def _pixels(paths: list[Path], model_folder: Path) -> torch.Tensor:
    preprocess = InferencePreprocessor(PreprocessConfig.from_model_folder(model_folder))
    return torch.stack([preprocess(read_image(p)) for p in paths])  # (N, 3, H, W)


def _cls(model: torch.nn.Module, pixels: torch.Tensor, batch: int = 32) -> np.ndarray:
    with torch.inference_mode():
        parts = [model(pixels[i : i + batch]).cls for i in range(0, len(pixels), batch)]
    return torch.cat(parts).numpy()  # (N, D)


def _dynamic(encoder: torch.nn.Module) -> torch.nn.Module:
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(encoder, {torch.nn.Linear}, dtype=torch.qint8)


def quality_rows(model_folder: Path, manifest: Path, calibration: int) -> list[dict]:
    """Per variant (float32, static per-channel, dynamic per-tensor): the gate's numbers."""
    encoder = load_encoder(model_folder).eval()
    train_paths, train_labels = _split(manifest, "train")
    test_paths, test_labels = _split(manifest, "test")
    train, test = _pixels(train_paths, model_folder), _pixels(test_paths, model_folder)
    calibration_batches = [train[i : i + 32] for i in range(0, min(calibration, len(train)), 32)]
    variants = {
        "float32": encoder,
        "int8 static, per-channel": quantize_int8(encoder, calibration_batches, full_range=False),
        "int8 static, per-channel, 8-bit activations": quantize_int8(encoder, calibration_batches),
        "int8 dynamic, per-tensor": _dynamic(encoder),
    }
    reference = (_cls(encoder, test), _cls(encoder, train))
    labels = (train_labels, test_labels)
    timed = seconds_per_batch(list(variants.values()), test[:32], repeats=10)
    rows = []
    for (name, model), seconds in zip(variants.items(), timed, strict=True):
        features = (_cls(model, test), _cls(model, train))
        rows.append(
            {
                "variant": name,
                "auprc": probe_macro_auprc(features[1], train_labels, features[0], test_labels),
                "overlap": knn_overlap(reference, features),
                "cosine": centred_cosine(reference[0], features[0]),
                "speedup": timed[0] / seconds,
            }
        )
    rows.append(_noise_control(reference, variants["int8 static, per-channel"], (train, test), labels))
    rows[0]["images"] = (len(train), len(test), min(calibration, len(train)))
    return rows


def _noise_control(
    reference: tuple[np.ndarray, np.ndarray],
    int8: torch.nn.Module,
    pixels: tuple[torch.Tensor, torch.Tensor],
    labels: tuple[np.ndarray, np.ndarray],
) -> dict:
    """Float32 features plus Gaussian noise of int8's error size: how far the probe moves by chance."""
    train, test = pixels
    error = np.concatenate([_cls(int8, test) - reference[0], _cls(int8, train) - reference[1]])
    scale = error.std(axis=0, keepdims=True)  # (1, D), per feature
    generator = np.random.default_rng(0)
    noisy = tuple(r + generator.normal(size=r.shape) * scale for r in reference)
    return {
        "variant": "float32 + noise of int8's error size (control)",
        "auprc": probe_macro_auprc(noisy[1], labels[0], noisy[0], labels[1]),
        "overlap": knn_overlap(reference, (noisy[0], noisy[1])),
        "cosine": centred_cosine(reference[0], noisy[0]),
        "speedup": float("nan"),
    }


def vitb_speed(batch: int = 8) -> float:
    """Float32 over static int8 seconds per batch for a ViT-B/14 at 224 px (random weights)."""
    encoder = Encoder.from_preset("vitb14", image_size=224).eval()
    pixels = torch.randn(batch, 3, 224, 224)
    int8 = quantize_int8(encoder, [pixels], full_range=False)  # x86's default 7 bits, as recorded
    fp32_seconds, int8_seconds = seconds_per_batch([encoder, int8], pixels, repeats=5)
    return fp32_seconds / int8_seconds


def _speed(ratio: float) -> str:
    return "—" if np.isnan(ratio) else f"{ratio:.2f}"


def _gate(reference: dict, row: dict) -> str:
    drop = reference["auprc"] - row["auprc"]
    passed = drop <= MAX_AUPRC_DROP and row["overlap"] >= MIN_KNN_OVERLAP
    return (
        f"{row['variant']} {'passes' if passed else 'fails'} the gate (AUPRC change {-drop:+.3f}, "
        f"≥ −{MAX_AUPRC_DROP} needed; top-10 overlap {row['overlap']:.3f}, ≥ {MIN_KNN_OVERLAP} needed)"
    )


def body(rows: list[dict], vitb: float | None, model_folder: Path) -> str:
    """The section text: the table, the ViT-B/14 speed, each static variant's verdict, the control."""
    train, test, calibration = rows[0]["images"]
    lines = [
        f"Encoder: `{model_folder}` (the demo's pre-trained export). Calibration: the first {calibration} "
        f"training images; probe fitted on {train} training images, evaluated with the kNN overlap on "
        f"{test} held-out test images.",
        "",
        "| variant | probe macro AUPRC | Δ vs float32 | kNN top-10 overlap | centred CLS cosine "
        "| speed × fp32 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['variant']} | {row['auprc']:.3f} | {row['auprc'] - rows[0]['auprc']:+.3f} | "
            f"{row['overlap']:.3f} | {row['cosine']:.3f} | {_speed(row['speedup'])} |"
        )
    if vitb is not None:
        lines += ["", f"ViT-B/14 at 224 px, batch 8: static int8 runs at {vitb:.2f}× float32's speed."]
    verdicts = [_gate(rows[0], row) for row in rows if row["variant"].startswith("int8 static")]
    chance = rows[-1]["auprc"] - rows[0]["auprc"]
    lines += [
        "",
        "; ".join(verdicts) + ". The control row adds Gaussian noise of the static int8 error's size to the "
        f"float32 features: that alone moves the probe's AUPRC by {chance:+.3f} on {test} test images, so "
        "a 0.01 tolerance is about the probe's own noise at this size.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("/tmp/demo_seeds3/models/pretrained"))
    parser.add_argument("--manifest", type=Path, default=Path("/tmp/demo_seeds3/phantoms/manifest.csv"))
    parser.add_argument("--calibration", type=int, default=256, help="Calibration images (training split).")
    parser.add_argument("--skip-vitb", action="store_true", help="Skip the ViT-B/14 speed measurement.")
    parser.add_argument("--no-write", action="store_true", help="Print only; leave BENCHMARKS.md alone.")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = quality_rows(args.model, args.manifest, args.calibration)
    text = body(rows, None if args.skip_vitb else vitb_speed(), args.model)
    print(text)
    if not args.no_write:
        write_section("int8", text)


if __name__ == "__main__":
    main()
