"""A dataset of preprocessed images over manifest rows, for inference (embedding, frozen features).

Decoding and preprocessing run in DataLoader workers. A file that cannot be read does not raise: its item
carries the reason instead of pixels, and :func:`collate_images` separates the failures so the caller can
record them and go on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from raddino.io.images import XrayImage, read_image

ImageTransform = Callable[[XrayImage], torch.Tensor]


@dataclass
class ImageItem:
    """One row's outcome: ``pixels`` (3, H, W) on success, ``error`` on failure."""

    index: int
    path: str
    pixels: torch.Tensor | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ImageBatch:
    """A collated batch: stacked pixels of the items that worked, and the failures beside them."""

    indices: list[int]
    paths: list[str]
    pixels: torch.Tensor  # (B, 3, H, W)
    extras: list[dict[str, Any]]
    failures: list[ImageItem]


class ManifestImageDataset(Dataset[ImageItem]):
    """Reads and preprocesses ``paths[i]``; the item's ``index`` is ``indices[i]`` (a row number).

    Args:
        paths: Image files.
        transform: Turns an :class:`XrayImage` into a (3, H, W) tensor (the release's preprocessing).
        indices: Row numbers to report back (defaults to 0..n-1), so a subset keeps its rows' identity.
        dicom_tags: DICOM attributes to read into ``extra`` (only when asked: they may hold patient data).
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        transform: ImageTransform,
        indices: Sequence[int] | None = None,
        dicom_tags: Sequence[str] = (),
    ) -> None:
        self.paths = [str(path) for path in paths]
        self.indices = list(indices) if indices is not None else list(range(len(self.paths)))
        if len(self.indices) != len(self.paths):
            raise ValueError("indices and paths must have the same length")
        self.transform = transform
        self.dicom_tags = tuple(dicom_tags)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, position: int) -> ImageItem:
        path = self.paths[position]
        item = ImageItem(index=self.indices[position], path=path)
        try:
            image = read_image(path)
            item.pixels = self.transform(image)
            if self.dicom_tags and image.record.format == "dicom":
                item.extra = _read_dicom_tags(path, self.dicom_tags)
        except Exception as error:
            reason = getattr(error, "reason", None) or f"{type(error).__name__}: {error}"
            item.error = str(reason)
        return item


def _read_dicom_tags(path: str, tags: Sequence[str]) -> dict[str, Any]:
    import pydicom

    header = pydicom.dcmread(path, stop_before_pixels=True)
    return {tag: str(header.get(tag, "")) for tag in tags}


def collate_images(items: Sequence[ImageItem]) -> ImageBatch:
    """Stack the successful items; keep failures aside (a batch may hold no image at all)."""
    good = [item for item in items if item.pixels is not None]
    failures = [item for item in items if item.pixels is None]
    pixels = torch.stack([item.pixels for item in good]) if good else torch.empty(0)  # type: ignore[misc]
    return ImageBatch(
        indices=[item.index for item in good],
        paths=[item.path for item in good],
        pixels=pixels,
        extras=[item.extra for item in good],
        failures=failures,
    )
