"""Mixed precision for report training and generation: autocast context and (fp16 only) a gradient scaler."""

from __future__ import annotations

import contextlib
from typing import Literal

import torch

Precision = Literal["fp32", "bf16", "fp16"]


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager[None]:
    """``torch.autocast`` for bf16 / fp16 (fp16 needs a GPU); nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("precision fp16 needs a GPU; use bf16 or fp32 on the CPU")
    dtype = torch.float16 if precision == "fp16" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(device: torch.device, precision: Precision) -> torch.amp.GradScaler | None:
    """A loss scaler for fp16 (whose gradients underflow without one); ``None`` otherwise."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None
