"""What every figure starts from: an image as the encoder saw it, and the encoder with its preprocessing."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from raddino.data.preprocess import InferencePreprocessor, PreprocessConfig
from raddino.io.images import read_image
from raddino.io.record import XrayImage
from raddino.models import Encoder, load_encoder
from raddino.viz.geometry import PreprocessGeometry


@dataclass(frozen=True)
class EncodedInput:
    """One image prepared for the encoder.

    Attributes:
        name: What the figures call it (the file name, or ``"image"``).
        pixels: The encoder's input, (3, H, W) normalised.
        display: The same crop un-normalised to [0, 1], (H, W), for drawing under the heatmaps.
        geometry: How original pixel coordinates map onto ``pixels``.
    """

    name: str
    pixels: torch.Tensor
    display: np.ndarray
    geometry: PreprocessGeometry


def encode_input(
    image: XrayImage | np.ndarray,
    preprocess: PreprocessConfig,
    patch_size: int,
    name: str = "image",
) -> EncodedInput:
    """Preprocess ``image`` as the release does and keep what the figures need.

    Args:
        image: An image from :func:`raddino.io.images.read_image`, or a grey (H, W) array (uint8, or
            float in [0, 1]).
        preprocess: The model's preprocessing.
        patch_size: The encoder's patch side (the crop must be a multiple of it).
        name: Label for figures and outputs.
    """
    grey = image.pixels if isinstance(image, XrayImage) else np.asarray(image)
    if grey.ndim != 2:
        raise ValueError(f"{name}: expected a grey (H, W) image, got shape {grey.shape}")
    pixels = InferencePreprocessor(preprocess)(image)  # (3, H, W)
    height, width = int(pixels.shape[1]), int(pixels.shape[2])
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"{name}: the preprocessed image is {width}×{height} px, not a multiple of the patch size "
            f"{patch_size}; use a crop size that is"
        )
    geometry = PreprocessGeometry.from_config(
        (int(grey.shape[0]), int(grey.shape[1])), preprocess, patch_size
    )
    if geometry.crop_shape != (height, width):  # guards the mapping against a preprocessing change
        raise RuntimeError(
            f"{name}: geometry {geometry.crop_shape} disagrees with the input {(height, width)}"
        )
    mean, std = preprocess.image_mean[0], preprocess.image_std[0]
    channel = pixels[0].numpy().astype(np.float64)  # (H, W)
    if preprocess.do_normalize:
        channel = channel * std + mean
    if not preprocess.do_rescale:
        channel = channel / 255.0
    display = np.clip(channel, 0.0, 1.0).astype(np.float32)
    return EncodedInput(name=name, pixels=pixels, display=display, geometry=geometry)


def read_input(path: str | Path, preprocess: PreprocessConfig, patch_size: int) -> EncodedInput:
    """Read a file (PNG/JPEG/TIFF/DICOM) and prepare it; errors name the file.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        raddino.io.errors.ImageReadError: the file is not a readable image.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return encode_input(read_image(path), preprocess, patch_size, name=path.name)


def load_model(source: str) -> tuple[Encoder, PreprocessConfig]:
    """Load an encoder and the preprocessing it ships with (the release's when it ships none).

    Raises:
        raddino.models.ModelLoadError: the source cannot be loaded (the message names it).
    """
    from raddino.features.embed import preprocess_config_for

    encoder = load_encoder(source).eval()
    return encoder, preprocess_config_for(source)
