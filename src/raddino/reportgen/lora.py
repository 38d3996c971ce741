"""LoRA adapters on the report generator's language model (``trainable: lora``), through ``peft``.

LoRA (Hu et al. 2021) freezes the language model and trains low-rank updates ``B·A`` of its linear layers,
which is how LLaVA-1.5 fine-tunes on a single GPU (its ``finetune_lora.sh``: rank 128, alpha 256, dropout
0.05, every linear layer of the LM, lr 2e-4). The defaults here follow it except the rank, which is sized
for the small and mid-sized LMs this runs on. Only the adapters are saved (``lora_adapter/``, peft's
format); the base LM is the one named in ``report_model.json``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import PreTrainedModel

from raddino.models.lora import check_lora, import_peft

ADAPTER_FOLDER = "lora_adapter"
INSTALL_HINT = "LoRA needs the 'peft' package: pip install 'raddino[report]' (or pip install peft)"


@dataclass
class LoraSettings:
    """LoRA settings of ``raddino report train --trainable lora``."""

    rank: int = 16
    """Rank ``r`` of each update (LLaVA-1.5 uses 128 on a 7B LM; 8-64 suits small LMs)."""
    alpha: float = 32.0
    """Scale numerator: updates are multiplied by ``alpha / rank`` (LLaVA-1.5: alpha = 2 × rank)."""
    dropout: float = 0.05
    """Dropout on the adapters' input (LLaVA-1.5's value)."""
    target_modules: list[str] = field(default_factory=lambda: ["all-linear"])
    """Module names to adapt, e.g. ``[q_proj, v_proj]`` (Llama) or ``[c_attn]`` (GPT-2); ``[all-linear]``
    adapts every linear layer but the output head, as LLaVA-1.5 does, for any architecture."""

    def __post_init__(self) -> None:
        check_lora(self)


def _peft() -> Any:
    return import_peft(INSTALL_HINT)


def add_lora(language_model: PreTrainedModel, settings: LoraSettings) -> PreTrainedModel:
    """Wrap ``language_model`` in fresh LoRA adapters; only the adapters have ``requires_grad``.

    Raises:
        ValueError: peft is not installed, or no module of the LM matches ``settings.target_modules``.
    """
    peft = _peft()
    targets: str | list[str] = (
        "all-linear" if settings.target_modules == ["all-linear"] else list(settings.target_modules)
    )
    config = peft.LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        wrapped: PreTrainedModel = peft.get_peft_model(language_model, config)
    except ValueError as error:  # peft's message names the missing target modules
        raise ValueError(f"LoRA: {error}") from error
    return wrapped


def is_lora(language_model: Any) -> bool:
    """Whether ``language_model`` carries peft adapters."""
    try:
        import peft
    except ImportError:
        return False
    return isinstance(language_model, peft.PeftModel)


def save_adapters(language_model: PreTrainedModel, folder: Path) -> None:
    """Write the adapters alone (``adapter_config.json`` + ``adapter_model.safetensors``) into ``folder``."""
    language_model.save_pretrained(str(folder))


def load_adapters(base: PreTrainedModel, folder: Path, trainable: bool) -> PreTrainedModel:
    """The base LM with the adapters of ``folder``: trainable (to resume) or merged into its weights (to
    decode as fast as the plain LM).

    Raises:
        ValueError: peft is not installed, or ``folder`` holds no adapters.
    """
    peft = _peft()
    if not (folder / "adapter_config.json").is_file():
        raise ValueError(f"{folder}: no LoRA adapters (adapter_config.json missing)")
    wrapped = peft.PeftModel.from_pretrained(base, str(folder), is_trainable=trainable)
    if trainable:
        return wrapped
    return wrapped.merge_and_unload()
