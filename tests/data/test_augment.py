"""Multi-crop augmentations: shapes, crop side ranges, and every probability measured over many draws."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from raddino.data.augment import MultiCropAugmentation, MultiCropConfig, sample_crop_box

MEAN, STD = 0.5307, 0.2583


def _binomial_bound(p: float, n: int) -> float:
    """Five standard deviations of an observed rate: a correct implementation fails ~1 in 3 million runs."""
    return 5 * math.sqrt(p * (1 - p) / n) + 1e-9


def _small(**changes: object) -> MultiCropConfig:
    base = MultiCropConfig(global_crops_size=32, local_crops_size=16, local_crops_number=8)
    return dataclasses.replace(base, **changes)


def _grey(crop: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation of a (3, S, S) crop: its (S, S) grey levels in [0, 1]."""
    assert torch.equal(crop[0], crop[1])
    assert torch.equal(crop[0], crop[2])
    return crop[0] * STD + MEAN


def test_shapes_dtype_and_normalisation():
    augment = MultiCropAugmentation(_small(intensity_jitter_p=0.0, solarize_p=(0.0, 0.0)))
    image = np.full((40, 50), 0.6, dtype=np.float32)  # uniform: every crop keeps the grey level
    crops = augment(image, np.random.default_rng(0))
    assert [tuple(c.shape) for c in crops["global_crops"]] == [(3, 32, 32)] * 2
    assert [tuple(c.shape) for c in crops["local_crops"]] == [(3, 16, 16)] * 8
    for crop in crops["global_crops"] + crops["local_crops"]:
        assert crop.dtype == torch.float32
        torch.testing.assert_close(crop, torch.full_like(crop, (0.6 - MEAN) / STD))


def test_release_defaults():
    config = MultiCropConfig()
    assert (config.global_crops_size, config.local_crops_size, config.local_crops_number) == (518, 196, 8)
    assert config.global_crops_scale == (0.25, 1.0)
    assert config.local_crops_scale == (0.04, 0.25)
    assert config.global_blur_p[0] < 1.0  # milder blur on the teacher's crops than DINOv2's intended 1.0
    assert (config.mean, config.std) == (MEAN, STD)


def test_same_generator_same_crops_and_torch_rng_untouched():
    augment = MultiCropAugmentation(_small())
    image = np.random.default_rng(1).random((48, 60)).astype(np.float32)
    torch_state = torch.get_rng_state()
    first = augment(image, np.random.default_rng(7))
    second = augment(image, np.random.default_rng(7))
    other = augment(image, np.random.default_rng(8))
    assert torch.equal(torch.get_rng_state(), torch_state)
    for key in ("global_crops", "local_crops"):
        assert all(torch.equal(a, b) for a, b in zip(first[key], second[key], strict=True))
    assert not torch.equal(first["global_crops"][0], other["global_crops"][0])


@pytest.mark.parametrize(
    ("scale", "side_range"),
    [((0.25, 1.0), (259, 518)), ((0.04, 0.25), (104, 259))],
    ids=["global", "local"],
)
def test_crop_sides_cover_the_papers_ranges(scale, side_range):
    rng = np.random.default_rng(2)
    sides, fractions = [], []
    for _ in range(2000):
        top, left, height, width = sample_crop_box(518, 518, scale, (3 / 4, 4 / 3), rng)
        assert 0 <= top <= 518 - height
        assert 0 <= left <= 518 - width
        assert 3 / 4 - 0.02 <= width / height <= 4 / 3 + 0.02
        sides.append(math.sqrt(height * width))
        fractions.append(height * width / 518**2)
    low, high = side_range
    assert low - 2 <= min(sides) < low + 15  # the geometric-mean side spans the paper's range
    assert high - 15 < max(sides) <= high + 2
    assert scale[0] - 0.01 <= min(fractions)
    assert max(fractions) <= scale[1] + 0.01


def test_crop_box_falls_back_to_a_centre_crop():
    # A 10×100 strip cannot hold a 3/4–4/3 crop of 90 % of its area: centre crop of the whole height.
    top, left, height, width = sample_crop_box(10, 100, (0.9, 1.0), (3 / 4, 4 / 3), np.random.default_rng(0))
    assert (top, height) == (0, 10)
    assert width == round(10 * 4 / 3)
    assert left == (100 - width) // 2


def _flip_rate(probability: float, draws: int) -> float:
    config = _small(horizontal_flip_p=probability, intensity_jitter_p=0.0, global_blur_p=(0.0, 0.0))
    config = dataclasses.replace(config, local_blur_p=0.0, solarize_p=(0.0, 0.0))
    augment = MultiCropAugmentation(config)
    image = np.tile(np.linspace(0.1, 0.9, 64, dtype=np.float32), (48, 1))  # brighter to the right
    flipped = total = 0
    rng = np.random.default_rng(3)
    while total < draws:
        crops = augment(image, rng)
        for crop in crops["global_crops"] + crops["local_crops"]:
            grey = _grey(crop)
            flipped += int(grey[:, 0].mean() > grey[:, -1].mean())
            total += 1
    return flipped / total


def test_flip_rate_is_its_probability():
    assert _flip_rate(0.0, 200) == 0.0
    assert _flip_rate(1.0, 200) == 1.0
    assert abs(_flip_rate(0.5, 2000) - 0.5) < _binomial_bound(0.5, 2000)


def _is_blurred(crop: torch.Tensor) -> bool:
    # White noise has mean |horizontal difference| ~0.33; a sigma >= 1 blur brings it under ~0.12.
    return bool(_grey(crop).diff(dim=-1).abs().mean() < 0.2)


def test_blur_probabilities_mean_what_they_say():
    """p = 1 always blurs and p = 0 never does (DINOv2 passes 1 - p and gets both backwards)."""
    config = _small(
        global_crops_size=40,
        local_crops_size=40,
        global_crops_scale=(1.0, 1.0),
        local_crops_scale=(1.0, 1.0),
        crops_aspect_ratio=(1.0, 1.0),
        intensity_jitter_p=0.0,
        solarize_p=(0.0, 0.0),
        blur_sigma=(1.0, 2.0),
        global_blur_p=(1.0, 0.0),
        local_blur_p=0.3,
    )
    augment = MultiCropAugmentation(config)
    rng = np.random.default_rng(4)
    image = rng.random((40, 40)).astype(np.float32)  # crops are the whole image: no resampling blur
    local_blurred = local_total = 0
    for _ in range(250):
        crops = augment(image, rng)
        assert _is_blurred(crops["global_crops"][0])
        assert not _is_blurred(crops["global_crops"][1])
        local_blurred += sum(_is_blurred(crop) for crop in crops["local_crops"])
        local_total += len(crops["local_crops"])
    assert local_total == 2000
    assert abs(local_blurred / local_total - 0.3) < _binomial_bound(0.3, 2000)


def test_intensity_jitter_rate_and_solarisation():
    config = _small(intensity_jitter_p=0.8, global_blur_p=(0.0, 0.0), local_blur_p=0.0, solarize_p=(0.0, 0.0))
    augment = MultiCropAugmentation(config)
    image = np.full((40, 40), 0.5, dtype=np.float32)
    rng = np.random.default_rng(5)
    changed = total = 0
    while total < 2000:
        crops = augment(image, rng)
        for crop in crops["global_crops"] + crops["local_crops"]:
            level = _grey(crop)
            assert torch.allclose(level, level.flatten()[0])  # stays uniform
            changed += int(abs(level.flatten()[0].item() - 0.5) > 1e-4)  # brightness factor != 1
            total += 1
    assert abs(changed / total - 0.8) < _binomial_bound(0.8, total)

    solarizing = MultiCropAugmentation(
        _small(intensity_jitter_p=0.0, global_blur_p=(0.0, 0.0), local_blur_p=0.0, solarize_p=(1.0, 0.0))
    )
    crops = solarizing(np.full((40, 40), 0.8, dtype=np.float32), rng)
    assert _grey(crops["global_crops"][0]).mean().item() == pytest.approx(0.2, abs=1e-5)  # inverted
    assert _grey(crops["global_crops"][1]).mean().item() == pytest.approx(0.8, abs=1e-5)


def test_bad_images_and_settings_are_refused():
    augment = MultiCropAugmentation(_small())
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        augment(np.zeros((3, 20, 20), dtype=np.float32), rng)
    with pytest.raises(ValueError, match="float"):
        augment(np.zeros((20, 20), dtype=np.uint8), rng)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        augment(np.full((20, 20), 255.0, dtype=np.float32), rng)
    with pytest.raises(ValueError, match=r"global_blur_p\[1\]"):
        MultiCropConfig(global_blur_p=(0.5, 1.5))
    with pytest.raises(ValueError, match="local_crops_scale"):
        MultiCropConfig(local_crops_scale=(0.3, 0.2))
