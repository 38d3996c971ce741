"""``raddino finetune``: fine-tune the encoder (frozen / last-k / lora / full) on labelled images, generated
from :class:`~raddino.finetune.config.FinetuneConfig`.

Every setting is an option or a ``key=value`` word (``lora.rank=16``, ``augment.rotation=5``); the modes
are repeatable (``--mode frozen --mode lora``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from raddino.cli.app import app
from raddino.cli.generate import ConfigCommand, Outcome, register_deferred

if TYPE_CHECKING:
    from raddino.finetune import FinetuneConfig, FinetuneResult

FINETUNE_HELP = (
    "Fine-tune the encoder with a findings or segmentation head (modes frozen, last-k, lora, full); "
    "rerun to resume.\n\n"
    "Under torchrun every process runs this same command:\n"
    "torchrun --nproc_per_node 8 -m raddino finetune data.csv --model microsoft/rad-dino --mode full\n"
)


def _finetune(settings: FinetuneConfig) -> FinetuneResult | Outcome:
    from raddino.finetune import run_finetune

    result = run_finetune(settings)
    if int(os.environ.get("RANK", "0")) != 0:
        return Outcome()  # rank 0 reports the run
    return result


def _finetune_spec() -> ConfigCommand:
    from raddino.finetune import FinetuneConfig
    from raddino.io.state_file import StateFileError
    from raddino.training import NonFiniteLossError, TrainingError
    from raddino.training.tracking import TRACKING_OPTIONS

    lora = {f"lora.{name}": f"lora_{name}" for name in ("rank", "alpha", "dropout", "export")}
    return ConfigCommand(
        "finetune",
        FinetuneConfig,
        _finetune,
        arguments=("input",),
        promote={**lora, "lora.target_modules": "lora_targets", **TRACKING_OPTIONS},
        rename={"modes": "mode"},
        short={"model": "-m", "out": "-o"},
        errors=(StateFileError, TrainingError, ValueError, OSError),
        error_codes={NonFiniteLossError: 3},
    )


register_deferred(app, "finetune", _finetune_spec, help=FINETUNE_HELP)
