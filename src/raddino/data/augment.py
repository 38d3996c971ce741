"""Chest X-ray multi-crop augmentations for DINOv2 pre-training (RAD-DINO's recipe).

Each image gives 2 global crops (518 px, teacher and student) and ``local_crops_number`` local crops
(196 px, student only), after DINOv2's ``DataAugmentationDINO`` with the RAD-DINO changes:

* larger crops than for natural images: global crops cover 25–100 % of the image's area, local crops
  4–25 % (DINOv2: 32–100 % and 5–32 %). On a 518×518 image, area fractions (0.25, 1.0) and (0.04, 0.25)
  are square crops of side 259–518 px and 104–259 px: the paper's "side ~ U(259, 518)" and "U(104, 259)"
  ranges (the draw is uniform in area, as torchvision's ``RandomResizedCrop``, with aspect ratio 3/4–4/3);
* grey-level operations only: brightness and contrast jitter (DINOv2's ColorJitter without saturation
  and hue, which do nothing to a grey image; no random greyscale), optional solarisation;
* milder blur on the teacher's (global) crops than on the local ones. DINOv2's ``GaussianBlur`` passes
  ``1 - p`` to ``RandomApply``, so its "p = 1.0" never blurs; here every probability means what it says;
* the same 0.1–2.0 px blur sigmas as DINOv2 on crops 2.3× larger (518 vs 224 px), so the blur is
  milder relative to the anatomy; DINOv2's 9-tap kernel is kept.

Every random draw comes from the numpy generator passed in (never torch's global RNG), so the crops of
an image are reproducible from its seed whichever worker or process makes them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

# torchvision RandomResizedCrop: up to 10 proposals, then a centre crop.
_CROP_ATTEMPTS = 10
_BLUR_KERNEL = 9  # DINOv2 / torchvision GaussianBlur(kernel_size=9)


@dataclass
class MultiCropConfig:
    """Multi-crop settings (DINOv2 ``crops.*`` names where they exist).

    Attributes:
        global_crops_size: Side of the global crops in px (RAD-DINO: 518).
        local_crops_size: Side of the local crops in px (RAD-DINO: 196).
        local_crops_number: Local crops per image (DINOv2: 8; 0 turns them off).
        global_crops_scale: Area fraction range of a global crop (RAD-DINO: 0.25–1.0, side 259–518 of 518).
        local_crops_scale: Area fraction range of a local crop (RAD-DINO: 0.04–0.25, side 104–259 of 518).
        crops_aspect_ratio: Width / height range of a crop (torchvision default 3/4–4/3).
        horizontal_flip_p: Probability of a left-right flip of each crop (DINOv2: 0.5).
        intensity_jitter_p: Probability of brightness and contrast jitter of each crop (DINOv2: 0.8).
        brightness: Brightness factor drawn from [1 - b, 1 + b] (DINOv2: 0.4).
        contrast: Contrast factor drawn from [1 - c, 1 + c] (DINOv2: 0.4).
        global_blur_p: Blur probability of (first, second) global crop; milder than DINOv2's intended
            (1.0, 0.1) for the teacher's crops.
        local_blur_p: Blur probability of each local crop (DINOv2: 0.5).
        blur_sigma: Blur sigma range in px (DINOv2: 0.1–2.0, on 224 px crops).
        solarize_p: Solarisation probability of (first, second) global crop (DINOv2: 0.0, 0.2).
        solarize_threshold: Grey level above which pixels are inverted (DINOv2: 128 / 255).
        mean: Normalisation mean (MIMIC-CXR, the release's ``image_mean``).
        std: Normalisation std (MIMIC-CXR, the release's ``image_std``).
    """

    global_crops_size: int = 518
    local_crops_size: int = 196
    local_crops_number: int = 8
    global_crops_scale: tuple[float, float] = (0.25, 1.0)
    local_crops_scale: tuple[float, float] = (0.04, 0.25)
    crops_aspect_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    horizontal_flip_p: float = 0.5
    intensity_jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    global_blur_p: tuple[float, float] = (0.5, 0.1)
    local_blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: tuple[float, float] = (0.0, 0.2)
    solarize_threshold: float = 0.5
    mean: float = 0.5307  # MIMIC-CXR, as PreprocessConfig.image_mean; `raddino stats` gives your data's
    std: float = 0.2583

    def __post_init__(self) -> None:
        for name in ("global_crops_size", "local_crops_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.local_crops_number < 0:
            raise ValueError(f"local_crops_number must be >= 0, got {self.local_crops_number}")
        for name in ("global_crops_scale", "local_crops_scale"):
            low, high = getattr(self, name)
            if not 0 < low <= high <= 1:
                raise ValueError(f"{name} must satisfy 0 < min <= max <= 1, got {(low, high)}")
        low, high = self.crops_aspect_ratio
        if not 0 < low <= high:
            raise ValueError(f"crops_aspect_ratio must satisfy 0 < min <= max, got {(low, high)}")
        probabilities = {
            "horizontal_flip_p": self.horizontal_flip_p,
            "intensity_jitter_p": self.intensity_jitter_p,
            "local_blur_p": self.local_blur_p,
            "global_blur_p[0]": self.global_blur_p[0],
            "global_blur_p[1]": self.global_blur_p[1],
            "solarize_p[0]": self.solarize_p[0],
            "solarize_p[1]": self.solarize_p[1],
        }
        for name, value in probabilities.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability and must be in [0, 1], got {value}")
        if not 0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"blur_sigma must satisfy 0 < min <= max, got {self.blur_sigma}")
        if not (0 <= self.brightness < 1 and 0 <= self.contrast < 1):
            raise ValueError(
                f"brightness and contrast must be in [0, 1), got {self.brightness}, {self.contrast}"
            )
        if self.std <= 0:
            raise ValueError(f"std must be positive, got {self.std}")


def sample_crop_box(
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    rng: np.random.Generator,
) -> tuple[int, int, int, int]:
    """A random crop (top, left, crop height, crop width) by torchvision's ``RandomResizedCrop`` rule.

    Area fraction ~ U(scale), log aspect ratio ~ U(log ratio); up to 10 proposals that fit the image,
    then a centre crop clipped to the ratio range.
    """
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(_CROP_ATTEMPTS):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        crop_w = round(math.sqrt(target_area * aspect))
        crop_h = round(math.sqrt(target_area / aspect))
        if 0 < crop_w <= width and 0 < crop_h <= height:
            top = int(rng.integers(0, height - crop_h + 1))
            left = int(rng.integers(0, width - crop_w + 1))
            return top, left, crop_h, crop_w
    in_ratio = width / height
    if in_ratio < ratio[0]:
        crop_w, crop_h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        crop_h, crop_w = height, round(height * ratio[1])
    else:
        crop_h, crop_w = height, width
    return (height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a (H, W) image with a 9-tap kernel and reflected borders."""
    offsets = torch.arange(_BLUR_KERNEL, dtype=torch.float32) - _BLUR_KERNEL // 2
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()  # (9,)
    pad = _BLUR_KERNEL // 2
    padded = F.pad(image[None, None], (pad, pad, pad, pad), mode="reflect")  # (1, 1, H + 8, W + 8)
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1))  # (1, 1, H + 8, W)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1))[0, 0]  # (H, W)


class MultiCropAugmentation:
    """Turns one grey image into normalised global and local crops.

    Args:
        config: The crop sizes, scales and probabilities.
    """

    def __init__(self, config: MultiCropConfig | None = None) -> None:
        self.config = config or MultiCropConfig()

    def _crop(
        self,
        image: torch.Tensor,
        size: int,
        scale: tuple[float, float],
        blur_p: float,
        solarize_p: float,
        rng: np.random.Generator,
    ) -> torch.Tensor:
        config = self.config
        height, width = image.shape
        top, left, crop_h, crop_w = sample_crop_box(height, width, scale, config.crops_aspect_ratio, rng)
        region = image[top : top + crop_h, left : left + crop_w]  # (h, w)
        crop = F.interpolate(
            region[None, None], size=(size, size), mode="bicubic", antialias=True, align_corners=False
        )[0, 0].clamp(0.0, 1.0)  # (S, S); bicubic overshoots [0, 1] at edges
        if rng.random() < config.horizontal_flip_p:
            crop = crop.flip(-1)
        if rng.random() < config.intensity_jitter_p:
            brightness = rng.uniform(1 - config.brightness, 1 + config.brightness)
            contrast = rng.uniform(1 - config.contrast, 1 + config.contrast)
            crop = (crop * brightness).clamp(0.0, 1.0)
            crop = (crop.mean() + contrast * (crop - crop.mean())).clamp(0.0, 1.0)
        if rng.random() < blur_p:
            crop = gaussian_blur(crop, float(rng.uniform(*config.blur_sigma)))
        if rng.random() < solarize_p:
            crop = torch.where(crop >= config.solarize_threshold, 1.0 - crop, crop)
        normalised = (crop - config.mean) / config.std  # (S, S)
        return normalised.expand(3, size, size).contiguous()  # (3, S, S): grey replicated, as the release

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> dict[str, list[torch.Tensor]]:
        """Global and local crops of one image.

        Args:
            image: (H, W) float array in [0, 1], e.g. ``read_image(path).pixels``.
            rng: The generator every random choice is drawn from.

        Returns:
            ``{"global_crops": [2 × (3, S, S)], "local_crops": [n × (3, s, s)]}``, float32, normalised
            with ``config.mean`` / ``config.std``.

        Raises:
            ValueError: not a 2-D float image in [0, 1].
        """
        if image.ndim != 2:
            raise ValueError(f"expected a (H, W) grey image, got shape {image.shape}")
        if not np.issubdtype(image.dtype, np.floating):
            raise ValueError(f"expected float pixels in [0, 1], got dtype {image.dtype}")
        if image.size == 0 or not np.isfinite(image).all() or image.min() < 0 or image.max() > 1:
            raise ValueError(
                "expected finite pixels in [0, 1] (scale 8/16-bit images first, as read_image does)"
            )
        config = self.config
        pixels = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))  # (H, W)
        global_crops = [
            self._crop(
                pixels,
                config.global_crops_size,
                config.global_crops_scale,
                config.global_blur_p[index],
                config.solarize_p[index],
                rng,
            )
            for index in range(2)
        ]
        local_crops = [
            self._crop(
                pixels, config.local_crops_size, config.local_crops_scale, config.local_blur_p, 0.0, rng
            )
            for _ in range(config.local_crops_number)
        ]
        return {"global_crops": global_crops, "local_crops": local_crops}
