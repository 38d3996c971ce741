"""Original pixel coordinates through the release's resize + centre crop, and point parsing."""

from __future__ import annotations

import numpy as np
import pytest

from raddino.data.preprocess import InferencePreprocessor, PreprocessConfig
from raddino.viz import PointError, PreprocessGeometry, parse_point


def test_wide_image_maps_through_resize_and_crop() -> None:
    # 100×200 (H×W) → shorter side 56 → 56×112, crop 56 starts at column 28 of the resized image.
    config = PreprocessConfig(shortest_edge=56, crop_size=(56, 56))
    geometry = PreprocessGeometry.from_config((100, 200), config, patch_size=14)
    assert geometry.resized_shape == (56, 112)
    assert geometry.crop_offset == (0, 28)
    assert geometry.grid == (4, 4)
    # Pixel (100, 50): centre 100.5 × 0.56 - 28 = 28.28 → column 2; 50.5 × 0.56 = 28.28 → row 2.
    assert geometry.to_crop(100, 50) == pytest.approx((28.28, 28.28))
    assert geometry.patch_of(100, 50) == (2, 2)
    # Column 10 lands left of the crop window: cut away, and the message says so.
    with pytest.raises(PointError, match="cut away by the centre crop"):
        geometry.patch_of(10, 50)
    with pytest.raises(PointError, match=r"outside the 200×100 image"):
        geometry.patch_of(200, 50)


def test_patch_centres_round_trip_and_cover_the_crop() -> None:
    config = PreprocessConfig(shortest_edge=70, crop_size=(70, 70))
    geometry = PreprocessGeometry.from_config((333, 250), config, patch_size=14)
    for row in range(geometry.grid[0]):
        for col in range(geometry.grid[1]):
            x, y = geometry.patch_centre(row, col)
            assert geometry.patch_of(x, y) == (row, col)


def test_geometry_agrees_with_the_preprocessor_on_a_marked_pixel() -> None:
    """A bright dot in the original image shows up in the patch the geometry predicts."""
    config = PreprocessConfig(shortest_edge=56, crop_size=(56, 56))
    preprocessor = InferencePreprocessor(config)
    cases = [((90, 150), (75, 20)), ((150, 90), (10, 100)), ((40, 40), (5, 33)), ((200, 300), (150, 9))]
    for shape, (x, y) in cases:
        image = np.zeros(shape, dtype=np.uint8)
        image[y - 1 : y + 2, x - 1 : x + 2] = 255  # a 3×3 dot survives downsampling
        tensor = preprocessor(image)[0].numpy()  # (56, 56)
        geometry = PreprocessGeometry.from_config(shape, config, patch_size=14)
        weights = tensor - tensor.min()  # (56, 56), the dot only
        rows, cols = np.indices(tensor.shape)
        # Centroid in continuous coordinates (pixel i covers [i, i + 1)).
        dot_x = float((weights * (cols + 0.5)).sum() / weights.sum())
        dot_y = float((weights * (rows + 0.5)).sum() / weights.sum())
        crop_x, crop_y = geometry.to_crop(x, y)
        assert dot_x == pytest.approx(crop_x, abs=0.25)
        assert dot_y == pytest.approx(crop_y, abs=0.25)
        assert geometry.patch_of(x, y) == (int(dot_y // 14), int(dot_x // 14))


def test_crop_larger_than_image_pads() -> None:
    # No resize, 40×40 into a 56×56 crop: 8 px of zero padding on each side.
    config = PreprocessConfig(do_resize=False, crop_size=(56, 56))
    geometry = PreprocessGeometry.from_config((40, 40), config, patch_size=14)
    assert geometry.crop_offset == (-8, -8)
    assert geometry.patch_of(0, 0) == (0, 0)
    assert geometry.patch_of(39, 39) == (3, 3)


@pytest.mark.parametrize("text", ["10", "1,2,3", "a,b", "nan,3", ""])
def test_bad_point_syntax_names_the_option(text: str) -> None:
    with pytest.raises(PointError, match="--points"):
        parse_point(text)


def test_point_parses_floats() -> None:
    assert parse_point("12.5, 30") == (12.5, 30.0)
