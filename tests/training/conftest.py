"""Fixtures of the engine tests: test-sized data for every task that trains on the engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from engine_tasks import (
    REPORTS,
    EngineCase,
    finetune_case,
    finetune_manifest,
    pretrain_case,
    pretrain_manifest,
    report_case,
    report_manifest,
    segmentation_case,
    segmentation_manifest,
)

ENGINE_TASKS = ("segmentation", "report", "pretrain", "finetune")
"""Every task on the engine."""


@pytest.fixture(scope="session")
def engine_data(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> dict[str, Path]:
    from raddino.reportgen import build_causal_lm, train_report_tokenizer

    root = tmp_path_factory.mktemp("engine-data")
    language_model = root / "lm"
    tokenizer = train_report_tokenizer(list(REPORTS) * 8, vocab_size=120)
    build_causal_lm(tokenizer, language_model, hidden_size=32, num_layers=2, num_heads=2, seed=0)
    return {
        "segmentation": segmentation_manifest(root / "segmentation"),
        "report": report_manifest(root / "report"),
        "pretrain": pretrain_manifest(root / "pretrain"),
        "finetune": finetune_manifest(root / "finetune"),
        "language_model": language_model,
        "cache": root / "feature-cache",
    }


@pytest.fixture
def segmentation_engine_case(engine_data: dict[str, Path], tiny_encoder_dir: Path) -> EngineCase:
    return segmentation_case(engine_data["segmentation"], tiny_encoder_dir)


@pytest.fixture
def report_engine_case(engine_data: dict[str, Path], tiny_encoder_dir: Path) -> EngineCase:
    data = engine_data
    return report_case(data["report"], tiny_encoder_dir, data["language_model"], data["cache"])


@pytest.fixture
def pretrain_engine_case(engine_data: dict[str, Path]) -> EngineCase:
    return pretrain_case(engine_data["pretrain"])


@pytest.fixture
def finetune_engine_case(engine_data: dict[str, Path], tiny_encoder_dir: Path) -> EngineCase:
    return finetune_case(engine_data["finetune"], tiny_encoder_dir)


@pytest.fixture(params=ENGINE_TASKS)
def engine_case(request: pytest.FixtureRequest) -> EngineCase:
    """Each task on the engine in turn."""
    return request.getfixturevalue(f"{request.param}_engine_case")
