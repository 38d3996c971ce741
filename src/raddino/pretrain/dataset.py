"""Pre-training data: images from a manifest, a folder or tar shards, multi-crop augmented, with iBOT masks.

Every random choice of a sample is drawn from a generator seeded by ``(seed, stream position)`` (see
:mod:`raddino.pretrain.sampler`), never from a worker's or the global RNG, so a batch's crops and masks are
the same whatever the number of processes, DataLoader workers, or whether the run was resumed.

Masks follow DINOv2's collate rule over a micro-batch of all ranks together (``2·B·world`` global crops):
``round(n × mask_sample_probability)`` of them get a block mask, with ratios spread over
``ibot.mask_ratio_min_max`` (linspace slots); which crops get which slot is a permutation drawn per
micro-batch (DINOv2 shuffles its mask list). Each rank builds only its own rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import torch
from torch.utils.data import Dataset

from raddino.data.masking import BlockMaskGenerator
from raddino.data.shards import ShardImages
from raddino.io.errors import ImageReadError
from raddino.io.images import read_image
from raddino.io.manifest import Manifest
from raddino.pretrain.sampler import SampleKey

Augmentation = Callable[[np.ndarray, np.random.Generator], dict[str, list[torch.Tensor]]]
_MAX_REPLACEMENTS = 16  # unreadable images replaced by the next ones in the manifest, at most this many


class ImageSource(Protocol):
    """Images by dataset index: a manifest's files (:class:`ManifestImages`) or tar shards
    (:class:`raddino.data.shards.ShardImages`)."""

    def __len__(self) -> int: ...

    def name(self, index: int) -> str:
        """How errors name the image."""
        ...

    def pixels(self, index: int) -> np.ndarray:
        """(H, W) float32 in [0, 1]; raises :class:`ImageReadError` naming the image."""
        ...


class ManifestImages:
    """The image files of a manifest, read with :func:`raddino.io.images.read_image`."""

    def __init__(self, manifest: Manifest) -> None:
        self.manifest = manifest

    def __len__(self) -> int:
        return len(self.manifest)

    def name(self, index: int) -> str:
        """The image file of a manifest row."""
        return str(self.manifest.resolve(self.manifest.rows[index]))

    def pixels(self, index: int) -> np.ndarray:
        """The row's file as (H, W) float32 in [0, 1]."""
        return read_image(self.name(index)).pixels


class PretrainDataset(Dataset[dict[str, Any]]):
    """Augmented crops of images, keyed by ``(stream position, dataset index)``.

    An unreadable image is replaced by the next readable one (so batches keep their size); the failure
    travels with the sample (``"failures"``: list of ``(path, reason)``) for the main process to record.

    Args:
        images: A manifest, or any :class:`ImageSource` (tar shards).
        augmentation: ``(pixels (H, W) float32 [0,1], rng) -> {"global_crops": [...], "local_crops": [...]}``.
        seed: The run's seed (``train.seed``).
    """

    def __init__(self, images: Manifest | ImageSource, augmentation: Augmentation, seed: int = 0) -> None:
        self.images: ImageSource = ManifestImages(images) if isinstance(images, Manifest) else images
        if len(self.images) == 0:
            source = images.source if isinstance(images, Manifest) else "the shards"
            raise ValueError(f"{source}: no images to pre-train on")
        self.augmentation = augmentation
        self.seed = seed

    def __len__(self) -> int:
        return len(self.images)

    def shard_lengths(self) -> list[int] | None:
        """Images per shard, in dataset order (for the shard-order rule); ``None`` for a manifest."""
        return self.images.lengths.tolist() if isinstance(self.images, ShardImages) else None

    def locate(self, index: int) -> dict[str, int | str]:
        """Where an image is stored, for checkpoints: ``{"shard": NAME, "offset": K}`` (the K-th image of
        that shard) with shards, empty for a manifest (whose files may move between runs)."""
        if not isinstance(self.images, ShardImages):
            return {}
        shard, offset = self.images.locate(index)
        return {"shard": shard, "offset": offset}

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        position, index = key
        failures: list[tuple[str, str]] = []
        for attempt in range(_MAX_REPLACEMENTS):
            replacement = (index + attempt) % len(self)
            try:
                pixels = self.images.pixels(replacement)  # (H, W) float32 in [0, 1]
            except ImageReadError as error:
                failures.append((error.path, error.reason))
                continue
            rng = np.random.default_rng([self.seed, 0, position])
            crops = self.augmentation(pixels, rng)
            return {**crops, "position": position, "failures": failures}
        reasons = "; ".join(f"{path}: {reason}" for path, reason in failures)
        raise RuntimeError(f"{_MAX_REPLACEMENTS} images in a row could not be read: {reasons}")


class MaskPlanner:
    """iBOT masks for a rank's global crops, the same rows whatever the world size.

    Args:
        grid: Patch grid (h, w) of a global crop.
        mask_ratio_min_max: Per-image mask-ratio range (DINOv2: 0.1, 0.5).
        mask_sample_probability: Fraction of global crops masked (DINOv2: 0.5).
        micro_batch_images: Images per micro-batch over all ranks (``B × world``).
        seed: The run's seed.
    """

    def __init__(
        self,
        grid: tuple[int, int],
        mask_ratio_min_max: tuple[float, float],
        mask_sample_probability: float,
        micro_batch_images: int,
        seed: int = 0,
    ) -> None:
        self.generator = BlockMaskGenerator(grid)
        self.num_patches = grid[0] * grid[1]
        self.group_crops = 2 * micro_batch_images  # two global crops per image
        self.micro_batch_images = micro_batch_images
        self.n_masked = round(self.group_crops * mask_sample_probability)
        self.bounds = np.linspace(*mask_ratio_min_max, self.n_masked + 1)
        self.seed = seed

    def masks(self, positions: Sequence[int]) -> torch.Tensor:
        """Masks for these stream positions' global crops, (2·len(positions), h·w) bool, crop-major
        (crop 0 of every image, then crop 1), the order of the collated global crops."""
        rows = np.zeros((2, len(positions), self.num_patches), dtype=bool)  # (crop, B, h·w)
        slot_orders: dict[int, np.ndarray] = {}
        for column, position in enumerate(positions):
            group, offset = divmod(position, self.micro_batch_images)
            if group not in slot_orders:
                slot_orders[group] = np.random.default_rng([self.seed, 1, group]).permutation(
                    self.group_crops
                )
            for crop in range(2):
                slot = int(slot_orders[group][crop * self.micro_batch_images + offset])
                if slot >= self.n_masked:
                    continue
                rng = np.random.default_rng([self.seed, 2, position, crop])
                ratio = rng.uniform(self.bounds[slot], self.bounds[slot + 1])
                mask = self.generator(int(self.num_patches * ratio), rng)  # (h, w)
                rows[crop, column] = mask.reshape(-1)
        return torch.from_numpy(rows.reshape(2 * len(positions), self.num_patches))
