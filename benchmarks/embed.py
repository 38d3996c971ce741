"""Throughput and memory of ``raddino embed`` against the model alone and against the reference path.

Measures, on the same images and the same randomly initialised ViT-B/14 at 518 px (LayerScale 1.0, so the
blocks shape the output and images differ; DINOv2's 1e-5 start would give every image the same CLS):

(a) model-only forward throughput on already-preprocessed batches;
(b) ``raddino embed`` end to end (decode + preprocess in DataLoader workers, forward, shards, merge);
(c) the reference: transformers ``AutoImageProcessor`` + ``AutoModel`` called one image at a time, as the
    official ``rad-dino`` package does;

each path on the same images after its own warm-up (a batch, or an embed run on one batch of images), the
three paths run ``--rounds`` times in alternating order, medians and per-round ratios reported. (b) and
(c) must agree: the cosine of each image's mean-centred CLS vectors from the two paths (centred by the
mean over images, so the shared component every image has does not make them look alike), against the
mean-centred cosine between different images. Then the peak RSS of (b) on 1x and 4x the images (a small
model, since memory growth is about the data path), in their own processes. On a GPU it also records the
utilisation: FLOPs from the architecture (:mod:`benchmarks.flops`) × images/s / the measured bf16 matmul
peak.

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
) -> tuple[float, np.ndarray]:
    """(b) images/s of the library call behind ``raddino embed`` (a fresh run, nothing to resume) and the
    CLS vectors (N, D) in file-name order. A first embed run on one batch of the images warms caches,
    kernels and the worker start-up path; the timed run starts anew."""
    from raddino.features.embed import EmbedConfig, embed
    from raddino.features.store import read_embeddings

    images = sorted(folder.glob("*.png"))
    warm = out.parent / f"{out.stem}-warm-up"
    warm.mkdir(parents=True, exist_ok=True)
    for path in images[:batch_size]:
        target = warm / path.name
        if not target.exists():
            target.symlink_to(path)

    def run(source: Path, target: Path) -> tuple[float, int]:
        config = EmbedConfig(
            input=str(source),
            model=str(model_dir),
            out=str(target),
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
        return elapsed, summary.embedded

    run(warm, out.parent / f"{out.stem}-warm-up.parquet")
    elapsed, embedded = run(folder, out)
    assert embedded == len(images)
    ids, cls = read_embeddings(out)
    order = sorted(range(len(ids)), key=lambda row: Path(ids[row]).name)
    return embedded / elapsed, np.asarray(cls, dtype=np.float32)[order]


def reference(
    model_dir: Path, paths: list[Path], device: torch.device, precision: str = "fp32"
) -> tuple[float, np.ndarray]:
    """(c) images/s of AutoImageProcessor + AutoModel, one image at a time (the rad-dino package's way),
    after one warm-up image, and the CLS vectors (N, D) in the order of ``paths``."""
    from transformers import AutoImageProcessor, AutoModel

    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision, torch.float32)
    processor = AutoImageProcessor.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, dtype=dtype).to(device).eval()

    def one(path: Path) -> torch.Tensor:
        inputs = processor(images=Image.open(path), return_tensors="pt").to(device)
        return model(pixel_values=inputs["pixel_values"].to(dtype)).last_hidden_state[:, 0].float().cpu()

    with torch.inference_mode():
        one(paths[0])  # warm-up
        synchronize(device)
        start = time.perf_counter()
        cls = [one(path) for path in paths]
    rate = len(paths) / (time.perf_counter() - start)
    return rate, torch.cat(cls).numpy()


def centred_cosines(first: np.ndarray, second: np.ndarray) -> dict[str, float]:
    """Agreement of two paths' vectors for the same N images, both centred by ``first``'s mean over images.

    Returns:
        ``same_image_min`` / ``same_image_median``: the cosine of each image's two vectors;
        ``other_images_median``: the median cosine between different images' vectors of ``first`` (near 0
        when images differ; near 1 would mean the check proves nothing).
    """
    mean = first.mean(axis=0, keepdims=True)  # (1, D)
    a, b = first - mean, second - mean  # (N, D)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    same = (a * b).sum(axis=1)  # (N,)
    between = a @ a.T  # (N, N)
    others = between[~np.eye(len(a), dtype=bool)]
    return {
        "same_image_min": float(same.min()),
        "same_image_median": float(np.median(same)),
        "other_images_median": float(np.median(others)),
    }


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
    """Forward FLOPs of one image at the model's size, from the architecture (attention included)."""
    from benchmarks.flops import ViTShape, vit_forward_flops
    from raddino.models import load_encoder

    encoder = load_encoder(model_dir)
    return float(vit_forward_flops(ViTShape.from_config(encoder.config), encoder.image_size))


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


def measure_paths(
    model_dir: Path, work: Path, paths: list[Path], args: argparse.Namespace, device: torch.device
) -> dict[str, float]:
    """(a), (b) and (c) on the same images, ``args.rounds`` rounds in alternating order; medians, per-round
    ratios and the agreement of (b) and (c)."""
    runs: dict[str, list[float]] = {"model_only": [], "embed": [], "reference": []}
    vectors: dict[str, np.ndarray] = {}
    for index in range(args.rounds):
        order = ["model_only", "embed", "reference"]
        for name in order if index % 2 == 0 else order[::-1]:
            if name == "model_only":
                rate = model_only(model_dir, paths, args.batch_size, device, args.precision)
            elif name == "embed":
                rate, vectors["embed"] = end_to_end(
                    model_dir,
                    work / "images",
                    work / "emb.parquet",
                    args.batch_size,
                    device.type,
                    args.precision,
                    args.workers,
                )
            else:
                rate, vectors["reference"] = reference(model_dir, paths, device, args.precision)
            runs[name].append(rate)
            print(f"round {index + 1}/{args.rounds} {name}: {rate:.2f} images/s", flush=True)
    results: dict[str, float] = {name: float(np.median(rates)) for name, rates in runs.items()}
    for label, first, second in (("b/a", "embed", "model_only"), ("b/c", "embed", "reference")):
        per_round = [x / y for x, y in zip(runs[first], runs[second], strict=True)]
        results[label] = float(np.median(per_round))
        results[f"{label} min"], results[f"{label} max"] = min(per_round), max(per_round)
    results.update(centred_cosines(vectors["reference"], vectors["embed"]))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=None, help="images per path; default 6 CPU, 512 GPU")
    parser.add_argument("--batch-size", type=int, default=None, help="default 4 on CPU, 64 on GPU")
    parser.add_argument("--image-side", type=int, default=1024, help="shorter side of the test PNGs")
    parser.add_argument("--precision", default=None, help="fp32 on CPU by default, bf16 on GPU")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of the three paths")
    parser.add_argument("--rss-images", type=int, default=256, help="images of the 1x memory run")
    parser.add_argument("--no-write", action="store_true", help="print, do not touch BENCHMARKS.md")
    args = parser.parse_args()

    from raddino.data.preprocess import PreprocessConfig
    from raddino.models import Encoder

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    count = args.images = args.images or (512 if gpu else 6)
    args.batch_size = args.batch_size or (64 if gpu else 4)
    args.precision = args.precision or ("bf16" if gpu else "fp32")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        paths = make_images(work / "images", count, args.image_side)
        model_dir = work / "vitb14"
        encoder = Encoder.from_preset("vitb14", seed=0, layerscale_value=1.0)
        encoder.save_pretrained(model_dir, preprocess=PreprocessConfig())
        results = measure_paths(model_dir, work, paths, args, device)
        results["rss_1x_mib"] = peak_rss_child(args.rss_images, work)
        results["rss_4x_mib"] = peak_rss_child(4 * args.rss_images, work)
        if gpu:
            peak = matmul_peak(device, torch.bfloat16)
            achieved = flops_per_image(model_dir) * results["embed"]
            results.update({"matmul_peak_tflops": peak / 1e12, "mfu_embed": achieved / peak})
    print(json.dumps(results, indent=2))
    if not args.no_write:
        write_section("embed", render(results, args))


def render(results: dict[str, float], args: argparse.Namespace) -> str:
    """The BENCHMARKS.md section of one run."""
    r, count = results, args.images
    rows = [
        "| measurement | value |",
        "| --- | --- |",
        f"| (a) model only, ViT-B/14 at 518, batch {args.batch_size}, {args.precision} | "
        f"{r['model_only']:.2f} img/s |",
        f"| (b) `raddino embed` end to end ({count} PNGs, {args.image_side} px) | {r['embed']:.2f} img/s |",
        "| (c) reference: AutoImageProcessor + AutoModel, one image at a time | "
        f"{r['reference']:.2f} img/s |",
        f"| b/a (target ≥ 0.9 on CPU), median of rounds (min–max) | {r['b/a']:.2f} "
        f"({r['b/a min']:.2f}–{r['b/a max']:.2f}) |",
        f"| b/c (target ≥ 1.0 on CPU, ≥ 10 on GPU), median of rounds (min–max) | {r['b/c']:.2f} "
        f"({r['b/c min']:.2f}–{r['b/c max']:.2f}) |",
        f"| (b) vs (c), mean-centred CLS cosine of the same image: min / median | "
        f"{r['same_image_min']:.4f} / {r['same_image_median']:.4f} |",
        f"| mean-centred CLS cosine between different images (median) | {r['other_images_median']:.3f} |",
        f"| peak RSS, {args.rss_images} images (test-sized model, patch tokens on) | "
        f"{r['rss_1x_mib']:.0f} MiB |",
        f"| peak RSS, {4 * args.rss_images} images | {r['rss_4x_mib']:.0f} MiB "
        f"({r['rss_4x_mib'] / r['rss_1x_mib']:.2f}x) |",
    ]
    if "matmul_peak_tflops" in r:
        rows.append(f"| bf16 matmul peak (measured) | {r['matmul_peak_tflops']:.0f} TFLOP/s |")
        rows.append(f"| utilisation of (b), FLOPs from the architecture | {r['mfu_embed']:.1%} |")
    load = os.getloadavg()[0]
    note = (
        f"\n\nEach path embedded the same {count} images after its own warm-up, {args.rounds} rounds in "
        "alternating order (medians). The encoder is a random ViT-B/14 with LayerScale 1.0, so images get "
        "different CLS vectors (a 1e-5 start gives every image the same one and any comparison passes); "
        "cosines are of vectors centred by the mean over images. Load average when the run ended: "
        f"{load:.1f} on {os.cpu_count()} cores (other processes share the machine)."
    )
    return "## `raddino embed` throughput and memory\n\n" + "\n".join(rows) + note


if __name__ == "__main__":
    main()
