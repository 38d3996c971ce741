"""Turning sampled images into training batches: augmentation, iBOT masks, collation, device transfer."""

from __future__ import annotations

from typing import Any

import torch

from raddino.data.augment import MultiCropAugmentation
from raddino.data.collate import collate_multicrop
from raddino.pretrain.config import PretrainConfig
from raddino.pretrain.dataset import MaskPlanner


def build_augmentation(config: PretrainConfig) -> MultiCropAugmentation:
    """The multi-crop augmentation of ``config.crops``."""
    return MultiCropAugmentation(config.crops)


class Collator:
    """DataLoader ``collate_fn``: masks for the batch's global crops, then :func:`collate_multicrop`.

    Picklable (runs in worker processes). Without iBOT every mask is empty.

    Args:
        config: The run's config.
        patch_size: The encoder's patch side.
        micro_batch_images: Images per micro-batch over all ranks (the group masks are planned over).
    """

    def __init__(self, config: PretrainConfig, patch_size: int, micro_batch_images: int) -> None:
        side = config.crops.global_crops_size // patch_size
        self.grid = (side, side)
        self.planner: MaskPlanner | None = None
        if config.ibot.loss_weight > 0:
            self.planner = MaskPlanner(
                self.grid,
                config.ibot.mask_ratio_min_max,
                config.ibot.mask_sample_probability,
                micro_batch_images,
                seed=config.train.seed,
            )

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        positions = [int(sample["position"]) for sample in samples]
        if self.planner is not None:
            masks = self.planner.masks(positions)  # (2B, N)
        else:
            masks = torch.zeros(2 * len(samples), self.grid[0] * self.grid[1], dtype=torch.bool)
        crops = [{"global_crops": s["global_crops"], "local_crops": s["local_crops"]} for s in samples]
        batch: dict[str, Any] = dict(collate_multicrop(crops, masks))
        batch["positions"] = torch.tensor(positions)
        batch["failures"] = [failure for sample in samples for failure in sample["failures"]]
        return batch


def move_batch(batch: dict[str, Any], device: torch.device) -> dict[str, torch.Tensor]:
    """Tensors of a batch on ``device`` (non-blocking from pinned memory)."""
    return {
        key: value.to(device, non_blocking=True)
        for key, value in batch.items()
        if isinstance(value, torch.Tensor)
    }
