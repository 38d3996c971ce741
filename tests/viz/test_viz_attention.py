"""CLS→patch attention maps: normalised per head before upsampling, the figure at its stated size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raddino.data.preprocess import PreprocessConfig
from raddino.models import Encoder
from raddino.viz import attention_figure, cls_attention, encode_input, save_attention_arrays


def test_maps_sum_to_one_over_patches(
    test_encoder: Encoder, phantom_112: np.ndarray, preprocess_112: PreprocessConfig
) -> None:
    image = encode_input(phantom_112, preprocess_112, test_encoder.patch_size)
    maps = cls_attention(test_encoder, image.pixels)
    assert maps.heads.shape == (test_encoder.num_heads, 8, 8)
    np.testing.assert_allclose(maps.heads.sum(axis=(1, 2)), 1.0, atol=1e-9)
    assert maps.mean.sum() == pytest.approx(1.0, abs=1e-9)
    assert maps.layer == test_encoder.num_layers - 1
    # Each upsampled pixel carries its patch's value: 14×14 blocks of one value.
    assert maps.upsampled.shape == (test_encoder.num_heads + 1, 112, 112)
    np.testing.assert_allclose(maps.upsampled[0, 14:28, 28:42], maps.heads[0, 1, 2], rtol=1e-6)
    np.testing.assert_allclose(maps.upsampled[-1, 98:, 98:], maps.mean[7, 7], rtol=1e-6)


def test_maps_are_the_cls_row_without_its_own_column(
    test_encoder: Encoder, phantom_112: np.ndarray, preprocess_112: PreprocessConfig
) -> None:
    """Dropping CLS→CLS and renormalising: the maps are the patch part of row 0, rescaled."""
    image = encode_input(phantom_112, preprocess_112, test_encoder.patch_size)
    maps = cls_attention(test_encoder, image.pixels)
    raw = test_encoder.attention_maps(image.pixels[None])[0, :, 0].detach().double()  # (nh, 1 + 64)
    np.testing.assert_allclose(maps.cls_self, raw[:, 0].numpy(), rtol=1e-6)
    expected = (raw[:, 1:] / (1 - raw[:, :1])).reshape(-1, 8, 8).numpy()
    np.testing.assert_allclose(maps.heads, expected, rtol=1e-5)


def test_an_earlier_block_gives_different_maps(
    test_encoder: Encoder, phantom_112: np.ndarray, preprocess_112: PreprocessConfig
) -> None:
    image = encode_input(phantom_112, preprocess_112, test_encoder.patch_size)
    first, last = (
        cls_attention(test_encoder, image.pixels, layer=0),
        cls_attention(test_encoder, image.pixels),
    )
    assert first.layer == 0
    assert not np.allclose(first.heads, last.heads)


def test_register_columns_are_dropped_too(phantom_112: np.ndarray) -> None:
    encoder = Encoder.from_preset("test", seed=0, num_register_tokens=2).eval()
    config = PreprocessConfig(shortest_edge=56, crop_size=(56, 56))
    image = encode_input(phantom_112, config, encoder.patch_size)
    maps = cls_attention(encoder, image.pixels)
    assert maps.heads.shape == (encoder.num_heads, 4, 4)
    raw = encoder.attention_maps(image.pixels[None])[0, :, 0].detach().double()  # (nh, 1 + 2 + 16)
    expected = raw[:, 3:] / raw[:, 3:].sum(dim=-1, keepdim=True)
    np.testing.assert_allclose(maps.heads.reshape(encoder.num_heads, -1), expected.numpy(), rtol=1e-5)


def test_figure_and_arrays_written(
    tmp_path: Path, test_encoder: Encoder, phantom_112: np.ndarray, preprocess_112: PreprocessConfig
) -> None:
    image = encode_input(phantom_112, preprocess_112, test_encoder.patch_size, name="phantom")
    maps = cls_attention(test_encoder, image.pixels)
    figure = attention_figure(image, maps, tmp_path / "attention.png", tile=128)
    # image + 2 heads + mean in one row of 128 px tiles, 22 px of title above.
    with Image.open(figure) as opened:
        assert opened.size == (4 * 128, 128 + 22)
        pixels = np.asarray(opened.convert("RGB"))
    # The head panels are coloured overlays, the image panel is grey.
    image_panel, head_panel = pixels[22:, :128].astype(int), pixels[22:, 128:256].astype(int)
    assert np.abs(image_panel[..., 0] - image_panel[..., 2]).max() <= 1
    assert np.abs(head_panel[..., 0] - head_panel[..., 2]).mean() > 10
    saved = np.load(save_attention_arrays(maps, tmp_path / "maps.npy"))
    assert saved.shape == (3, 8, 8)
    assert saved.dtype == np.float32
    np.testing.assert_allclose(saved[-1], maps.mean, rtol=1e-6)
