"""Pre-training input from tar shards against a folder of PNGs: images/s read (decode) and read + augment.

Both hold the same prepared images (``raddino prepare`` and ``raddino shard`` of the same synthetic
518×640 8-bit inputs, so the PNG bytes are equal), read in the sampler's order (a seeded permutation) by
:class:`raddino.pretrain.dataset.PretrainDataset` in one process with one thread, as one DataLoader worker
does. "read" decodes only; "read + augment" adds the RAD-DINO crops (2 × 518 + 8 × 196). The two sources
alternate for ``--rounds`` rounds after one warm-up round of each (discarded), and the median round is kept;
the files are in the page cache after the warm-up, so this measures the per-image cost on local disk, not
network storage's metadata round trips (one open per image for the folder, one per shard for shards).

    python benchmarks/shards.py                  # 200 images, shards of 100, 5 rounds: about 1 minute
    python benchmarks/shards.py --images 1000 --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import write_section
from raddino.data.augment import MultiCropAugmentation, MultiCropConfig
from raddino.data.prepare import prepare_images
from raddino.data.shards import ShardSettings, open_shards, write_shards
from raddino.io.manifest import read_manifest
from raddino.io.png import write_png
from raddino.pretrain.dataset import PretrainDataset


def make_inputs(folder: Path, count: int) -> Path:
    """``count`` smooth, non-uniform 518×640 grey PNGs (a prepared chest X-ray's size)."""
    rng = np.random.default_rng(0)
    for index in range(count):
        coarse = rng.random((66, 82))
        pixels = np.kron(coarse, np.ones((8, 8)))[:518, :640] * 0.8 + rng.random((518, 640)) * 0.2
        write_png(folder / f"image_{index:05d}.png", pixels.astype(np.float32))
    return folder


def round_rate(dataset: PretrainDataset, order: np.ndarray, augment: bool) -> float:
    """Images/s of one pass over ``order``: decode only, or decode + multi-crop."""
    start = time.perf_counter()
    for position, index in enumerate(order):
        if augment:
            dataset[(position, int(index))]
        else:
            dataset.images.pixels(int(index))
    return len(order) / (time.perf_counter() - start)


def measure(sources: dict[str, PretrainDataset], order: np.ndarray, augment: bool, rounds: int) -> dict:
    """Median images/s per source over alternating rounds, after one warm-up round each."""
    for dataset in sources.values():
        round_rate(dataset, order[: min(len(order), 20)], augment)
    rates: dict[str, list[float]] = {name: [] for name in sources}
    for _ in range(rounds):
        for name, dataset in sources.items():
            rates[name].append(round_rate(dataset, order, augment))
    return {name: (statistics.median(values), min(values), max(values)) for name, values in rates.items()}


def verdict(rates: dict, what: str) -> str:
    """One sentence: do the two sources' round ranges overlap, or which is faster by how much."""
    (folder, folder_low, folder_high), (shards, shards_low, shards_high) = (
        rates["PNG folder"],
        rates["tar shards"],
    )
    if shards_low <= folder_high and folder_low <= shards_high:
        ratio = shards / folder
        return f"{what.capitalize()}: the two sources' round ranges overlap (median ratio {ratio:.2f}×)."
    faster = "shards" if shards > folder else "the folder"
    return f"{what.capitalize()}: {faster} faster in every round (median ratio {shards / folder:.2f}×)."


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=200, help="images (default 200)")
    parser.add_argument("--per-shard", type=int, default=100, help="images per shard (default 100)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (default 5)")
    parser.add_argument(
        "--augment-images", type=int, default=60, help="images per augment round (default 60)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        inputs = make_inputs(root / "inputs", args.images)
        prepared = prepare_images(inputs, root / "prepared", workers=1, progress=False)
        settings = ShardSettings(images_per_shard=args.per_shard)
        started = time.perf_counter()
        write_shards(inputs, root / "shards", settings, workers=1, progress=False)
        shard_seconds = time.perf_counter() - started
        started = time.perf_counter()
        shard_images = open_shards(root / "shards")
        open_seconds = time.perf_counter() - started
        augmentation = MultiCropAugmentation(MultiCropConfig())
        sources = {
            "PNG folder": PretrainDataset(read_manifest(prepared.manifest_path), augmentation),
            "tar shards": PretrainDataset(shard_images, augmentation),
        }
        order = np.random.default_rng(0).permutation(args.images)
        read = measure(sources, order, augment=False, rounds=args.rounds)
        augmented = measure(sources, order[: args.augment_images], augment=True, rounds=args.rounds)
        shard_mib = sum(path.stat().st_size for path in (root / "shards").glob("*.tar")) / 2**20
    rows = []
    for name in sources:
        (r, r_low, r_high), (a, a_low, a_high) = read[name], augmented[name]
        rows.append(
            f"| {name} | {r:.0f} ({r_low:.0f}–{r_high:.0f}) | {r / read['PNG folder'][0]:.2f}× "
            f"| {a:.1f} ({a_low:.1f}–{a_high:.1f}) | {a / augmented['PNG folder'][0]:.2f}× |"
        )
    body = (
        "## Pre-training input: tar shards vs a PNG folder, one worker\n\n"
        f"{args.images} prepared 518×640 grey PNGs (synthetic), {len(shard_images.files)} shards of "
        f"{args.per_shard} ({shard_mib:.1f} MiB in all); the sampler's order; one process, one thread; "
        f"median (min–max) of {args.rounds} alternating rounds after a warm-up, files in the page cache. "
        f"Read: {args.images} images per round; read + augment (2 × 518 + 8 × 196 crops): "
        f"{args.augment_images} images per round.\n\n"
        "| source | read, images/s | ratio | read + augment, images/s | ratio |\n|---|---|---|---|---|\n"
        + "\n".join(rows)
        + f"\n\n`raddino shard` wrote them at {args.images / shard_seconds:.1f} images/s with one worker "
        f"(prepare step included); `open_shards` loaded the indexes in {open_seconds * 1000:.1f} ms. "
        f"{verdict(read, 'read')} {verdict(augmented, 'read + augment')} What shards save is one file open "
        "(and, on network storage, its metadata round trips) per image, which this page-cached local run "
        "does not show."
    )
    print(body)
    write_section("shards", body)


if __name__ == "__main__":
    main()
