"""The encoder (transformers ``Dinov2Model`` or ``DINOv3ViTModel`` underneath), its presets, formats and
the DINO head.

>>> from raddino.models import load_encoder
>>> encoder = load_encoder("preset:test")
>>> features = encoder.forward_features(torch.zeros(1, 3, 56, 56))  # cls (1, 32), patch_tokens (1, 32, 4, 4)
"""

from __future__ import annotations

from raddino.models.convert import ConversionError, dinov2_state_dict, encoder_from_dinov2
from raddino.models.convert_dinov3 import dinov3_state_dict, encoder_from_dinov3
from raddino.models.dino_head import DINOHead, load_dino_head, save_dino_head
from raddino.models.encoder import Encoder, FeatureMap
from raddino.models.export import (
    ExportFormat,
    ExportResult,
    export_encoder,
    save_dinov2_weights,
    save_original_weights,
)
from raddino.models.loading import (
    ModelLoadError,
    load_dinov2_file,
    load_encoder,
    load_original_file,
    read_state_dict,
)
from raddino.models.presets import PRESETS, preset_config, preset_names

__all__ = [
    "PRESETS",
    "ConversionError",
    "DINOHead",
    "Encoder",
    "ExportFormat",
    "ExportResult",
    "FeatureMap",
    "ModelLoadError",
    "dinov2_state_dict",
    "dinov3_state_dict",
    "encoder_from_dinov2",
    "encoder_from_dinov3",
    "export_encoder",
    "load_dino_head",
    "load_dinov2_file",
    "load_encoder",
    "load_original_file",
    "preset_config",
    "preset_names",
    "read_state_dict",
    "save_dino_head",
    "save_dinov2_weights",
    "save_original_weights",
]
