"""Inference preprocessing against transformers' ``BitImageProcessor`` configured like the release.

The release's processor is transformers' Pillow ``BitImageProcessor`` (``BitImageProcessorPil`` in
transformers ≥ 5). For 8-bit images the tolerance is 0: both resize the same uint8 values with Pillow's
bicubic filter and do the same float64 rescale and float32 normalisation, so every value is bit-identical.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoImageProcessor
from transformers.models.bit.image_processing_pil_bit import BitImageProcessorPil

from raddino.data.preprocess import InferencePreprocessor, PreprocessConfig
from raddino.io.images import read_image


def _processor(config: PreprocessConfig) -> BitImageProcessorPil:
    values = config.to_processor_dict()
    values.pop("image_processor_type")
    return BitImageProcessorPil(**values)


def _reference(config: PreprocessConfig, image: Image.Image) -> torch.Tensor:
    return _processor(config)(image, return_tensors="pt")["pixel_values"][0]


def _smooth(rng: np.random.Generator, height: int, width: int, peak: int) -> np.ndarray:
    """Blurred noise plus a ramp spanning ``0..peak``: never uniform, with sharp and smooth parts."""
    coarse = rng.random((height // 7 + 2, width // 7 + 2))
    picture = np.kron(coarse, np.ones((7, 7)))[:height, :width] * 0.6 + np.linspace(0, 0.4, width)[None, :]
    picture[height // 3 : height // 3 + 5] = 1.0  # a bright line: bicubic overshoot next to it
    return np.round(picture / picture.max() * peak)


def _png(path: Path, values: np.ndarray, dtype: type) -> Path:
    Image.fromarray(values.astype(dtype)).save(path)
    return path


@pytest.mark.parametrize("shape", [(600, 500), (500, 600), (300, 260), (1031, 777), (518, 518)])
def test_8bit_images_match_the_release_processor_exactly(tmp_path: Path, shape):
    values = _smooth(np.random.default_rng(sum(shape)), *shape, peak=255).astype(np.uint8)
    image = read_image(_png(tmp_path / "x.png", values, np.uint8))
    ours = InferencePreprocessor()(image)
    reference = _reference(PreprocessConfig(), Image.fromarray(values))
    assert ours.shape == reference.shape == (3, 518, 518)
    assert ours.dtype == torch.float32
    assert torch.equal(ours, reference)


@pytest.mark.parametrize(
    "config",
    [
        PreprocessConfig(
            shortest_edge=224,
            crop_size=(224, 224),
            resample="bilinear",
            image_mean=(0.485, 0.456, 0.406),
            image_std=(0.229, 0.224, 0.225),
        ),
        PreprocessConfig(shortest_edge=None, resize_size=(300, 200), crop_size=(256, 180)),
        PreprocessConfig(do_resize=False, crop_size=(400, 300)),  # crop larger than the image: zero padding
        PreprocessConfig(do_normalize=False, do_center_crop=False),
    ],
    ids=["imagenet-224", "fixed-size", "pad", "no-normalise"],
)
def test_other_settings_match_the_processor_configured_the_same_way(config: PreprocessConfig):
    values = _smooth(np.random.default_rng(3), 350, 270, peak=255).astype(np.uint8)
    ours = InferencePreprocessor(config).from_array(values)
    assert torch.equal(ours, _reference(config, Image.fromarray(values)))


def test_grey_is_replicated_to_three_channels(tmp_path: Path):
    values = np.zeros((100, 120), np.uint8)
    values[:, 60:] = 255
    ours = InferencePreprocessor()(read_image(_png(tmp_path / "x.png", values, np.uint8)))
    assert torch.equal(ours[0], ours[1])
    assert torch.equal(ours[1], ours[2])
    # 0 → (0 - 0.5307) / 0.2583, 255 → (1 - 0.5307) / 0.2583: the release's MIMIC-CXR normalisation.
    assert ours.min().item() == pytest.approx(-0.5307 / 0.2583, abs=1e-5)
    assert ours.max().item() == pytest.approx((1 - 0.5307) / 0.2583, abs=1e-5)


def test_16bit_images_keep_their_precision_where_the_processor_saturates(tmp_path: Path):
    values = _smooth(np.random.default_rng(1), 600, 520, peak=65535).astype(np.uint16)
    image = read_image(_png(tmp_path / "x16.png", values, np.uint16))
    assert image.record.bits == 16
    ours = InferencePreprocessor()(image)
    # The trap: the processor converts a 16-bit Pillow image to RGB by clipping at 255 — nearly all white.
    trap = _reference(PreprocessConfig(), Image.fromarray(values))
    white = (1 - 0.5307) / 0.2583
    assert (trap > white - 1e-4).float().mean() > 0.99
    assert (ours > white - 1e-4).float().mean() < 0.05
    # Against the processor fed the image rounded to 8 bits, ours differs by the 8-bit rounding plus
    # Pillow's 8-bit resize rounding: at most ~1.5 grey levels, i.e. 1.5 / 255 / 0.2583 after normalising.
    eight_bit = np.round(values / 65535 * 255).astype(np.uint8)
    close = _reference(PreprocessConfig(), Image.fromarray(eight_bit))
    assert (ours - close).abs().max().item() < 1.6 / 255 / 0.2583
    assert (ours - close).abs().mean().item() < 0.5 / 255 / 0.2583


def test_16bit_differences_below_one_8bit_level_survive(tmp_path: Path):
    base = _smooth(np.random.default_rng(2), 300, 300, peak=60000).astype(np.uint16)
    brighter = base + 100  # 100 / 65535 is under a sixth of one 8-bit grey level
    first = InferencePreprocessor()(read_image(_png(tmp_path / "a.png", base, np.uint16)))
    second = InferencePreprocessor()(read_image(_png(tmp_path / "b.png", brighter, np.uint16)))
    shift = (second - first).mean().item()
    assert shift == pytest.approx(100 / 65535 / 0.2583, rel=0.05)


def test_float_resizing_is_clipped_like_the_8bit_path():
    values = np.zeros((100, 100), dtype=np.float32)
    values[40:60] = 1.0  # a hard edge: bicubic overshoots above 1 and below 0 next to it
    tensor = InferencePreprocessor(PreprocessConfig(do_normalize=False)).from_array(values)
    assert tensor.min().item() >= 0.0
    assert tensor.max().item() <= 1.0


def test_model_folder_values_win(tmp_path: Path):
    assert PreprocessConfig.from_model_folder(tmp_path) == PreprocessConfig()
    settings = {
        "image_processor_type": "BitImageProcessor",
        "size": {"shortest_edge": 224},
        "crop_size": {"height": 224, "width": 224},
        "resample": 2,
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.25, 0.25, 0.25],
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(settings))
    config = PreprocessConfig.from_model_folder(tmp_path)
    assert (config.shortest_edge, config.crop_size, config.resample) == (224, (224, 224), "bilinear")
    assert config.image_mean == (0.5, 0.5, 0.5)
    assert config.image_std == (0.25, 0.25, 0.25)
    assert config.rescale_factor == pytest.approx(1 / 255)  # absent keys keep the release's values
    assert InferencePreprocessor(config).from_array(np.full((300, 240), 7, np.uint8)).shape == (3, 224, 224)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "cannot read preprocessing settings"),
        ('{"resample": 9}', "unknown Pillow resampling code 9"),
        ('{"image_std": [0, 1, 1]}', "image_std must be positive"),
        ('{"size": {"longest_edge": 5}}', "neither shortest_edge nor height/width"),
    ],
)
def test_bad_preprocessor_configs_name_the_file(tmp_path: Path, content: str, message: str):
    (tmp_path / "preprocessor_config.json").write_text(content)
    with pytest.raises(ValueError, match=message) as caught:
        PreprocessConfig.from_model_folder(tmp_path)
    assert str(tmp_path / "preprocessor_config.json") in str(caught.value)


def test_written_config_loads_as_bit_image_processor(tmp_path: Path):
    config = PreprocessConfig()
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(config.to_processor_dict()))
    processor = AutoImageProcessor.from_pretrained(tmp_path)
    assert type(processor).__name__.startswith("BitImageProcessor")
    assert list(processor.image_std) == [0.2583] * 3
    assert processor.resample == 3
    assert PreprocessConfig.from_model_folder(tmp_path) == config


def test_batch_stacks_and_rejects_colour_arrays():
    preprocessor = InferencePreprocessor(PreprocessConfig(shortest_edge=28, crop_size=(28, 28)))
    images = [np.full((40, 30), level, np.uint8) for level in (10, 200)]
    assert preprocessor.batch(images).shape == (2, 3, 28, 28)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"grey \(H, W\)"):
        preprocessor.from_array(np.zeros((40, 30, 3), np.uint8))
    with pytest.raises(ValueError, match="got uint16"):
        preprocessor.from_array(np.zeros((40, 30), np.uint16))  # 16-bit values must be scaled to [0, 1] first
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\], got \[0, 255\]"):
        preprocessor.from_array(np.linspace(0, 255, 1200, dtype=np.float32).reshape(40, 30))
