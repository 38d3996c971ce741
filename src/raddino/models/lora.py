"""What every LoRA user here shares (report generation's language model, fine-tuning's encoder): the
settings' checks and the optional ``peft`` import; each user keeps its own defaults and documentation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class LoraFields(Protocol):
    """The fields a LoRA settings dataclass has (``lora.rank`` … in a config)."""

    @property
    def rank(self) -> int: ...
    @property
    def alpha(self) -> float: ...
    @property
    def dropout(self) -> float: ...
    @property
    def target_modules(self) -> Sequence[str]: ...


def check_lora(settings: LoraFields) -> None:
    """Raise ValueError naming the ``lora.*`` key whose value cannot be used."""
    if settings.rank < 1:
        raise ValueError(f"lora.rank must be at least 1, got {settings.rank}")
    if settings.alpha <= 0:
        raise ValueError(f"lora.alpha must be positive, got {settings.alpha}")
    if not 0.0 <= settings.dropout < 1.0:
        raise ValueError(f"lora.dropout must lie in [0, 1), got {settings.dropout}")
    if not settings.target_modules:
        raise ValueError("lora.target_modules is empty; name the linear modules to adapt (or [all-linear])")


def import_peft(install_hint: str) -> Any:
    """The ``peft`` module, or ValueError(``install_hint``) where it is not installed."""
    try:
        import peft
    except ImportError as error:
        raise ValueError(install_hint) from error
    return peft
