"""``raddino export``: convert an encoder between the transformers folder and its original format.

The RAD-DINO release ships both: a transformers folder (``config.json``, ``model.safetensors``,
``preprocessor_config.json``) and DINOv2-format weights (``backbone_compatible.safetensors``) with the DINO
head (``dino_head.safetensors``). ``export_encoder`` writes either from any source ``load_encoder`` accepts;
a DINOv3 encoder's original format is DINOv3's (``dinov3``: ``DinoVisionTransformer`` key names), written
under the same file name, with its DINO and iBOT heads (``ibot_head.safetensors``) where given.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import save_file

from raddino.data.preprocess import PreprocessConfig
from raddino.io.atomic import atomic_path, atomic_write_text
from raddino.models.convert import ConversionError, dinov2_state_dict
from raddino.models.convert_dinov3 import dinov3_state_dict
from raddino.models.dino_head import DINOHead, load_dino_head, save_dino_head
from raddino.models.encoder import Encoder
from raddino.models.loading import DINOV2_FILE_NAME, ModelLoadError, load_encoder

logger = logging.getLogger(__name__)

ExportFormat = Literal["transformers", "dinov2", "dinov3", "int8"]
DINO_HEAD_FILE_NAME = "dino_head.safetensors"
IBOT_HEAD_FILE_NAME = "ibot_head.safetensors"  # DINOv3's separate iBOT head
_FILE_SUFFIXES = (".safetensors", ".pth", ".pt")


@dataclass
class ExportConfig:
    """Settings of ``raddino export``."""

    model: str = ""
    """The encoder to convert: transformers folder, DINOv2/DINOv3 .safetensors/.pth, preset:NAME or hub id."""
    out: str = ""
    """Output folder (or, for formats dinov2 and dinov3, a .safetensors/.pth file)."""
    format: ExportFormat = "transformers"
    """transformers: config.json + model.safetensors; dinov2 / dinov3: backbone_compatible.safetensors
    with the original key names of a DINOv2 / DINOv3 encoder; int8: a static int8 CPU encoder, calibrated
    and gated on --calibration (raddino.evaluate.int8_export)."""
    dino_head: str = ""
    """DINO head file to check and write beside the weights (default: the source folder's own, if any)."""
    ibot_head: str = ""
    """iBOT head file (DINOv3's separate head) to check and write beside the weights (default: the source
    folder's own, if any)."""
    num_heads: int | None = None
    """Attention heads of a DINOv2 source (default: width / 64; DINOv3 files need none)."""
    overwrite: bool = False
    """Replace existing output files."""
    calibration: str = ""
    """int8: a manifest whose train images calibrate and whose test (else val) images gate the export."""
    calibration_images: int = 256
    """int8: training images to calibrate the activation scales on."""
    gate_images: int = 1000
    """int8: most images per split the acceptance gate uses."""
    force: bool = False
    """int8: write a model that fails the gate (int8.json records the failure)."""


@dataclass
class ExportResult:
    """What :func:`export_encoder` wrote."""

    out: Path
    format: ExportFormat
    files: list[Path] = field(default_factory=list)

    def __str__(self) -> str:
        return f"{self.format} export -> {self.out}: " + ", ".join(path.name for path in self.files)


def _source_folder(source: str | Path) -> Path | None:
    """The local folder a source lives in (the folder itself, or a file's folder), if any."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.is_file():
        return path.parent
    return None


def save_original_weights(encoder: Encoder, path: str | Path) -> Path:
    """Write the encoder in its family's original format (DINOv2's or DINOv3's key names) as
    ``.safetensors`` or ``.pth`` / ``.pt``, atomically.

    The safetensors metadata records what the tensors do not say: ``num_heads`` (DINOv2) or
    ``layer_norm_eps`` (DINOv3).
    """
    path = Path(path)
    metadata = {"format": "pt", "source": "raddino", "family": encoder.family.name}
    if encoder.family.name == "dinov3":
        state = dinov3_state_dict(encoder)
        metadata["layer_norm_eps"] = repr(float(encoder.config.layer_norm_eps))
    else:
        state = dinov2_state_dict(encoder)
        metadata["num_heads"] = str(encoder.num_heads)
    with atomic_path(path) as temporary:
        if path.suffix == ".safetensors":
            save_file(state, str(temporary), metadata=metadata)
        else:
            torch.save(state, temporary)
    return path


def save_dinov2_weights(encoder: Encoder, path: str | Path) -> Path:
    """Write the encoder as a DINOv2-format state dict (``.safetensors``, or ``.pth`` / ``.pt``), atomically.

    The safetensors metadata records ``num_heads`` (the one architecture number not in the tensors).

    Raises:
        ConversionError: the encoder is not a DINOv2 one (see :func:`save_original_weights`).
    """
    if encoder.family.name != "dinov2":
        raise ConversionError(f"a {encoder.family.name} encoder has no DINOv2-format state dict")
    return save_original_weights(encoder, path)


def _load_head(
    path: str | Path | None, folder: Path | None, file_name: str, prefix: str, encoder: Encoder
) -> DINOHead | None:
    """A head to write: the one named, else the source folder's ``file_name``; checked against the
    encoder's width."""
    if path is None and folder is not None and (folder / file_name).is_file():
        path = folder / file_name
        logger.info("carrying over the source's head %s", path)
    if path is None:
        return None
    head = load_dino_head(path, prefix=prefix)  # validates keys and shapes before anything is written
    if head.in_dim != encoder.embed_dim:
        raise ValueError(f"{path}: head takes width {head.in_dim}, the encoder gives {encoder.embed_dim}")
    return head


def export_encoder(
    source: str | Path,
    out: str | Path,
    *,
    format: ExportFormat,
    dino_head: str | Path | None = None,
    ibot_head: str | Path | None = None,
    preprocess: PreprocessConfig | None = None,
    num_heads: int | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Convert ``source`` to ``format`` under ``out``.

    Args:
        source: Anything :func:`~raddino.models.loading.load_encoder` accepts.
        out: ``transformers``: a folder. ``dinov2`` / ``dinov3``: a folder (receives
            ``backbone_compatible.safetensors`` and ``preprocessor_config.json``) or a ``.safetensors`` /
            ``.pth`` file path.
        format: ``"transformers"``, ``"dinov2"`` (DINOv2 encoders) or ``"dinov3"`` (DINOv3 encoders).
        dino_head: A DINO head file to validate and write as ``dino_head.safetensors`` beside the weights;
            by default the source folder's own ``dino_head.safetensors`` is carried over when present.
        ibot_head: The same for DINOv3's iBOT head (``ibot_head.safetensors``).
        preprocess: Preprocessing to record; by default the source folder's ``preprocessor_config.json``,
            else the release's.
        num_heads: Attention heads for DINOv2 sources whose width is not 64 × heads.
        overwrite: Replace existing outputs (otherwise an existing output is an error).

    Returns:
        The files written.

    Raises:
        ModelLoadError: the source or the head cannot be loaded.
        FileExistsError: the output exists and ``overwrite`` is False.
        ValueError: unknown format, a format that is not the encoder's family, or a head whose input
            width differs from the encoder's.
    """
    if format == "int8":
        raise ValueError("format int8 is calibrated and gated: use raddino.evaluate.int8_export.export_int8")
    if format not in ("transformers", "dinov2", "dinov3"):
        raise ValueError(f"format must be 'transformers', 'dinov2' or 'dinov3', got {format!r}")
    out = Path(out)
    folder = _source_folder(source)
    encoder = load_encoder(source, num_heads=num_heads)
    if format != "transformers" and format != encoder.family.name:
        raise ValueError(
            f"{source} is a {encoder.family.name} encoder: its original format is {encoder.family.name} "
            f"(--format {encoder.family.name}), not {format}"
        )
    if preprocess is None:
        preprocess = PreprocessConfig.from_model_folder(folder) if folder else PreprocessConfig()
    heads: dict[str, DINOHead] = {}
    for file_name, named, prefix in (
        (DINO_HEAD_FILE_NAME, dino_head, "dino_head."),
        (IBOT_HEAD_FILE_NAME, ibot_head, "ibot_head."),
    ):
        head = _load_head(named, folder, file_name, prefix, encoder)
        if head is not None:
            heads[file_name] = head

    as_file = format != "transformers" and out.suffix in _FILE_SUFFIXES
    weights = (
        out if as_file else out / ("model.safetensors" if format == "transformers" else DINOV2_FILE_NAME)
    )
    head_folder = out.parent if as_file else out
    head_files = {head_folder / name: head for name, head in heads.items()}
    existing = [path for path in (weights, *head_files) if path.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists; pass overwrite=True (--overwrite) to replace it")

    result = ExportResult(out=out, format=format)
    if format == "transformers":
        encoder.save_pretrained(out, preprocess=preprocess)
        result.files += [out / "config.json", out / "model.safetensors", out / "preprocessor_config.json"]
    else:
        result.files.append(save_original_weights(encoder, weights))
        if not as_file:
            processor = out / "preprocessor_config.json"
            atomic_write_text(processor, json.dumps(preprocess.to_processor_dict(), indent=2) + "\n")
            result.files.append(processor)
    for head_path, head in head_files.items():
        # Rewritten from the validated module: plain key names whatever the input's prefix or format.
        result.files.append(save_dino_head(head, head_path))
    return result


def run_export(config: ExportConfig) -> ExportResult:
    """:func:`export_encoder` with the settings of ``raddino export``."""
    return export_encoder(
        config.model,
        config.out,
        format=config.format,
        dino_head=config.dino_head or None,
        ibot_head=config.ibot_head or None,
        num_heads=config.num_heads,
        overwrite=config.overwrite,
    )


__all__ = [
    "DINO_HEAD_FILE_NAME",
    "IBOT_HEAD_FILE_NAME",
    "ExportConfig",
    "ExportFormat",
    "ExportResult",
    "ModelLoadError",
    "export_encoder",
    "run_export",
    "save_dinov2_weights",
    "save_original_weights",
]
