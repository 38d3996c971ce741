"""``raddino export``: convert an encoder between the transformers folder and the DINOv2 format.

The RAD-DINO release ships both: a transformers folder (``config.json``, ``model.safetensors``,
``preprocessor_config.json``) and DINOv2-format weights (``backbone_compatible.safetensors``) with the DINO
head (``dino_head.safetensors``). ``export_encoder`` writes either from any source ``load_encoder`` accepts.
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
from raddino.models.convert import dinov2_state_dict
from raddino.models.dino_head import DINOHead, load_dino_head, save_dino_head
from raddino.models.encoder import Encoder
from raddino.models.loading import DINOV2_FILE_NAME, ModelLoadError, load_encoder

logger = logging.getLogger(__name__)

ExportFormat = Literal["transformers", "dinov2"]
DINO_HEAD_FILE_NAME = "dino_head.safetensors"
_FILE_SUFFIXES = (".safetensors", ".pth", ".pt")


@dataclass
class ExportConfig:
    """Settings of ``raddino export``."""

    model: str = ""
    """The encoder to convert: transformers folder, DINOv2 .safetensors/.pth, preset:NAME or hub id."""
    out: str = ""
    """Output folder (or, for format dinov2, a .safetensors/.pth file)."""
    format: ExportFormat = "transformers"
    """transformers: config.json + model.safetensors; dinov2: backbone_compatible.safetensors (DINOv2 key
    names)."""
    dino_head: str = ""
    """DINO head file to check and write beside the weights (default: the source folder's own, if any)."""
    num_heads: int | None = None
    """Attention heads of a DINOv2 source (default: width / 64)."""
    overwrite: bool = False
    """Replace existing output files."""


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


def save_dinov2_weights(encoder: Encoder, path: str | Path) -> Path:
    """Write the encoder as a DINOv2-format state dict (``.safetensors``, or ``.pth`` / ``.pt``), atomically.

    The safetensors metadata records ``num_heads`` (the one architecture number not in the tensors).
    """
    path = Path(path)
    state = dinov2_state_dict(encoder)
    with atomic_path(path) as temporary:
        if path.suffix == ".safetensors":
            metadata = {"format": "pt", "num_heads": str(encoder.num_heads), "source": "raddino"}
            save_file(state, str(temporary), metadata=metadata)
        else:
            torch.save(state, temporary)
    return path


def export_encoder(
    source: str | Path,
    out: str | Path,
    *,
    format: ExportFormat,
    dino_head: str | Path | None = None,
    preprocess: PreprocessConfig | None = None,
    num_heads: int | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Convert ``source`` to ``format`` under ``out``.

    Args:
        source: Anything :func:`~raddino.models.loading.load_encoder` accepts.
        out: ``transformers``: a folder. ``dinov2``: a folder (receives ``backbone_compatible.safetensors``
            and ``preprocessor_config.json``) or a ``.safetensors`` / ``.pth`` file path.
        format: ``"transformers"`` or ``"dinov2"``.
        dino_head: A DINO head file to validate and write as ``dino_head.safetensors`` beside the weights;
            by default the source folder's own ``dino_head.safetensors`` is carried over when present.
        preprocess: Preprocessing to record; by default the source folder's ``preprocessor_config.json``,
            else the release's.
        num_heads: Attention heads for DINOv2 sources whose width is not 64 × heads.
        overwrite: Replace existing outputs (otherwise an existing output is an error).

    Returns:
        The files written.

    Raises:
        ModelLoadError: the source or the head cannot be loaded.
        FileExistsError: the output exists and ``overwrite`` is False.
        ValueError: unknown format, or a head whose input width differs from the encoder's.
    """
    if format not in ("transformers", "dinov2"):
        raise ValueError(f"format must be 'transformers' or 'dinov2', got {format!r}")
    out = Path(out)
    folder = _source_folder(source)
    encoder = load_encoder(source, num_heads=num_heads)
    if preprocess is None:
        preprocess = PreprocessConfig.from_model_folder(folder) if folder else PreprocessConfig()
    if dino_head is None and folder is not None and (folder / DINO_HEAD_FILE_NAME).is_file():
        dino_head = folder / DINO_HEAD_FILE_NAME
        logger.info("carrying over the source's DINO head %s", dino_head)
    head: DINOHead | None = None
    if dino_head is not None:
        head = load_dino_head(dino_head)  # validates keys and shapes before anything is written
        if head.in_dim != encoder.embed_dim:
            raise ValueError(
                f"{dino_head}: DINO head takes width {head.in_dim}, the encoder gives {encoder.embed_dim}"
            )

    as_file = format == "dinov2" and out.suffix in _FILE_SUFFIXES
    weights = (
        out if as_file else out / ("model.safetensors" if format == "transformers" else DINOV2_FILE_NAME)
    )
    head_path = (out.parent if as_file else out) / DINO_HEAD_FILE_NAME
    existing = [
        path for path in (weights, head_path if dino_head else None) if path is not None and path.exists()
    ]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists; pass overwrite=True (--overwrite) to replace it")

    result = ExportResult(out=out, format=format)
    if format == "transformers":
        encoder.save_pretrained(out, preprocess=preprocess)
        result.files += [out / "config.json", out / "model.safetensors", out / "preprocessor_config.json"]
    else:
        result.files.append(save_dinov2_weights(encoder, weights))
        if not as_file:
            processor = out / "preprocessor_config.json"
            atomic_write_text(processor, json.dumps(preprocess.to_processor_dict(), indent=2) + "\n")
            result.files.append(processor)
    if head is not None:
        # Rewritten from the validated module: DINOv2 key names whatever the input's prefix or format.
        result.files.append(save_dino_head(head, head_path))
    return result


def run_export(config: ExportConfig) -> ExportResult:
    """:func:`export_encoder` with the settings of ``raddino export``."""
    return export_encoder(
        config.model,
        config.out,
        format=config.format,
        dino_head=config.dino_head or None,
        num_heads=config.num_heads,
        overwrite=config.overwrite,
    )


__all__ = [
    "DINO_HEAD_FILE_NAME",
    "ExportConfig",
    "ExportFormat",
    "ExportResult",
    "ModelLoadError",
    "export_encoder",
    "run_export",
    "save_dinov2_weights",
]
