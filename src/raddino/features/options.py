"""What ``raddino embed`` settles before it writes anything: the preprocessing, and every option checked.

Preprocessing comes from, in this order:

1. ``preprocess`` when the user gives it: a folder holding ``preprocessor_config.json``, such a file, or
   ``rad-dino`` for the release's values (mean 0.5307, std 0.2583);
2. the model's own ``preprocessor_config.json``: in its folder, beside a DINOv2 weights file, or on the
   hub for a hub id;
3. RAD-DINO's values only where the model is RAD-DINO's (``microsoft/rad-dino`` when the hub cannot be
   reached) or a ``preset:`` (random weights, which have no preprocessing of their own).

Anything else is an error saying how to give the preprocessing: another model's statistics silently
replaced by MIMIC-CXR's would give embeddings that look fine and are wrong (``facebook/dinov2-base``
normalises with ImageNet's mean and std).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch

from raddino.data.preprocess import PreprocessConfig
from raddino.models import Encoder
from raddino.models.int8 import is_int8
from raddino.models.loading import is_hub_id

logger = logging.getLogger(__name__)

PROCESSOR_FILE = "preprocessor_config.json"
RAD_DINO = "rad-dino"  # the value of ``preprocess`` that asks for the release's values
RAD_DINO_HUB_IDS = ("microsoft/rad-dino",)
# Columns every embeddings row has; a copied manifest column or DICOM tag must not reuse them.
RESERVED_COLUMNS = ("id", "path", "cls", "patch_mean", "tokens_file", "tokens_row")
_HOW = (
    f"pass --preprocess with a folder or {PROCESSOR_FILE} file holding the model's preprocessing, or "
    f"--preprocess {RAD_DINO} for RAD-DINO's mean 0.5307 / std 0.2583"
)


class EmbedOptionError(ValueError):
    """An option of ``embed`` does not fit the model or the machine; the message names the option."""


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def resolve_preprocess(model: str, preprocess: str = "") -> tuple[PreprocessConfig, str]:
    """The preprocessing to embed ``model`` with, and where it came from (for the log and the error).

    Args:
        model: The model source, as :func:`raddino.models.load_encoder` takes it.
        preprocess: The user's choice (see the module docstring); empty: the model's own.

    Raises:
        EmbedOptionError: no preprocessing could be found for ``model`` (says how to give it), or the
            ``preprocess`` given does not exist.
        ValueError: a ``preprocessor_config.json`` that is not valid (names the file and key).
    """
    if preprocess:
        if preprocess.strip().lower() == RAD_DINO:
            return PreprocessConfig(), f"RAD-DINO's release values (preprocess={RAD_DINO})"
        given = Path(preprocess).expanduser()
        file = given / PROCESSOR_FILE if given.is_dir() else given
        if not file.is_file():
            raise EmbedOptionError(
                f"preprocess: {file} does not exist (give a folder holding {PROCESSOR_FILE}, such a file, "
                f"or {RAD_DINO})"
            )
        return PreprocessConfig.from_file(file), str(file)
    if model.startswith("preset:"):
        return (
            PreprocessConfig(),
            f"RAD-DINO's release values ({model} has random weights and none of its own)",
        )
    path = Path(model).expanduser()
    if path.exists():
        file = (path if path.is_dir() else path.parent) / PROCESSOR_FILE
        if file.is_file():
            return PreprocessConfig.from_file(file), str(file)
        raise EmbedOptionError(f"{model}: no preprocessing config could be found (no {file}); {_HOW}")
    if is_hub_id(model):
        from huggingface_hub import hf_hub_download  # only reached for a hub id the user named

        try:
            fetched = hf_hub_download(model, PROCESSOR_FILE)
        except Exception as error:  # offline, unreachable, no such file: the hub's errors are many
            if model.lower() in RAD_DINO_HUB_IDS:
                origin = f"RAD-DINO's release values ({model}'s {PROCESSOR_FILE} could not be fetched)"
                return PreprocessConfig(), origin
            raise EmbedOptionError(
                f"{model}: no preprocessing config could be found ({PROCESSOR_FILE} could not be fetched "
                f"from the hub: {_first_line(error)}); {_HOW}"
            ) from None
        return PreprocessConfig.from_file(fetched), f"{model}'s {PROCESSOR_FILE} on the hub"
    raise EmbedOptionError(f"{model}: no such file or folder (hub model ids look like owner/name)")


def describe_preprocess(config: PreprocessConfig) -> str:
    """The values that decide the numbers, in one short phrase for the log."""
    parts = []
    if config.do_resize:
        parts.append(
            f"resize shortest edge {config.shortest_edge}"
            if config.shortest_edge is not None
            else f"resize {config.resize_size}"
        )
    if config.do_center_crop:
        parts.append(f"crop {config.crop_size[0]}x{config.crop_size[1]}")
    if config.do_normalize:
        mean = ", ".join(f"{value:g}" for value in config.image_mean)
        std = ", ".join(f"{value:g}" for value in config.image_std)
        parts.append(f"mean ({mean}) std ({std})")
    else:
        parts.append("no normalisation")
    return ", ".join(parts)


def check_device(device: str) -> None:
    """Refuse a device torch cannot see, before anything is loaded or written."""
    if device == "cuda" and not torch.cuda.is_available():
        raise EmbedOptionError("device: 'cuda' was asked for but torch sees no CUDA device")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise EmbedOptionError("device: 'mps' was asked for but this machine has no Apple GPU")


def check_layers(layers: Sequence[int], num_layers: int, model: str) -> None:
    """Every asked block exists and is asked once (``1`` and ``-1`` are the same block of a 2-block model)."""
    seen: dict[int, int] = {}
    for layer in layers:
        if not -num_layers <= layer < num_layers:
            raise EmbedOptionError(
                f"layers: block {layer} does not exist in {model}, which has {num_layers} blocks "
                f"(0..{num_layers - 1}, or -{num_layers}..-1 counting from the end)"
            )
        block = layer % num_layers
        if block in seen:
            raise EmbedOptionError(f"layers: {seen[block]} and {layer} name the same block of {model}")
        seen[block] = layer


def check_options(
    *,
    model: str,
    encoder: Encoder,
    preprocess: PreprocessConfig,
    device: torch.device,
    precision: str,
    layers: Sequence[int],
    stores_tokens: bool,
    tokens_format: str,
    tokens_dtype: str,
    columns: Sequence[str],
    dicom_tags: Sequence[str],
) -> None:
    """Check the options of a run against the model and the machine; nothing is written before this.

    Raises:
        EmbedOptionError: the first option that cannot work, named, with what would.
    """
    check_layers(layers, encoder.num_layers, model)
    try:
        height, width = preprocess.output_size
    except ValueError:
        raise EmbedOptionError(
            "preprocess: the images would come out in different sizes (no centre crop and no fixed resize); "
            "set crop_size in its preprocessor_config.json"
        ) from None
    if height % encoder.patch_size or width % encoder.patch_size:
        raise EmbedOptionError(
            f"preprocess: images of {height}x{width} px do not split into {encoder.patch_size}-px patches "
            f"of {model}; use a crop size that is a multiple of {encoder.patch_size}"
        )
    channels = int(getattr(encoder.config, "num_channels", 3))
    if channels != 3:
        raise EmbedOptionError(f"model: {model} takes {channels} input channels; embed feeds 3 (grey x 3)")
    if is_int8(encoder) and (device.type != "cpu" or precision != "fp32"):
        raise EmbedOptionError(
            f"model: {model} is an int8 encoder: it runs with --device cpu --precision fp32"
        )
    if precision == "fp16" and device.type == "cpu":
        raise EmbedOptionError("precision: fp16 needs a GPU; use bf16 or fp32 on the CPU")
    if stores_tokens and tokens_format == "npz" and tokens_dtype == "bfloat16":
        raise EmbedOptionError(
            "tokens_dtype: bfloat16 cannot be stored as npz (NumPy has no bfloat16); use float16, or "
            "tokens_format safetensors"
        )
    names = [*columns, *dicom_tags]
    for name in names:
        if name in RESERVED_COLUMNS:
            raise EmbedOptionError(
                f"columns: {name!r} is a column every embeddings row has ({', '.join(RESERVED_COLUMNS)})"
            )
        if names.count(name) > 1:
            raise EmbedOptionError(f"columns: {name!r} is asked for twice (as a column or DICOM tag)")
    if dicom_tags:
        from pydicom.datadict import tag_for_keyword

        unknown = [tag for tag in dicom_tags if tag_for_keyword(tag) is None]
        if unknown:
            raise EmbedOptionError(
                f"dicom_tags: {', '.join(map(repr, unknown))} is not a DICOM keyword (e.g. PatientSex, "
                "ViewPosition, StudyDate)"
            )
