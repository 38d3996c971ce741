"""iBOT block masks: counts within the ratio, rectangles within the aspect range, DINOv2's batch rule."""

from __future__ import annotations

import numpy as np
import pytest

from raddino.data.masking import BlockMaskGenerator, sample_batch_masks


def _rngs(count: int, seed: int = 0) -> list[np.random.Generator]:
    return [np.random.default_rng([seed, index]) for index in range(count)]


def test_mask_never_exceeds_the_request_and_is_usually_exact():
    generator = BlockMaskGenerator((37, 37))
    rng = np.random.default_rng(0)
    shortfalls = []
    for requested in (0, 5, 137, 300, 684):
        for _ in range(10):
            mask = generator(requested, rng)
            assert mask.shape == (37, 37)
            assert mask.dtype == bool
            assert mask.sum() <= requested
            shortfalls.append((requested - mask.sum()) / max(requested, 1))
    assert np.mean(shortfalls) < 0.05  # DINOv2's generator stops early only rarely


def test_a_single_block_is_a_filled_rectangle_within_the_aspect_range():
    generator = BlockMaskGenerator((20, 20), max_num_patches=16, min_num_patches=16, min_aspect=0.3)
    rng = np.random.default_rng(1)
    aspects = []
    for _ in range(200):
        mask = generator(16, rng)
        assert 1 <= mask.sum() <= 16
        rows, cols = np.nonzero(mask)
        height, width = np.ptp(rows) + 1, np.ptp(cols) + 1
        if mask.sum() == height * width:  # one solid rectangle (a rounded-down first block may get a 2nd)
            aspects.append(height / width)
    assert len(aspects) >= 150
    # Rounding of sides to whole patches widens the [0.3, 3.33] range a little, never much.
    assert min(aspects) >= 0.2
    assert max(aspects) <= 5.0
    assert min(aspects) < 0.7 < 1.4 < max(aspects)  # both orientations occur


def test_masks_are_blocky_not_scattered():
    generator = BlockMaskGenerator((37, 37))
    mask = generator(400, np.random.default_rng(2))
    # Fraction of masked patches whose right neighbour is masked too: ~0.27 for random scattering.
    right = mask[:, :-1] & mask[:, 1:]
    assert right.sum() / mask[:, :-1].sum() > 0.7


def test_same_generator_state_gives_the_same_mask():
    generator = BlockMaskGenerator((16, 16))
    first = generator(60, np.random.default_rng(5))
    assert np.array_equal(first, generator(60, np.random.default_rng(5)))
    assert not np.array_equal(first, generator(60, np.random.default_rng(6)))


def test_batch_rule_masks_the_first_half_with_ratios_spread_over_the_range():
    grid, batch = (14, 14), 8
    patches = 14 * 14
    bounds = np.linspace(0.1, 0.5, 5)
    counts = []
    for seed in range(20):
        masks = sample_batch_masks(batch, grid, (0.1, 0.5), 0.5, rngs=_rngs(batch, seed))
        assert tuple(masks.shape) == (batch, patches)
        assert masks[4:].sum() == 0  # round(8 × 0.5) = 4 masked, the rest empty
        counts.append(masks[:4].sum(dim=1).numpy())
    counts_array = np.stack(counts)  # (20, 4)
    for index in range(4):
        assert counts_array[:, index].max() <= int(patches * bounds[index + 1])
        assert counts_array[:, index].mean() >= 0.9 * patches * bounds[index]
    ratios = counts_array / patches
    assert ratios.min() >= 0.09  # never much below the 0.1 minimum
    assert ratios.max() <= 0.5


def test_one_generator_per_sample_makes_masks_independent_of_the_split():
    whole = sample_batch_masks(6, (10, 10), rngs=_rngs(6, 7), mask_sample_probability=1.0)
    again = sample_batch_masks(6, (10, 10), rngs=_rngs(6, 7), mask_sample_probability=1.0)
    assert bool((whole == again).all())


def test_probability_edges_and_errors():
    assert sample_batch_masks(4, (8, 8), mask_sample_probability=0.0, rngs=_rngs(4)).sum() == 0
    assert (sample_batch_masks(4, (8, 8), mask_sample_probability=1.0, rngs=_rngs(4)).sum(dim=1) > 0).all()
    with pytest.raises(ValueError, match="one generator per sample"):
        sample_batch_masks(4, (8, 8), rngs=_rngs(3))
    with pytest.raises(ValueError, match="mask_ratio_min_max"):
        sample_batch_masks(4, (8, 8), (0.6, 0.2), rngs=_rngs(4))
    with pytest.raises(ValueError, match="grid"):
        sample_batch_masks(4, (8, 8), rngs=_rngs(4), generator=BlockMaskGenerator((9, 9)))
