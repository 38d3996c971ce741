"""Throughput of the multi-crop augmentation per data-loader worker, against DINOv2's torchvision pipeline.

One thread (as one DataLoader worker), 518×640 grey images (a prepared chest X-ray: shorter side 518),
2 global crops at 518 and 8 local crops at 196 — the RAD-DINO crop settings. ``raddino`` is
:class:`raddino.data.augment.MultiCropAugmentation` on the float image; the reference is DINOv2's
``DataAugmentationDINO`` recipe rebuilt with torchvision on the RGB PIL image DINOv2 feeds it
(RandomResizedCrop bicubic, flip, ColorJitter p 0.8, RandomGrayscale 0.2, GaussianBlur k=9, solarise,
ToTensor, Normalize). Each runs ``--repeats`` times (alternating) and the best rate is kept. The number
tells how many workers a GPU needs: images per step ÷ steps per second ÷ this rate.

    python benchmarks/augment.py
    python benchmarks/augment.py --images 40 --repeats 5
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.report import write_section
from raddino.data.augment import MultiCropAugmentation, MultiCropConfig


def dinov2_reference(config: MultiCropConfig) -> Callable[[Image.Image], list[torch.Tensor]]:
    """DINOv2's augmentation recipe (probabilities as intended, not as its blur bug applies them)."""
    from torchvision import transforms

    def blur(p: float) -> transforms.RandomApply:
        return transforms.RandomApply([transforms.GaussianBlur(9, sigma=(0.1, 2.0))], p=p)

    colour = transforms.Compose(
        [
            transforms.RandomHorizontalFlip(p=0.5),
            transforms.RandomApply([transforms.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
            transforms.RandomGrayscale(p=0.2),
        ]
    )
    normalise = transforms.Compose(
        [transforms.ToTensor(), transforms.Normalize((0.5307,) * 3, (0.2583,) * 3)]
    )
    bicubic = transforms.InterpolationMode.BICUBIC
    global_crop = transforms.RandomResizedCrop(
        config.global_crops_size, scale=config.global_crops_scale, interpolation=bicubic
    )
    local_crop = transforms.RandomResizedCrop(
        config.local_crops_size, scale=config.local_crops_scale, interpolation=bicubic
    )
    first = transforms.Compose([global_crop, colour, blur(1.0), normalise])
    second = transforms.Compose(
        [global_crop, colour, blur(0.1), transforms.RandomSolarize(128, p=0.2), normalise]
    )
    local = transforms.Compose([local_crop, colour, blur(0.5), normalise])

    def run(image: Image.Image) -> list[torch.Tensor]:
        return [first(image), second(image)] + [local(image) for _ in range(config.local_crops_number)]

    return run


def best_rate(work: Callable[[int], object], images: int, repeats: int) -> float:
    """Best images/s over ``repeats`` runs of ``images`` calls."""
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for index in range(images):
            work(index)
        rates.append(images / (time.perf_counter() - start))
    return max(rates)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=20, help="images per run (default 20)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per pipeline, best kept (default 3)")
    args = parser.parse_args()
    torch.set_num_threads(1)

    config = MultiCropConfig()
    rng = np.random.default_rng(0)
    coarse = rng.random((66, 82))
    pixels = np.kron(coarse, np.ones((8, 8)))[:518, :640].astype(np.float32)  # smooth, non-uniform
    ours = MultiCropAugmentation(config)
    reference = dinov2_reference(config)
    pil_image = Image.fromarray(np.round(pixels * 255).astype(np.uint8)).convert("RGB")
    torch.manual_seed(0)

    ours_rates, reference_rates = [], []
    for _ in range(args.repeats):
        ours_rates.append(best_rate(lambda i: ours(pixels, np.random.default_rng(i)), args.images, 1))
        reference_rates.append(best_rate(lambda i: reference(pil_image), args.images, 1))
    ours_rate, reference_rate = max(ours_rates), max(reference_rates)

    crops = 2 + config.local_crops_number
    workers = int(np.ceil(40 / ours_rate))
    rows = [
        ("raddino `MultiCropAugmentation` (float grey, torch)", ours_rate),
        ("DINOv2 recipe in torchvision (RGB PIL)", reference_rate),
    ]
    table = "\n".join(
        f"| {name} | {rate:.1f} | {rate * crops:.0f} | {rate / reference_rate:.2f}× |" for name, rate in rows
    )
    body = (
        "## Multi-crop augmentation, one data-loader worker\n\n"
        f"518×640 grey image → 2 × 518 px + {config.local_crops_number} × 196 px crops, one thread, "
        f"best of {args.repeats} runs of {args.images} images. The reference works on 3 channels and "
        "jitters hue and saturation, which a grey image does not need.\n\n"
        "| pipeline | images/s per worker | crops/s | ratio |\n|---|---|---|---|\n"
        f"{table}\n\n"
        f"At batch 40 per GPU and 1 step/s, each GPU needs {workers} data-loader worker(s) for augmentation "
        "alone (image decoding comes on top)."
    )
    print(body)
    write_section("augment", body)


if __name__ == "__main__":
    main()
