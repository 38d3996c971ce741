"""The probe's optional light-augmentation path: every epoch, the frozen encoder embeds a fresh randomly
transformed view of each training image, so the heads see augmented features (paper §4.2: linear probing
"with light augmentation"). Validation and test keep the cached, unaugmented features.

The augmentation is a small random affine transform (rotation up to 10°, scale 0.9–1.1, shift up to 5%)
of the preprocessed image, no flip (left and right matter on a chest X-ray). It is seeded by (seed, epoch),
so a run repeats exactly. The encoder runs on every training image every epoch: use a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from raddino.evaluate.segmentation.data import random_affine
from raddino.features.cache import FeatureConfig, FeatureError
from raddino.io.progress import progress_bar

AUGMENTABLE = ("cls", "patch_mean")


class AugmentedTrainFeatures:
    """Callable ``epoch -> {choice: (N, D) features}`` of augmented views of the training images.

    Args:
        paths: Training images, in the order of the training labels.
        choices: Feature choices (only ``cls`` and ``patch_mean`` parts can be recomputed).
        features: The encoder, device, batch size and workers.
        seed: Seeds the augmentation together with the epoch.
    """

    def __init__(
        self, paths: Sequence[Path], choices: Sequence[str], features: FeatureConfig, seed: int
    ) -> None:
        from raddino.features.embed import preprocess_config_for
        from raddino.models import load_encoder
        from raddino.training.distributed import pick_device

        unsupported = sorted({p for c in choices for p in c.split("+")} - set(AUGMENTABLE))
        if unsupported:
            raise FeatureError(f"augment recomputes only cls and patch_mean features, not {unsupported}")
        if not features.model:
            raise FeatureError("augment needs an encoder ('features.model'), not only an embeddings file")
        self.paths = list(paths)
        self.choices = list(choices)
        self.config = features
        self.seed = seed
        self.device = pick_device(features.device, 0)
        self.encoder = load_encoder(features.model).to(self.device).eval()
        self.preprocess = preprocess_config_for(features.model)

    @torch.inference_mode()
    def __call__(self, epoch: int) -> dict[str, torch.Tensor]:
        from raddino.data.image_dataset import ManifestImageDataset, collate_images
        from raddino.data.preprocess import InferencePreprocessor

        dataset = ManifestImageDataset(self.paths, InferencePreprocessor(self.preprocess))
        loader = DataLoader(
            dataset,
            batch_size=self.config.batch_size,
            num_workers=self.config.num_workers or 0,
            collate_fn=collate_images,
        )
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        parts: dict[str, list[torch.Tensor]] = {"cls": [], "patch_mean": []}
        for batch in progress_bar(loader, desc=f"augmented epoch {epoch}", unit="batch", leave=False):
            if batch.failures:
                raise FeatureError(f"{batch.failures[0].path}: {batch.failures[0].error}")
            pixels, _ = random_affine(batch.pixels, None, generator)  # (B, 3, H, W)
            output = self.encoder.forward_features(pixels.to(self.device))
            parts["cls"].append(output.cls.float().cpu())  # (B, D)
            parts["patch_mean"].append(output.patch_tokens.float().mean(dim=(2, 3)).cpu())  # (B, D)
        vectors = {name: torch.cat(values) for name, values in parts.items()}
        return {choice: torch.cat([vectors[p] for p in choice.split("+")], dim=1) for choice in self.choices}
