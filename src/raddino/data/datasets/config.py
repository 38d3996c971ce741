"""Settings of ``raddino manifest DATASET`` and ``raddino manifest merge``, and the calls they make.

>>> from raddino.data.datasets.config import ManifestConfig, make_manifest
>>> config = ManifestConfig(root="/data/nih", out="nih.csv")
>>> manifest, errors = make_manifest("nih-cxr", config)  # doctest: +SKIP

A dataset with options of its own has a subclass adding them (``MimicManifestConfig.layout``); they are
passed to the dataset's adapter as keywords.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from raddino.data.datasets.merge import MergeResult, merge_manifests, write_merged
from raddino.data.datasets.registry import build_manifest, write_dataset_manifest
from raddino.data.datasets.schema import DatasetManifest
from raddino.data.splits import parse_fractions


@dataclass
class ManifestConfig:
    """Settings every ``raddino manifest DATASET`` takes."""

    root: str = ""
    """The dataset's folder, as downloaded and unpacked."""
    out: str = ""
    """Manifest CSV to write (rows that were reported go to <stem>.errors.csv beside it)."""
    metadata: list[str] = field(default_factory=list)
    """Metadata file to use instead of the one under the root (repeatable)."""
    check_images: bool = True
    """Check that every image exists."""
    keep_missing: bool = False
    """Keep rows whose image is not on disk (they are reported either way)."""
    split: str = ""
    """Train/val/test fractions drawn by subject where there is no official split, e.g. 70/15/15."""
    seed: int = 0
    """Seed of the split draw."""
    strict: bool = False
    """Exit 1 if any row was reported."""


@dataclass
class MimicManifestConfig(ManifestConfig):
    """Settings of ``raddino manifest mimic-cxr``."""

    layout: Literal["auto", "jpg", "dicom"] = "auto"
    """jpg (MIMIC-CXR-JPG), dicom (MIMIC-CXR) or auto (whichever is on disk)."""


@dataclass
class BraxManifestConfig(ManifestConfig):
    """Settings of ``raddino manifest brax``."""

    image_format: Literal["png", "dicom"] = "png"
    """Which rendering rows point to."""


@dataclass
class VindrCxrManifestConfig(ManifestConfig):
    """Settings of ``raddino manifest vindr-cxr``."""

    min_votes: int = 2
    """Radiologists who must agree for a positive training label."""


@dataclass
class RsnaManifestConfig(ManifestConfig):
    """Settings of ``raddino manifest rsna-pneumonia``."""

    read_headers: bool = True
    """Read views, sex and age from the DICOM headers when there is no header table."""


@dataclass
class VindrRibManifestConfig(ManifestConfig):
    """Settings of ``raddino manifest vindr-ribcxr``."""

    masks_dir: str = ""
    """Draw the 20 rib masks as PNGs here (by default the polygons are kept as JSON)."""


@dataclass
class MergeConfig:
    """Settings of ``raddino manifest merge``."""

    inputs: list[str] = field(default_factory=list)
    """Manifest CSVs to merge."""
    out: str = ""
    """Merged manifest CSV to write."""
    frontal_only: bool = False
    """Keep frontal (PA/AP) images only."""
    exclude: list[str] = field(default_factory=list)
    """Evaluation manifest whose subjects are dropped (repeatable)."""


def dataset_options(config: ManifestConfig) -> dict[str, Any]:
    """The fields a dataset's subclass adds, as its adapter's keywords (an empty path is None)."""
    common = {item.name for item in dataclasses.fields(ManifestConfig)}
    options = {
        item.name: getattr(config, item.name)
        for item in dataclasses.fields(config)
        if item.name not in common
    }
    return {key: (None if key.endswith("_dir") and not value else value) for key, value in options.items()}


def make_manifest(dataset: str, config: ManifestConfig) -> tuple[DatasetManifest, Path]:
    """Build ``dataset``'s manifest and write it to ``config.out``; returns it and its errors CSV.

    Raises:
        DatasetError: unknown dataset or option, missing root, or malformed metadata (naming the file).
        SplitError: ``config.split`` is not three fractions.
    """
    fractions = parse_fractions(config.split) if config.split else None
    manifest = build_manifest(
        dataset,
        config.root,
        config.metadata,
        check_images=config.check_images,
        keep_missing=config.keep_missing,
        split_fractions=fractions,
        seed=config.seed,
        **dataset_options(config),
    )
    return manifest, write_dataset_manifest(manifest, config.out)


def merge(config: MergeConfig) -> MergeResult:
    """Merge ``config.inputs`` and write the result to ``config.out``.

    Raises:
        raddino.io.manifest.ManifestError: an input cannot be read (naming the file).
    """
    result = merge_manifests(config.inputs, frontal_only=config.frontal_only, exclude=config.exclude)
    write_merged(result, config.out)
    return result


DATASET_CONFIGS: dict[str, type[ManifestConfig]] = {
    "mimic-cxr": MimicManifestConfig,
    "brax": BraxManifestConfig,
    "vindr-cxr": VindrCxrManifestConfig,
    "rsna-pneumonia": RsnaManifestConfig,
    "vindr-ribcxr": VindrRibManifestConfig,
}
"""The datasets with options of their own; every other dataset takes ``ManifestConfig``."""
