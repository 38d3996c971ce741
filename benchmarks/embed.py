"""Throughput and memory of ``raddino embed`` against the model alone and against the reference path.

Measures, on the same images and the same randomly initialised ViT-B/14 at 518 px:

(a) model-only forward throughput on already-preprocessed batches;
(b) ``raddino embed`` end to end (decode + preprocess in DataLoader workers, forward, shards, merge);
(c) the reference: transformers ``AutoImageProcessor`` + ``AutoModel`` called one image at a time, as the
    official ``rad-dino`` package does;

and the peak RSS of (b) on 1x and 4x the images (with a small model, since memory growth is about the data
path), then writes images/s, the ratios b/a and b/c and the machine to BENCHMARKS.md. On a GPU it also
records the model FLOP utilisation: achieved FLOP/s / the device's measured bf16 matmul peak.

    python benchmarks/embed.py                 # CPU defaults (a few minutes on two cores)
    python benchmarks/embed.py --images 512 --batch-size 64 --precision bf16   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import write_section


def make_images(folder: Path, count: int, side: int, seed: int = 0) -> list[Path]:
    """Smooth random 8-bit PNGs of ``side``×``side*1.2`` (a chest X-ray's aspect ratio)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        coarse = rng.random((side // 32, side // 32))
        picture = np.kron(coarse, np.ones((32, 38)))[:side, : int(side * 1.2)]
        path = folder / f"xray{index:05d}.png"
        Image.fromarray((picture * 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


def model_only(
    model_dir: Path, paths: list[Path], batch_size: int, device: torch.device, precision: str
) -> float:
    """(a) images/s of the encoder's forward on preprocessed batches held in memory."""
    from raddino.data.preprocess import InferencePreprocessor, PreprocessConfig
    from raddino.io.images import read_image
    from raddino.models import load_encoder

    encoder = load_encoder(model_dir).to(device).eval()
    preprocess = InferencePreprocessor(PreprocessConfig.from_model_folder(model_dir))
    pixels = torch.stack([preprocess(read_image(path)) for path in paths])  # (N, 3, 518, 518)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    with (
        torch.inference_mode(),
        torch.autocast(device.type, dtype=dtype or torch.float32, enabled=bool(dtype)),
    ):
        encoder.forward_features(pixels[:batch_size].to(device))  # warm-up
        synchronize(device)
        start = time.perf_counter()
        for begin in range(0, len(pixels), batch_size):
            encoder.forward_features(pixels[begin : begin + batch_size].to(device))
        synchronize(device)
    return len(pixels) / (time.perf_counter() - start)


def end_to_end(
    model_dir: Path,
    folder: Path,
    out: Path,
    batch_size: int,
    device: str,
    precision: str,
    workers: int | None,
) -> float:
    """(b) images/s of the library call behind ``raddino embed`` (a fresh run, nothing to resume)."""
    from raddino.features.embed import EmbedConfig, embed

    config = EmbedConfig(
        input=str(folder),
        model=str(model_dir),
        out=str(out),
        batch_size=batch_size,
        device=device,
        precision=precision,
        num_workers=workers,
        overwrite=True,
    )  # type: ignore[arg-type]
    start = time.perf_counter()
    summary = embed(config)
    elapsed = time.perf_counter() - start
    assert summary.failed == 0
    assert summary.embedded == len(list(folder.glob("*.png")))
    return summary.embedded / elapsed


def reference(model_dir: Path, paths: list[Path], device: torch.device) -> float:
    """(c) images/s of AutoImageProcessor + AutoModel, one image at a time (the rad-dino package's way)."""
    from transformers import AutoImageProcessor, AutoModel

    processor = AutoImageProcessor.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir).to(device).eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for path in paths:
            inputs = processor(images=Image.open(path), return_tensors="pt").to(device)
            outputs = model(**inputs)
            outputs.last_hidden_state[:, 0].cpu()
    return len(paths) / (time.perf_counter() - start)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_rss_child(count: int, workdir: Path) -> float:
    """Peak RSS (MiB) of a separate process that embeds ``count`` images with a small model.

    The child reports its own peak and its DataLoader workers' (the larger of the two), so each run is
    measured on its own.
    """
    script = (
        "import sys; sys.path.insert(0, '.'); from benchmarks.embed import rss_run;"
        " rss_run(int(sys.argv[1]), sys.argv[2])"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(count), str(workdir)],
        check=True,
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    return float(done.stdout.strip().splitlines()[-1])


def rss_run(count: int, workdir: str) -> None:
    """Child process of :func:`peak_rss_child`: images + a small encoder, then one embed run."""
    from raddino.data.preprocess import PreprocessConfig
    from raddino.features.embed import EmbedConfig, embed
    from raddino.models import Encoder

    root = Path(workdir) / f"rss{count}"
    make_images(root / "images", count, 256)
    model_dir = root / "model"
    Encoder.from_preset("test", seed=0).save_pretrained(
        model_dir, preprocess=PreprocessConfig(shortest_edge=56, crop_size=(56, 56))
    )
    embed(
        EmbedConfig(
            input=str(root / "images"),
            model=str(model_dir),
            out=str(root / "emb.parquet"),
            batch_size=16,
            num_workers=1,
            shard_size=64,
            patch_tokens=True,
            device="cpu",
        )
    )
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    workers = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(max(own, workers) / 1024)


def flops_per_image(model_dir: Path) -> float:
    """Forward FLOPs of one image, counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    from raddino.models import load_encoder

    encoder = load_encoder(model_dir).eval()
    size = encoder.image_size
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        encoder.forward_features(torch.zeros(1, 3, size, size))
    return float(counter.get_total_flops())


def matmul_peak(device: torch.device, dtype: torch.dtype, side: int = 8192, repeats: int = 20) -> float:
    """Measured dense matmul FLOP/s of the device in ``dtype``."""
    a = torch.randn(side, side, device=device, dtype=dtype)
    b = torch.randn(side, side, device=device, dtype=dtype)
    a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * side**3 * repeats / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--images", type=int, default=None, help="images for (a)-(c); default 12 CPU, 512 GPU"
    )
    parser.add_argument("--batch-size", type=int, default=None, help="default 4 on CPU, 64 on GPU")
    parser.add_argument("--image-side", type=int, default=1024, help="shorter side of the test PNGs")
    parser.add_argument("--precision", default=None, help="fp32 on CPU by default, bf16 on GPU")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--rss-images", type=int, default=256, help="images of the 1x memory run")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    args = parser.parse_args()

    from raddino.data.preprocess import PreprocessConfig
    from raddino.models import Encoder

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    count = args.images or (512 if gpu else 12)
    batch_size = args.batch_size or (64 if gpu else 4)
    precision = args.precision or ("bf16" if gpu else "fp32")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        paths = make_images(work / "images", count, args.image_side)
        model_dir = work / "vitb14"
        Encoder.from_preset("vitb14", seed=0).save_pretrained(model_dir, preprocess=PreprocessConfig())
        a_before = model_only(model_dir, paths, batch_size, device, precision)
        b = end_to_end(
            model_dir, work / "images", work / "emb.parquet", batch_size, device.type, precision, args.workers
        )
        a = (a_before + model_only(model_dir, paths, batch_size, device, precision)) / 2  # bracket (b)
        c = reference(model_dir, paths[: max(4, count // 4)] if not gpu else paths, device)
        rss_1x = peak_rss_child(args.rss_images, work)
        rss_4x = peak_rss_child(4 * args.rss_images, work)
        results = {
            "model_only": a,
            "embed": b,
            "reference": c,
            "b/a": b / a,
            "b/c": b / c,
            "rss_1x_mib": rss_1x,
            "rss_4x_mib": rss_4x,
        }
        if gpu:
            peak = matmul_peak(device, torch.bfloat16)
            achieved = flops_per_image(model_dir) * b
            results.update({"matmul_peak_tflops": peak / 1e12, "mfu_embed": achieved / peak})
    print(json.dumps(results, indent=2))
    if args.no_write:
        return
    rows = [
        "| measurement | value |",
        "| --- | --- |",
        f"| (a) model only, ViT-B/14 at 518, batch {batch_size}, {precision} | {a:.2f} img/s |",
        f"| (b) `raddino embed` end to end ({count} PNGs, {args.image_side} px) | {b:.2f} img/s |",
        f"| (c) reference: AutoImageProcessor + AutoModel, one image at a time | {c:.2f} img/s |",
        f"| b/a (target ≥ 0.9 on CPU) | {b / a:.2f} |",
        f"| b/c (target ≥ 1.0 on CPU, ≥ 10 on GPU) | {b / c:.2f} |",
        f"| peak RSS, {args.rss_images} images (test-sized model, patch tokens on) | {rss_1x:.0f} MiB |",
        f"| peak RSS, {4 * args.rss_images} images | {rss_4x:.0f} MiB ({rss_4x / rss_1x:.2f}x) |",
    ]
    if gpu:
        rows.append(f"| bf16 matmul peak (measured) | {results['matmul_peak_tflops']:.0f} TFLOP/s |")
        rows.append(f"| model FLOP utilisation of (b) | {results['mfu_embed']:.1%} |")
    load = os.getloadavg()[0]
    note = (
        f"\n\nLoad average when the run ended: {load:.1f} on {os.cpu_count()} cores (other processes"
        " share the machine; the ratios compare runs made one after the other in the same process)."
    )
    write_section("embed", "## `raddino embed` throughput and memory\n\n" + "\n".join(rows) + note)


if __name__ == "__main__":
    main()
