"""Test-sized encoders whose every parameter is random, so parity checks cannot pass by accident.

A fresh preset starts with LayerScale at 1e-5 (blocks contribute almost nothing), LayerNorms at 1 / 0 and
biases at 0: a conversion that dropped a block, swapped q and k or lost a bias would still match to 1e-5.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from raddino.models import Encoder


def randomize(encoder: Encoder, seed: int = 0) -> Encoder:
    """Fill every parameter with values of a realistic scale (in place) and return the encoder."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in encoder.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if "lambda1" in name:
                parameter.copy_(0.5 + noise.abs() * 0.5)  # LayerScale gammas
            elif "norm" in name and name.endswith("weight"):
                parameter.copy_(1.0 + 0.2 * noise)
            elif name.endswith("bias"):
                parameter.copy_(0.1 * noise)
            else:
                parameter.copy_(0.3 * noise / max(1.0, parameter.shape[-1] ** 0.5 / 4))
    return encoder.eval()


@pytest.fixture
def random_encoder() -> Callable[..., Encoder]:
    """Factory: ``random_encoder(seed=0, preset="test", **preset_overrides)`` → a randomised test-sized
    encoder (``test``: DINOv2, patch 14, 56 px; ``test16``: DINOv3, patch 16, 64 px, 4 registers)."""

    def build(seed: int = 0, preset: str = "test", **overrides: object) -> Encoder:
        return randomize(Encoder.from_preset(preset, seed=seed, **overrides), seed=seed)

    return build
