"""Collate: crop-major stacking, mask indices and per-crop weights that feed the iBOT loss."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from raddino.data.augment import MultiCropAugmentation, MultiCropConfig
from raddino.data.collate import collate_multicrop
from raddino.data.masking import sample_batch_masks
from raddino.pretrain.losses import iBOTPatchLoss


def _sample(image_index: int, n_local: int = 3) -> dict[str, list[torch.Tensor]]:
    """Crops whose values name them: image * 100 + crop number (global 0-1, local 10+)."""
    return {
        "global_crops": [torch.full((3, 4, 4), image_index * 100.0 + crop) for crop in range(2)],
        "local_crops": [torch.full((3, 2, 2), image_index * 100.0 + 10 + crop) for crop in range(n_local)],
    }


def test_crops_are_stacked_crop_major():
    batch = collate_multicrop([_sample(0), _sample(1)], torch.zeros(4, 4, dtype=torch.bool))
    assert tuple(batch["global_crops"].shape) == (4, 3, 4, 4)
    assert tuple(batch["local_crops"].shape) == (6, 3, 2, 2)
    assert batch["global_crops"][:, 0, 0, 0].tolist() == [0.0, 100.0, 1.0, 101.0]
    assert batch["local_crops"][:, 0, 0, 0].tolist() == [10.0, 110.0, 11.0, 111.0, 12.0, 112.0]
    first_view, second_view = batch["global_crops"].chunk(2)
    assert first_view[:, 0, 0, 0].tolist() == [0.0, 100.0]
    assert second_view[:, 0, 0, 0].tolist() == [1.0, 101.0]


def test_mask_indices_and_weights():
    masks = torch.tensor(
        [
            [True, False, False, False],
            [False, False, False, False],
            [True, True, False, True],
            [False, True, False, False],
        ]
    )
    batch = collate_multicrop([_sample(0), _sample(1)], masks)
    assert batch["mask_indices"].tolist() == [0, 8, 9, 11, 13]
    torch.testing.assert_close(batch["masks_weight"], torch.tensor([1.0, 1 / 3, 1 / 3, 1 / 3, 1.0]))
    assert batch["n_masked_patches"].item() == 5
    assert batch["n_masked_patches"].dtype == torch.long
    assert batch["n_masked_patches"].ndim == 0
    assert batch["masks"].dtype == torch.bool


def test_end_to_end_with_augmentations_masks_and_the_ibot_loss():
    config = MultiCropConfig(global_crops_size=56, local_crops_size=14, local_crops_number=2)
    augment = MultiCropAugmentation(config)
    image_rng = np.random.default_rng(0)
    samples = [
        augment(image_rng.random((40, 48)).astype(np.float32), np.random.default_rng(i)) for i in range(3)
    ]
    rngs = [np.random.default_rng([1, i]) for i in range(6)]
    masks = sample_batch_masks(6, (4, 4), (0.25, 0.5), 0.5, rngs=rngs)
    batch = collate_multicrop(samples, masks)
    assert tuple(batch["global_crops"].shape) == (6, 3, 56, 56)
    assert tuple(batch["local_crops"].shape) == (6, 3, 14, 14)
    # The weights make each masked crop count once in the iBOT loss: with uniform teacher targets over K
    # prototypes and uniform student logits, every masked patch costs log K.
    n_masked = int(batch["n_masked_patches"])
    prototypes = 5
    uniform = torch.full((n_masked, prototypes), 1 / prototypes)
    loss = iBOTPatchLoss(prototypes).forward_masked(
        torch.zeros(n_masked, prototypes), uniform, batch["masks"], batch["masks_weight"]
    )
    masked_crops = int((batch["masks"].sum(dim=1) > 0).sum())
    assert masked_crops == 3  # round(6 × 0.5) crops, each with 4–8 of its 16 patches
    assert loss.item() == pytest.approx(np.log(prototypes) * masked_crops / 6, rel=1e-5)


def test_without_local_crops_and_bad_inputs():
    batch = collate_multicrop([_sample(0, n_local=0)], torch.zeros(2, 4, dtype=torch.bool))
    assert tuple(batch["local_crops"].shape) == (0, 3, 0, 0)
    assert batch["n_masked_patches"].item() == 0
    with pytest.raises(ValueError, match=r"\(4, N\)"):
        collate_multicrop([_sample(0), _sample(1)], torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="sample 1"):
        collate_multicrop([_sample(0), _sample(1, n_local=2)], torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="empty"):
        collate_multicrop([], torch.zeros(0, 4, dtype=torch.bool))
