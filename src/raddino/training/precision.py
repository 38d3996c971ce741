"""Mixed precision: which autocast dtype a run computes in, and the gradient scaler fp16 needs.

The master weights stay fp32 in every mode. bf16 has fp32's exponent range and needs no loss scaling;
fp16 does (its small gradients underflow), so a ``GradScaler`` comes with fp16 on CUDA only. ``auto`` is
pre-training's default: bf16 on GPUs that have it, else fp16; fp32 on the CPU, where autocast is slow for
these ops and tests need exact numbers.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal

import torch

Precision = Literal["auto", "fp32", "bf16", "fp16"]
InferencePrecision = Literal["fp32", "bf16", "fp16"]
"""The choices of inference commands (``embed``): autocast to what is asked, no ``auto``."""
_DTYPES: dict[str, torch.dtype | None] = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class MixedPrecision:
    """A precision resolved for a device.

    Attributes:
        device: Where the run computes.
        dtype: The autocast dtype, or None for plain fp32.
    """

    device: torch.device
    dtype: torch.dtype | None

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        """``torch.autocast`` to ``dtype``; nothing for fp32."""
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A loss scaler for fp16 on CUDA; None otherwise."""
        if self.dtype == torch.float16 and self.device.type == "cuda":
            return torch.amp.GradScaler("cuda")
        return None


def resolve_precision(precision: Precision, device: torch.device) -> MixedPrecision:
    """The autocast dtype of ``precision`` on ``device``.

    Raises:
        ValueError: fp16 on the CPU (CPU autocast has no fp16 kernels for these models).
    """
    if precision == "auto":
        if device.type != "cuda":
            return MixedPrecision(device, None)
        return MixedPrecision(device, torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    if precision not in _DTYPES:
        raise ValueError(f"precision must be one of auto, fp32, bf16, fp16; got '{precision}'")
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("precision fp16 needs a GPU; use bf16 or fp32 on the CPU")
    return MixedPrecision(device, _DTYPES[precision])


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager[None]:
    """``resolve_precision(precision, device).autocast()``, for inference code (``embed``, report
    generation)."""
    return resolve_precision(precision, device).autocast()
