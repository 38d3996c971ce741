"""Joint PCA of patch tokens: shapes, the background mask and how the threshold moves it, the figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raddino.data.phantoms import make_phantom
from raddino.data.preprocess import PreprocessConfig
from raddino.models import Encoder
from raddino.viz import encode_input, patch_pca, patch_tokens, pca_figure


@pytest.fixture(scope="module")
def framed(test_encoder: Encoder, preprocess_112: PreprocessConfig) -> list:
    """Two 56 px phantoms centred in 112 px black frames: patches in rows/cols 2-5 of the 8×8 grid are
    body, the 48 others (75 %) are the frame."""
    images = []
    for seed in (1, 2):
        canvas = np.zeros((112, 112), dtype=np.float32)
        canvas[28:84, 28:84] = make_phantom(seed=seed, size=56).image
        images.append(encode_input(canvas, preprocess_112, 14, name=f"framed {seed}"))
    return images


def test_shapes_and_colour_range(test_encoder: Encoder, preprocess_112: PreprocessConfig) -> None:
    small = PreprocessConfig(shortest_edge=56, crop_size=(56, 56))
    images = [
        encode_input(make_phantom(seed=1, size=112).image, preprocess_112, 14),
        encode_input(make_phantom(seed=2, size=112).image, small, 14),
    ]
    result = patch_pca(patch_tokens(test_encoder, images), threshold=0.3)
    assert [rgb.shape for rgb in result.rgb] == [(8, 8, 3), (4, 4, 3)]
    assert [mask.shape for mask in result.foreground] == [(8, 8), (4, 4)]
    kept = np.concatenate([rgb[mask] for rgb, mask in zip(result.rgb, result.foreground, strict=True)])
    # Each channel spans [0, 1] over the kept patches of both images (fitted jointly).
    np.testing.assert_allclose(kept.min(axis=0), 0.0, atol=1e-6)
    np.testing.assert_allclose(kept.max(axis=0), 1.0, atol=1e-6)
    for rgb, mask in zip(result.rgb, result.foreground, strict=True):
        assert np.all(rgb[~mask] == 0)


def test_the_frame_is_masked_and_the_body_kept(test_encoder: Encoder, framed: list) -> None:
    result = patch_pca(patch_tokens(test_encoder, framed), threshold=0.5)
    body = np.zeros((8, 8), dtype=bool)
    body[2:6, 2:6] = True
    for mask in result.foreground:
        assert not mask[~body].any()  # every frame patch is background
        assert mask[body].mean() >= 0.9  # nearly all the body is kept
    assert result.masked_fraction == pytest.approx(0.75, abs=0.05)


def test_raising_the_threshold_masks_more(test_encoder: Encoder, framed: list) -> None:
    tokens = patch_tokens(test_encoder, framed)
    fractions = [patch_pca(tokens, threshold=value).masked_fraction for value in (0.0, 0.2, 0.5, 0.8, 0.95)]
    assert fractions[0] == 0.0
    assert fractions == sorted(fractions)
    assert fractions[-1] > fractions[2]
    assert patch_pca(tokens, threshold=None).masked_fraction == 0.0
    with pytest.raises(ValueError, match="threshold"):
        patch_pca(tokens, threshold=1.5)


def test_sign_flip_of_the_tokens_does_not_swap_foreground(test_encoder: Encoder, framed: list) -> None:
    """PCA signs are arbitrary; the border rule must pick the frame as background either way."""
    tokens = patch_tokens(test_encoder, framed)
    direct = patch_pca(tokens, threshold=0.5)
    flipped = patch_pca([-token for token in tokens], threshold=0.5)
    for mask, other in zip(direct.foreground, flipped.foreground, strict=True):
        np.testing.assert_array_equal(mask, other)


def test_figure_size(tmp_path: Path, test_encoder: Encoder, framed: list) -> None:
    result = patch_pca(patch_tokens(test_encoder, framed), threshold=0.5)
    figure = pca_figure(framed, result, tmp_path / "pca.png", tile=100)
    with Image.open(figure) as opened:
        assert opened.size == (2 * 100, 2 * (100 + 22))
        pixels = np.asarray(opened.convert("RGB"))
    # Bottom-left panel: the frame (outer 25 px of 100) is black, the body is coloured.
    colours = pixels[2 * 22 + 100 :, :100]
    assert colours[:20, :20].max() == 0
    assert colours[40:60, 40:60].max() > 50
