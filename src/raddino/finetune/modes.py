"""What each fine-tuning mode trains, and the LoRA adapters of mode ``lora``.

- ``frozen``: nothing of the encoder (the probe baseline: only the head learns);
- ``last-k``: the last ``k`` blocks and the final norm; the embeddings and earlier blocks are frozen;
- ``lora``: low-rank updates ``B·A`` (Hu et al. 2021) of the named linear projections, through ``peft``;
  every original weight is frozen;
- ``full``: every encoder parameter.

Frozen parameters have ``requires_grad`` off, so they get no gradient and no optimiser state (the optimiser
is built on the trainable ones only), and the frozen modules are kept in eval mode while training: they
compute exactly the features of inference (no drop-path, no dropout).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from torch import nn

from raddino.data.preprocess import PreprocessConfig
from raddino.finetune.config import EncoderLora, Mode
from raddino.io.atomic import atomic_directory
from raddino.models import Encoder
from raddino.models.lora import import_peft

LORA_ADAPTER_FOLDER = "lora_adapter"
INSTALL_HINT = "mode lora needs the 'peft' package: pip install 'raddino[finetune]' (or pip install peft)"


def _peft() -> Any:
    return import_peft(INSTALL_HINT)


def frozen_modules(encoder: Encoder, mode: Mode, last_k: int) -> list[nn.Module]:
    """The encoder's modules that stay in eval mode during training (the frozen ones)."""
    if mode == "frozen":
        return [encoder]
    if mode == "last-k":
        return [encoder.family.embeddings(encoder.backbone), *encoder.blocks[: len(encoder.blocks) - last_k]]
    return []


def prepare_encoder(encoder: Encoder, mode: Mode, last_k: int, lora: EncoderLora) -> Any:
    """Set which encoder parameters train, in place; returns the peft model in mode ``lora`` (else None).

    Raises:
        ValueError: ``last_k`` exceeds the encoder's blocks; peft is missing; no module matches
            ``lora.target_modules``.
    """
    if mode == "last-k" and last_k > len(encoder.blocks):
        raise ValueError(f"last_k={last_k} exceeds the encoder's {len(encoder.blocks)} blocks")
    encoder.requires_grad_(mode == "full")
    if mode == "last-k":
        for block in encoder.blocks[len(encoder.blocks) - last_k :]:
            block.requires_grad_(True)
        encoder.family.final_norm(encoder.backbone).requires_grad_(True)
    if mode != "lora":
        return None
    peft = _peft()
    config = peft.LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        bias="none",
    )
    try:
        # In place: the backbone's linear layers become LoRA layers; the encoder keeps calling them.
        return peft.get_peft_model(encoder.backbone, config)
    except ValueError as error:  # peft's message names the target modules it did not find
        raise ValueError(
            f"lora.target_modules {lora.target_modules}: {' '.join(str(error).split())}"
        ) from None


def trainable_parameter_count(module: nn.Module) -> int:
    """Number of values with ``requires_grad``."""
    return sum(parameter.numel() for parameter in module.parameters() if parameter.requires_grad)


def merged_encoder(encoder: Encoder, adapted: Any) -> Encoder:
    """A copy of ``encoder`` with the LoRA updates folded into its weights (``W + (alpha/r)·B·A``)."""
    if adapted is None:
        return encoder
    backbone = copy.deepcopy(adapted).merge_and_unload()
    return Encoder(
        backbone,
        interpolate_offset=encoder.interpolate_offset,
        interpolate_antialias=encoder.interpolate_antialias,
    )


def export_encoder(
    encoder: Encoder, adapted: Any, folder: Path, preprocess: PreprocessConfig, keep_adapter: bool
) -> Path:
    """Write the fine-tuned encoder as a transformers folder (loadable by ``AutoModel``).

    In mode ``lora`` the folder holds the merged weights, or with ``keep_adapter`` the original weights
    and the adapters in ``folder/lora_adapter`` (``PeftModel.from_pretrained(AutoModel…, that folder)``).
    """
    if adapted is None or not keep_adapter:
        merged_encoder(encoder, adapted).save_pretrained(folder, preprocess)
        return folder
    copied = copy.deepcopy(adapted)
    with atomic_directory(folder / LORA_ADAPTER_FOLDER) as staging:
        copied.save_pretrained(str(staging))
    base = Encoder(copied.unload())
    base.save_pretrained(folder, preprocess)
    return folder
