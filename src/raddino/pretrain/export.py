"""Exporting a run's encoder: a transformers folder or the family's original-format weights (DINOv2's or
DINOv3's key names), with the DINO head (and DINOv3-style runs' separate iBOT head).

The teacher is the encoder DINOv2 and RAD-DINO release (its EMA weights are smoother than the student's);
``which="student"`` exports the student instead. The folder's ``preprocessor_config.json`` carries the
run's normalisation (``crops.mean`` / ``crops.std``), so embedding with it reproduces training inputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from raddino.config import load_config
from raddino.data.preprocess import PreprocessConfig
from raddino.io.atomic import atomic_write_text
from raddino.models import ExportResult, save_dino_head, save_original_weights
from raddino.models.dino_head import dino_head_from_state_dict
from raddino.models.encoder import Encoder
from raddino.pretrain.checkpoint import CheckpointError, latest_checkpoint, read_checkpoint
from raddino.pretrain.config import PretrainConfig
from raddino.pretrain.meta_arch import split_network_state

Which = Literal["teacher", "student"]
Format = Literal["transformers", "dinov2", "dinov3"]


@dataclass
class ExportRunConfig:
    """Settings of ``raddino export-run``."""

    run: str = ""
    """A ``raddino pretrain`` run folder."""
    out: str = ""
    """Output folder."""
    which: Which = "teacher"
    """Which network's encoder: the EMA teacher (the one DINOv2 and RAD-DINO release) or the student."""
    format: Format = "transformers"
    """transformers: a folder with config.json and model.safetensors; dinov2 / dinov3 (the run's family):
    backbone_compatible.safetensors with the original key names."""
    checkpoint: str = ""
    """A checkpoint file to export (default: the run's newest)."""
    overwrite: bool = False
    """Replace existing output files."""


def _encoder_from_state(
    encoder_config: dict[str, Any], state: dict[str, torch.Tensor], source: str = "checkpoint"
) -> Encoder:
    """The encoder a checkpoint describes (its transformers config) with the saved weights, for inference
    (no drop-path)."""
    try:
        return Encoder.from_state_dict(encoder_config, split_network_state(state).get("encoder", {}))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{source}: {error}") from error


def export_run(
    run: str | Path,
    out: str | Path,
    *,
    which: Which = "teacher",
    format: Format = "transformers",
    checkpoint: str | Path | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write the run's encoder and DINO head.

    Args:
        run: A ``raddino pretrain`` run folder.
        out: ``transformers``: a folder (``config.json``, ``model.safetensors``, ``preprocessor_config.json``,
            ``dino_head.safetensors``). ``dinov2`` / ``dinov3``: a folder receiving
            ``backbone_compatible.safetensors``, ``dino_head.safetensors`` and ``preprocessor_config.json``.
            A run with a separate iBOT head also gets ``ibot_head.safetensors``.
        which: ``teacher`` (the release's choice) or ``student``.
        format: ``transformers``, or the encoder family's original format (``dinov2`` or ``dinov3``).
        checkpoint: A checkpoint file; the run's newest by default.
        overwrite: Replace existing files in ``out``.

    Raises:
        CheckpointError: the run has no checkpoint.
        FileExistsError: ``out`` already holds weights and ``overwrite`` is False.
        ValueError: an original format that is not the run's encoder family.
    """
    run, out = Path(run), Path(out)
    path = Path(checkpoint) if checkpoint is not None else latest_checkpoint(run)
    if path is None:
        raise CheckpointError(f"{run}: no checkpoint to export (run raddino pretrain first)")
    payload = read_checkpoint(path)
    if "config" not in payload:
        raise CheckpointError(f"{path}: no config stored; not a raddino pretrain checkpoint")
    if "encoder_config" not in payload:
        raise CheckpointError(f"{path}: no encoder_config stored; not a raddino pretrain checkpoint")
    config = config_from_dict(payload["config"])
    state = payload[which]
    encoder = _encoder_from_state(payload["encoder_config"], state, source=f"{path} ({which} encoder)")
    if format != "transformers" and format != encoder.family.name:
        raise ValueError(
            f"{path}: the run's encoder is a {encoder.family.name} one; its original format is "
            f"--format {encoder.family.name}, not {format}"
        )
    parts = split_network_state(state)
    heads = {
        "dino_head.safetensors": dino_head_from_state_dict(
            parts.get("dino_head", {}), source=f"{path} ({which} DINO head)"
        )
    }
    if parts.get("ibot_head"):
        heads["ibot_head.safetensors"] = dino_head_from_state_dict(
            parts["ibot_head"], source=f"{path} ({which} iBOT head)"
        )
    weights = out / ("model.safetensors" if format == "transformers" else "backbone_compatible.safetensors")
    if weights.exists() and not overwrite:
        raise FileExistsError(f"{weights} exists; pass overwrite=True (--overwrite) to replace it")
    preprocess = PreprocessConfig(
        image_mean=(config.crops.mean,) * 3,
        image_std=(config.crops.std,) * 3,
        crop_size=(config.crops.global_crops_size,) * 2,
        shortest_edge=config.crops.global_crops_size,
    )
    result = ExportResult(out=out, format=format)
    if format == "transformers":
        encoder.save_pretrained(out, preprocess=preprocess)
        result.files += [out / "config.json", out / "model.safetensors", out / "preprocessor_config.json"]
    else:
        result.files.append(save_original_weights(encoder, weights))
        processor = out / "preprocessor_config.json"
        atomic_write_text(processor, json.dumps(preprocess.to_processor_dict(), indent=2) + "\n")
        result.files.append(processor)
    for name, head in heads.items():
        result.files.append(save_dino_head(head, out / name))
    return result


def run_export_run(config: ExportRunConfig) -> ExportResult:
    """:func:`export_run` with the command's settings (``raddino export-run``)."""
    if not config.run or not config.out:
        raise ValueError("name the run folder and the output folder: raddino export-run RUN OUT")
    return export_run(
        config.run,
        config.out,
        which=config.which,
        format=config.format,
        checkpoint=config.checkpoint or None,
        overwrite=config.overwrite,
    )


def config_from_dict(values: dict[str, Any]) -> PretrainConfig:
    """A :class:`PretrainConfig` from the nested dict a checkpoint stores."""

    def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                flat.update(flatten(value, f"{prefix}{key}."))
            else:
                flat[f"{prefix}{key}"] = value
        return flat

    return load_config(PretrainConfig, None, (), flatten(values))
