"""Batching multi-crop samples with their iBOT masks (DINOv2 ``dinov2/data/collate.py``).

Crops are stacked crop-major, as DINOv2: all images' first global crop, then all images' second, so
``global_crops.chunk(2)`` gives one tensor per view and the teacher's two views can be swapped for the
student's. The masks come from :func:`raddino.data.masking.sample_batch_masks`, computed outside so the
loop can draw them from per-sample generators.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def collate_multicrop(
    samples: Sequence[dict[str, list[torch.Tensor]]], masks: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Stack B samples' crops and attach the masks of their 2B global crops.

    Args:
        samples: B outputs of :class:`raddino.data.augment.MultiCropAugmentation`, each
            ``{"global_crops": [G × (3, S, S)], "local_crops": [n × (3, s, s)]}``.
        masks: (G·B, N) bool masks of the global crops in the same crop-major order, N = patches per
            global crop.

    Returns:
        ``global_crops`` (G·B, 3, S, S) and ``local_crops`` (n·B, 3, s, s), crop-major (``local_crops``
        is (0, 3, 0, 0) without local crops); ``masks`` (G·B, N) bool; ``mask_indices`` (M,) int64 flat
        indices of the masked patches in ``masks.flatten()``; ``masks_weight`` (M,) float32,
        ``1 / (masked patches of its crop)``; ``n_masked_patches`` () int64, M.

    Raises:
        ValueError: no samples, samples with different crop counts, or masks of the wrong shape.
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    n_global = len(samples[0]["global_crops"])
    n_local = len(samples[0]["local_crops"])
    for index, sample in enumerate(samples):
        if len(sample["global_crops"]) != n_global or len(sample["local_crops"]) != n_local:
            raise ValueError(
                f"sample {index} has {len(sample['global_crops'])} global and {len(sample['local_crops'])} "
                f"local crops; sample 0 has {n_global} and {n_local}"
            )
    batch = len(samples)
    if masks.ndim != 2 or masks.shape[0] != n_global * batch:
        raise ValueError(
            f"masks must be ({n_global * batch}, N) for {batch} samples × {n_global} global crops, "
            f"got {tuple(masks.shape)}"
        )
    global_crops = torch.stack(
        [sample["global_crops"][crop] for crop in range(n_global) for sample in samples]
    )  # (G·B, 3, S, S)
    if n_local:
        local_crops = torch.stack(
            [sample["local_crops"][crop] for crop in range(n_local) for sample in samples]
        )  # (n·B, 3, s, s)
    else:
        local_crops = global_crops.new_zeros((0, 3, 0, 0))
    masks = masks.bool()
    mask_indices = masks.flatten().nonzero().flatten()  # (M,)
    per_crop = 1.0 / masks.sum(dim=-1).clamp(min=1).float()  # (G·B,)
    masks_weight = per_crop[:, None].expand_as(masks)[masks]  # (M,)
    return {
        "global_crops": global_crops,
        "local_crops": local_crops,
        "masks": masks,
        "mask_indices": mask_indices,
        "masks_weight": masks_weight,
        "n_masked_patches": torch.tensor(mask_indices.shape[0], dtype=torch.long),
    }
