"""Supervised fine-tuning of the encoder (full, last-k blocks, LoRA, or frozen as the probe baseline) on
the training engine, for multi-label findings or segmentation, against the frozen protocol."""

from raddino.finetune.config import MODES, EncoderLora, FinetuneAugment, FinetuneConfig, Mode
from raddino.finetune.run import FinetuneResult, run_finetune

__all__ = [
    "MODES",
    "EncoderLora",
    "FinetuneAugment",
    "FinetuneConfig",
    "FinetuneResult",
    "Mode",
    "run_finetune",
]
