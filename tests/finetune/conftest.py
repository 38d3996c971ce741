"""Fixtures of the fine-tuning tests: 40 small phantoms with labels and masks, and a config factory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from raddino.finetune import FinetuneConfig

LABELS = ["cardiomegaly", "support_device", "nodule"]


@pytest.fixture(scope="session")
def phantom_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from raddino.data.phantoms import generate_phantoms

    folder = tmp_path_factory.mktemp("finetune-phantoms")
    return generate_phantoms(folder, n=40, size=64, seed=0, workers=1, masks=True, progress=False)


@pytest.fixture
def make_config(
    phantom_manifest: Path, tiny_encoder_dir: Path, tmp_path: Path
) -> Callable[..., FinetuneConfig]:
    """A test-sized run: 2 epochs of 4 steps (batch 8, micro-batch 4) on the 56-px test encoder."""

    def make(**overrides: Any) -> FinetuneConfig:
        settings: dict[str, Any] = dict(
            input=str(phantom_manifest),
            model=str(tiny_encoder_dir),
            out=str(tmp_path / "run"),
            labels=LABELS,
            modes=["frozen"],
            epochs=2,
            batch_size=8,
            micro_batch_size=4,
            last_k=1,
            device="cpu",
            progress=False,
            bootstrap=20,
            lr=1e-3,
        )
        settings.update(overrides)
        return FinetuneConfig(**settings)

    return make
