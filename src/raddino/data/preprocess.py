"""Inference preprocessing identical to the RAD-DINO release's ``BitImageProcessor``.

The release (``microsoft/rad-dino/preprocessor_config.json``) converts to RGB (grey replicated to three
channels), resizes so the shorter side is 518 px (bicubic), centre-crops 518×518, multiplies by 1/255 and
normalises with mean 0.5307 and std 0.2583 (MIMIC-CXR statistics) on every channel.

Two paths, one result:

* 8-bit sources (PNG/JPEG/TIFF read with ``scaling == "dtype"``) are turned back into their exact uint8
  values and resized by Pillow in 8 bits, exactly as the processor does (its Pillow backend resizes the
  uint8 RGB image); the tensors match transformers' ``BitImageProcessorPil`` bit for bit.
* Deeper sources (12/16-bit DICOM and PNG) are resized in float (Pillow mode ``"F"``, the same bicubic
  filter) and clipped to [0, 1] as the 8-bit path clips at 0 and 255. transformers' processors would clip a
  16-bit Pillow image at 255 when converting it to RGB (a white image), or quantise a float image to
  8 bits; scaling ourselves keeps the source's precision.

Only one grey channel is resized, then copied to three (the processor resizes three identical channels).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from raddino.io.record import XrayImage

logger = logging.getLogger(__name__)

Resample = Literal["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"]

# Pillow's resampling codes, which preprocessor_config.json stores as "resample" (3 = bicubic).
_PIL_CODES: dict[Resample, int] = {
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
_NAMES_BY_CODE = {int(code): name for name, code in _PIL_CODES.items()}

# Keys of a preprocessor_config.json that carry no setting for grey chest X-rays.
_IGNORED_KEYS = {"image_processor_type", "processor_class", "do_convert_rgb", "feature_extractor_type"}
# Defaults of processor classes that differ from BitImageProcessor's, for keys their files leave out:
# DINOv3's processor resizes to a fixed size and never crops unless told to.
_CLASS_DEFAULTS: dict[str, dict[str, Any]] = {
    "DINOv3ViTImageProcessor": {"do_center_crop": False},
    "DINOv3ViTImageProcessorFast": {"do_center_crop": False},
}


@dataclass(frozen=True)
class PreprocessConfig:
    """The release's inference preprocessing; every field mirrors a ``preprocessor_config.json`` key.

    Attributes:
        shortest_edge: Resize so the shorter side has this many pixels (``size.shortest_edge``); the
            longer side becomes ``int(shortest_edge * long / short)`` as in transformers.
        resize_size: Resize to exactly (height, width) instead (``size.height`` / ``size.width``); used
            when ``shortest_edge`` is ``None``.
        crop_size: Centre crop (height, width); smaller images are padded with zeros first, as the
            processor does.
        resample: Resampling filter for the resize.
        rescale_factor: Multiplier taking 8-bit values to [0, 1].
        image_mean: Per-channel mean subtracted after rescaling (MIMIC-CXR statistics by default).
        image_std: Per-channel standard deviation divided by after subtracting the mean.
        do_resize: Resize at all.
        do_center_crop: Crop at all.
        do_rescale: Rescale at all (off: values stay on the 0-255 scale).
        do_normalize: Normalise at all.
    """

    shortest_edge: int | None = 518
    resize_size: tuple[int, int] | None = None
    crop_size: tuple[int, int] = (518, 518)
    resample: Resample = "bicubic"
    rescale_factor: float = 1 / 255
    image_mean: tuple[float, float, float] = (0.5307, 0.5307, 0.5307)
    image_std: tuple[float, float, float] = (0.2583, 0.2583, 0.2583)
    do_resize: bool = True
    do_center_crop: bool = True
    do_rescale: bool = True
    do_normalize: bool = True
    ignored: tuple[str, ...] = field(default=(), compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.do_resize and self.shortest_edge is None and self.resize_size is None:
            raise ValueError("do_resize needs shortest_edge or resize_size")
        if self.resample not in _PIL_CODES:
            raise ValueError(f"resample must be one of {', '.join(_PIL_CODES)}, got {self.resample!r}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError("image_mean and image_std need 3 values (the encoder takes 3 channels)")
        if any(value <= 0 for value in self.image_std):
            raise ValueError(f"image_std must be positive, got {self.image_std}")

    @property
    def output_size(self) -> tuple[int, int]:
        """(height, width) of the tensors made, when it does not depend on the image."""
        if self.do_center_crop:
            return self.crop_size
        if self.do_resize and self.resize_size is not None:
            return self.resize_size
        raise ValueError("the output size depends on the image (no crop and no fixed resize)")

    # ------------------------------------------------------------------------------ preprocessor_config
    @classmethod
    def from_processor_dict(
        cls, values: dict[str, Any], source: str = "preprocessor_config.json"
    ) -> PreprocessConfig:
        """Settings from a transformers image-processor dict; keys it lacks keep the release's values
        (or the processor class's own, where it differs: DINOv3's never crops).

        Raises:
            ValueError: a key has a value this preprocessing cannot honour (names ``source`` and the key).
        """
        settings: dict[str, Any] = dict(_CLASS_DEFAULTS.get(str(values.get("image_processor_type")), {}))
        ignored: list[str] = []
        try:
            for key, value in values.items():
                if key == "size":
                    if value.get("shortest_edge") is not None:
                        settings["shortest_edge"] = int(value["shortest_edge"])
                    elif value.get("height") is not None and value.get("width") is not None:
                        settings["shortest_edge"] = None
                        settings["resize_size"] = (int(value["height"]), int(value["width"]))
                    else:
                        raise ValueError(f"size {value} has neither shortest_edge nor height/width")
                elif key == "crop_size":
                    if isinstance(value, int):
                        value = {"height": value, "width": value}
                    settings["crop_size"] = (int(value["height"]), int(value["width"]))
                elif key == "resample":
                    if int(value) not in _NAMES_BY_CODE:
                        raise ValueError(f"unknown Pillow resampling code {value}")
                    settings["resample"] = _NAMES_BY_CODE[int(value)]
                elif key in ("image_mean", "image_std"):
                    numbers = (
                        [float(value)] * 3 if isinstance(value, (int, float)) else [float(v) for v in value]
                    )
                    if len(numbers) == 1:
                        numbers *= 3
                    settings[key] = tuple(numbers)
                elif key == "rescale_factor":
                    settings[key] = float(value)
                elif key in ("do_resize", "do_center_crop", "do_rescale", "do_normalize"):
                    settings[key] = bool(value)
                elif key not in _IGNORED_KEYS:
                    ignored.append(key)
            config = cls(**settings, ignored=tuple(sorted(ignored)))
        except (TypeError, KeyError, ValueError, AttributeError) as error:
            raise ValueError(f"{source}: {error}") from error
        if ignored:
            logger.warning(
                "%s: ignoring keys this preprocessing does not use: %s", source, ", ".join(ignored)
            )
        return config

    @classmethod
    def from_model_folder(cls, folder: str | Path) -> PreprocessConfig:
        """The folder's ``preprocessor_config.json`` when it has one (its values win), else the release's.

        Raises:
            ValueError: the file is not valid JSON or holds an unusable value (names the file and key).
        """
        path = Path(folder) / "preprocessor_config.json"
        if not path.is_file():
            return cls()
        return cls.from_file(path)

    @classmethod
    def from_file(cls, path: str | Path) -> PreprocessConfig:
        """Settings from a ``preprocessor_config.json`` file (any name); keys it lacks keep the release's.

        Raises:
            ValueError: the file is missing, not valid JSON or holds an unusable value (names the file and
                key).
        """
        path = Path(path)
        try:
            values = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            raise ValueError(f"{path}: cannot read preprocessing settings: {error}") from error
        if not isinstance(values, dict):
            raise ValueError(f"{path}: expected a JSON object")
        return cls.from_processor_dict(values, source=str(path))

    def to_processor_dict(self) -> dict[str, Any]:
        """A ``preprocessor_config.json`` that ``AutoImageProcessor`` loads as a ``BitImageProcessor``."""
        if self.shortest_edge is not None:
            size: dict[str, int] = {"shortest_edge": self.shortest_edge}
        else:
            assert self.resize_size is not None
            size = {"height": self.resize_size[0], "width": self.resize_size[1]}
        return {
            "crop_size": {"height": self.crop_size[0], "width": self.crop_size[1]},
            "do_center_crop": self.do_center_crop,
            "do_convert_rgb": True,
            "do_normalize": self.do_normalize,
            "do_rescale": self.do_rescale,
            "do_resize": self.do_resize,
            "image_mean": list(self.image_mean),
            "image_processor_type": "BitImageProcessor",
            "image_std": list(self.image_std),
            "resample": int(_PIL_CODES[self.resample]),
            "rescale_factor": self.rescale_factor,
            "size": size,
        }

    def to_dict(self) -> dict[str, Any]:
        """Plain values (for saving beside outputs and comparing runs)."""
        values = asdict(self)
        values.pop("ignored")
        return {key: list(value) if isinstance(value, tuple) else value for key, value in values.items()}


def _resized_shape(height: int, width: int, config: PreprocessConfig) -> tuple[int, int]:
    """(height, width) after the resize, with transformers' rounding (``int``, i.e. floor)."""
    if config.shortest_edge is None:
        assert config.resize_size is not None
        return config.resize_size
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = config.shortest_edge, int(config.shortest_edge * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def _center_crop(values: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    """transformers' ``center_crop``: top/left = (size - crop) // 2, zero padding when too small."""
    height, width = values.shape
    crop_height, crop_width = crop
    if height < crop_height or width < crop_width:
        padded = np.zeros((max(height, crop_height), max(width, crop_width)), dtype=values.dtype)
        top, left = (padded.shape[0] - height + 1) // 2, (padded.shape[1] - width + 1) // 2
        padded[top : top + height, left : left + width] = values
        values = padded
        height, width = padded.shape
    top, left = (height - crop_height) // 2, (width - crop_width) // 2
    return values[top : top + crop_height, left : left + crop_width]


class InferencePreprocessor:
    """Turns a read image into the encoder's input, (3, crop, crop) float32, as the release does.

    Picklable and stateless, so DataLoader workers can each call it.

    Args:
        config: The preprocessing (the release's by default; use
            :meth:`PreprocessConfig.from_model_folder` for a model's own).
    """

    def __init__(self, config: PreprocessConfig | None = None) -> None:
        self.config = config or PreprocessConfig()

    def __call__(self, image: XrayImage | np.ndarray) -> torch.Tensor:
        """Preprocess one image.

        Args:
            image: An :class:`~raddino.io.record.XrayImage` from ``read_image``, or a (H, W) array: uint8
                (taken as 8-bit values) or float in [0, 1].

        Returns:
            Tensor (3, crop_height, crop_width), float32.
        """
        if isinstance(image, XrayImage):
            record = image.record
            if record.bits <= 8 and record.scaling == "dtype":
                # Exact by the reader's contract: 8-bit sources are stored as value / 255.
                return self.from_array(np.round(image.pixels * 255).astype(np.uint8))
            return self.from_array(image.pixels)
        return self.from_array(np.asarray(image))

    def from_array(self, pixels: np.ndarray) -> torch.Tensor:
        """Preprocess a grey (H, W) array: uint8 on the exact 8-bit path, float [0, 1] on the float path."""
        if pixels.ndim != 2:
            raise ValueError(f"expected a grey (H, W) image, got shape {pixels.shape}")
        config = self.config
        eight_bit = pixels.dtype == np.uint8
        if not eight_bit:
            if not np.issubdtype(pixels.dtype, np.floating):
                raise ValueError(f"expected uint8 or float pixels in [0, 1], got {pixels.dtype}")
            pixels = pixels.astype(np.float32, copy=False)
            low, high = float(pixels.min()), float(pixels.max())
            if not (low >= -1e-6 and high <= 1 + 1e-6):  # written so that NaN fails too
                raise ValueError(f"float pixels must lie in [0, 1], got [{low:g}, {high:g}]")
        if config.do_resize:
            height, width = _resized_shape(int(pixels.shape[0]), int(pixels.shape[1]), config)
            source = Image.fromarray(np.ascontiguousarray(pixels))  # mode "L" for uint8, "F" for float32
            resized = source.resize((width, height), resample=_PIL_CODES[config.resample])
            pixels = np.asarray(resized)
            if not eight_bit:
                # The 8-bit path saturates bicubic overshoot at 0 and 255; do the same in float.
                pixels = np.clip(pixels, 0.0, 1.0)
        if config.do_center_crop:
            pixels = _center_crop(pixels, config.crop_size)
        # On the 0-255 scale the processor sees; float sources are on [0, 1].
        if config.do_rescale:
            # The processor multiplies in float64 and then casts to float32; so do we.
            scale = config.rescale_factor * (1.0 if eight_bit else 255.0)
            values = (pixels.astype(np.float64) * scale).astype(np.float32)
        else:
            values = pixels.astype(np.float32) * np.float32(1.0 if eight_bit else 255.0)
        channels = []
        for mean, std in zip(config.image_mean, config.image_std, strict=True):
            if config.do_normalize:
                channels.append((values - np.float32(mean)) / np.float32(std))  # float32 like the processor
            else:
                channels.append(values)
        return torch.from_numpy(np.stack(channels))  # (3, crop_h, crop_w)

    def batch(self, images: list[XrayImage]) -> torch.Tensor:
        """Preprocess and stack several images, (B, 3, crop_h, crop_w)."""
        return torch.stack([self(image) for image in images])
