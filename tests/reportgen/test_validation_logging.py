"""Best-on-validation model selection, early stopping, and the TensorBoard scalars of report training."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from raddino.features.cache import FeatureConfig
from raddino.reportgen import (
    ReportCollator,
    ReportTrainConfig,
    StudySelection,
    load_report_model,
    prompt_layout,
    train_report_model,
)
from raddino.reportgen.steps import record_validation, validation_loss
from raddino.reportgen.studies import load_studies


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _config(manifest: Path, encoder: Path, lm: Path, out: Path, cache: Path, **values) -> ReportTrainConfig:
    settings = {
        "epochs": 4,
        "batch_size": 4,
        "micro_batch_size": 4,
        "learning_rate": 5e-3,
        "device": "cpu",
        "checkpoint_every": 100,
        **values,
    }
    return ReportTrainConfig(
        input=str(manifest),
        language_model=str(lm),
        out=str(out),
        features=FeatureConfig(model=str(encoder), cache_dir=str(cache), device="cpu", num_workers=0),
        **settings,
    )


def test_the_finished_model_is_the_epoch_of_lowest_validation_loss(
    report_manifest: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tmp_path: Path
) -> None:
    out, cache = tmp_path / "model", tmp_path / "cache"
    config = _config(report_manifest, tiny_encoder_dir, tiny_lm_dir, out, cache, val_split="test")
    summary = train_report_model(config)
    assert summary.complete
    assert summary.steps == 8
    log = _rows(out / "val_log.csv")
    assert [int(row["epoch"]) for row in log] == [1, 2, 3, 4]
    losses = [float(row["val_loss"]) for row in log]
    best_epoch = losses.index(min(losses)) + 1
    assert summary.best_epoch == best_epoch
    assert summary.best_val_loss == pytest.approx(min(losses), abs=1e-5)
    assert f"best val loss {min(losses):.4f} at epoch {best_epoch}" in str(summary)
    # a row is flagged best exactly when it beats every earlier one
    assert [int(row["best"]) for row in log] == [
        int(loss < min(losses[:i], default=math.inf)) for i, loss in enumerate(losses)
    ]
    for name, tensor in load_file(str(out / "best" / "projector.safetensors")).items():
        torch.testing.assert_close(load_file(str(out / "projector.safetensors"))[name], tensor)

    # the kept model, measured afresh on the test split, has the logged best loss
    model, tokenizer, info = load_report_model(out)
    studies = load_studies(report_manifest, StudySelection(split="test"), config.features, info.layer)
    collate = ReportCollator(tokenizer, prompt_layout(tokenizer, info.num_image_tokens), "train")
    measured = validation_loss(model, studies, collate, 4, "fp32", torch.device("cpu"))
    assert measured == pytest.approx(min(losses), abs=1e-4)


def test_patience_stops_after_that_many_epochs_without_a_lower_loss() -> None:
    best = {"loss": math.inf, "epoch": 0, "since": 0, "stopped": False}
    for epoch, loss in enumerate([3.0, 2.0, 2.5, 2.1], start=1):
        record_validation(best, loss, epoch, patience=2)
        assert best["stopped"] == (epoch == 4)
    assert (best["loss"], best["epoch"]) == (2.0, 2)
    never = {"loss": math.inf, "epoch": 0, "since": 0, "stopped": False}
    for epoch, loss in enumerate([1.0, 2.0, 3.0, 4.0], start=1):
        record_validation(never, loss, epoch, patience=0)
    assert not never["stopped"]
    assert never["epoch"] == 1


def test_early_stopped_run_is_complete_and_a_rerun_does_not_train_on(
    report_manifest: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tmp_path: Path
) -> None:
    out, cache = tmp_path / "model", tmp_path / "cache"
    # lr 0: the validation loss never falls after epoch 1, so patience 1 stops at epoch 2 of 10
    config = _config(
        report_manifest,
        tiny_encoder_dir,
        tiny_lm_dir,
        out,
        cache,
        epochs=10,
        learning_rate=0.0,
        val_split="test",
        early_stopping_patience=1,
    )
    summary = train_report_model(config)
    assert summary.complete
    assert summary.stopped_early
    assert summary.steps == 4
    assert summary.best_epoch == 1
    assert "(stopped early)" in str(summary)
    assert (out / "report_model.json").is_file()
    again = train_report_model(config)
    assert again.steps == 4
    assert again.complete
    assert len(_rows(out / "train_log.csv")) == 4


def test_validation_settings_are_checked_by_name() -> None:
    with pytest.raises(ValueError, match="early_stopping_patience needs a val_split"):
        ReportTrainConfig(early_stopping_patience=3)
    with pytest.raises(ValueError, match="val_split 'train' is also the training split"):
        ReportTrainConfig(val_split="train")
    with pytest.raises(ValueError, match="projector_dropout"):
        ReportTrainConfig(projector_dropout=1.5)


def test_tensorboard_holds_the_logged_loss_learning_rate_and_validation_loss(
    report_manifest: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tmp_path: Path
) -> None:
    event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    out = tmp_path / "model"
    config = _config(
        report_manifest, tiny_encoder_dir, tiny_lm_dir, out, tmp_path / "cache", epochs=2, val_split="test"
    )
    train_report_model(config)
    events = event_accumulator.EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"train/loss", "train/learning_rate", "val/loss"} <= set(events.Tags()["scalars"])
    logged = _rows(out / "train_log.csv")
    losses = events.Scalars("train/loss")
    assert [event.step for event in losses] == [int(row["step"]) for row in logged]
    for event, row in zip(losses, logged, strict=True):
        assert event.value == pytest.approx(float(row["loss"]), rel=1e-5)
    validation = _rows(out / "val_log.csv")
    assert [(event.step, round(event.value, 5)) for event in events.Scalars("val/loss")] == [
        (int(row["step"]), round(float(row["val_loss"]), 5)) for row in validation
    ]


def test_training_without_tensorboard_still_logs_and_finishes(
    report_manifest: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # importing it now fails
    out = tmp_path / "model"
    config = _config(report_manifest, tiny_encoder_dir, tiny_lm_dir, out, tmp_path / "cache", epochs=1)
    summary = train_report_model(config)
    assert summary.complete
    assert not (out / "tensorboard").exists()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [record["iteration"] for record in records] == [1, 2]
    assert records[-1]["train/loss"] == pytest.approx(
        float(_rows(out / "train_log.csv")[-1]["loss"]), rel=1e-5
    )
