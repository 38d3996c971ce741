"""Pixel mean and standard deviation of a dataset, for the normalisation of pre-training and inference.

The release normalises with MIMIC-CXR's statistics (mean 0.5307, std 0.2583 on every channel) of pixels
scaled to [0, 1] the release's way (8/16-bit rasters divided by 255 / 65535, DICOMs min-max scaled after
their LUTs; :func:`raddino.io.images.read_image`). :func:`compute_stats` gives the same numbers for your
images: streamed one image at a time (exact moments merged with Chan et al.'s pairwise update in float64,
so a million images need no more memory than one), over every pixel of every readable image (large
images weigh more; run it on the prepared 518 px PNGs to weigh images as training sees them). Unreadable
files are recorded in an errors CSV and skipped.
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from raddino.io.atomic import atomic_write_text
from raddino.io.failures import FailureLog
from raddino.io.manifest import load_inputs
from raddino.io.progress import progress_bar


@dataclass(frozen=True)
class PixelMoments:
    """Count, mean and sum of squared deviations of a set of pixels (merge with ``+``)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, pixels: np.ndarray) -> PixelMoments:
        """The moments of one image's pixels, in float64."""
        values = np.asarray(pixels, dtype=np.float64).ravel()
        if values.size == 0:
            return cls()
        mean = float(values.mean())
        return cls(int(values.size), mean, float(np.square(values - mean).sum()))

    def __add__(self, other: PixelMoments) -> PixelMoments:
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        count = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / count
        m2 = self.m2 + other.m2 + delta * delta * self.count * other.count / count
        return PixelMoments(count, mean, m2)

    @property
    def std(self) -> float:
        """Population standard deviation of the pixels (0 for no pixels)."""
        return float(np.sqrt(self.m2 / self.count)) if self.count else 0.0


@dataclass
class StatsConfig:
    """Settings of ``raddino stats``."""

    input: str = ""
    """Folder of images or manifest CSV."""
    out: str = "stats.json"
    """JSON file to write; unreadable files are listed beside it in <stem>.errors.csv."""
    workers: int = 1
    """Reading processes (1: no pool)."""
    sample: int | None = None
    """Use a random subset of this many images (all by default)."""
    seed: int = 0
    """Seed of the sample subset."""
    overwrite: bool = False
    """Replace an existing ``out`` file (otherwise an existing file is refused, untouched)."""


@dataclass(frozen=True)
class DatasetStats:
    """What ``raddino stats`` writes.

    Attributes:
        mean: Pixel mean in [0, 1].
        std: Pixel standard deviation.
        image_mean: ``mean`` three times, as ``preprocessor_config.json`` and ``PreprocessConfig`` want it.
        image_std: ``std`` three times.
        n_images: Images read.
        n_failed: Files that could not be read (listed in ``errors``).
        n_pixels: Pixels counted.
        input: The folder or manifest.
        errors: The errors CSV when files failed, else None.
    """

    mean: float
    std: float
    image_mean: tuple[float, float, float]
    image_std: tuple[float, float, float]
    n_images: int
    n_failed: int
    n_pixels: int
    input: str
    errors: str | None = None

    def to_json(self) -> str:
        """The statistics as indented JSON."""
        return json.dumps(asdict(self), indent=2) + "\n"


def _read_moments(path: str) -> tuple[PixelMoments | None, str]:
    """The moments of one file, or None and the reason it could not be read (runs in workers)."""
    from raddino.io.images import read_image

    try:
        image = read_image(path)
    except (ValueError, OSError) as error:  # ImageReadError is a ValueError
        return None, getattr(error, "reason", None) or str(error)
    return PixelMoments.of(image.pixels), ""


def _results(paths: Sequence[str], workers: int) -> Iterator[tuple[PixelMoments | None, str]]:
    """Per-file results in input order (order keeps the float sums reproducible)."""
    if workers <= 1:
        yield from map(_read_moments, paths)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as executor:
        yield from executor.map(_read_moments, paths, chunksize=16)


def compute_stats(
    source: str | Path,
    *,
    workers: int = 1,
    errors: str | Path | None = None,
    sample: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> DatasetStats:
    """Pixel mean and std of the images in a folder or manifest.

    Args:
        source: A folder of images or a manifest CSV (``path`` column).
        workers: Reading processes (1: in this process).
        errors: CSV for per-file failures (an old file there is replaced); only counted when None.
        sample: Use a random subset of this many images (reproducible with ``seed``); all when None.
        seed: Seed of the subset.
        progress: Show a progress bar.

    Returns:
        The statistics.

    Raises:
        ManifestError: the input is not a folder or manifest.
        ValueError: no image could be read, or bad ``workers`` / ``sample``.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    manifest = load_inputs(source)
    paths = [str(path) for path in manifest.paths()]
    if sample is not None:
        if sample < 1:
            raise ValueError(f"sample must be >= 1, got {sample}")
        if sample < len(paths):
            chosen = np.sort(np.random.default_rng(seed).choice(len(paths), size=sample, replace=False))
            paths = [paths[index] for index in chosen]
    failures = FailureLog(Path(errors)) if errors is not None else None
    if failures is not None:
        failures.reset()
    moments = PixelMoments()
    n_images = n_failed = 0
    results = _results(paths, workers)
    for path, (image_moments, reason) in progress_bar(
        zip(paths, results, strict=True), total=len(paths), desc="stats", unit="img", disable=not progress
    ):
        if image_moments is None:
            n_failed += 1
            if failures is not None:
                failures.record(path, reason, stage="read")
            continue
        moments = moments + image_moments
        n_images += 1
    if n_images == 0:
        where = f" (see {failures.path})" if failures is not None else ""
        raise ValueError(f"{source}: none of its {len(paths)} images could be read{where}")
    mean, std = moments.mean, moments.std
    return DatasetStats(
        mean=mean,
        std=std,
        image_mean=(mean, mean, mean),
        image_std=(std, std, std),
        n_images=n_images,
        n_failed=n_failed,
        n_pixels=moments.count,
        input=str(source),
        errors=str(failures.path) if failures is not None and n_failed else None,
    )


def write_stats(stats: DatasetStats, path: str | Path) -> Path:
    """Write the statistics as JSON, atomically."""
    return atomic_write_text(path, stats.to_json())


def run_stats(config: StatsConfig, progress: bool = True) -> DatasetStats:
    """:func:`compute_stats` of ``config.input`` written to ``config.out``, failures in its errors CSV.

    Raises:
        FileExistsError: ``config.out`` exists and ``config.overwrite`` is off (checked before any reading).
    """
    out = Path(config.out)
    if out.exists() and not config.overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite (overwrite=True) to replace it")
    errors = out.with_name(f"{out.stem}.errors.csv")
    stats = compute_stats(
        config.input,
        workers=config.workers,
        errors=errors,
        sample=config.sample,
        seed=config.seed,
        progress=progress,
    )
    write_stats(stats, out)
    return stats
