"""``raddino finetune`` end to end: outputs, the compare row beside the frozen probe, reuse of finished
modes, segmentation with the linear head, bootstrap intervals, and one-line errors for bad input."""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from raddino.cli import app
from raddino.evaluate.compare import CompareConfig, run_compare
from raddino.finetune import FinetuneConfig, run_finetune
from raddino.finetune.evaluation import classification_metrics, segmentation_metrics

runner = CliRunner()


def test_a_run_writes_each_mode_and_a_compare_row_beside_the_probe(
    make_config: Callable[..., FinetuneConfig], tmp_path: Path
) -> None:
    config = make_config(modes=["frozen", "full"], epochs=1)
    result = run_finetune(config)
    out = Path(config.out)
    for mode in ("frozen", "full"):
        entry = json.loads((out / mode / "finetune.json").read_text())
        assert entry["compare_as"] == "probe"
        assert entry["mode"] == mode
        assert set(entry["names"]) == {"cardiomegaly", "support_device", "nodule"}
        assert (out / mode / "encoder" / "config.json").is_file()
        assert (out / mode / "head.safetensors").is_file()
        assert entry["seconds_per_epoch"] > 0
        assert entry["peak_rss_mib"] > 0
    assert "| frozen |" in (out / "finetune.md").read_text()
    assert "| full |" in (out / "finetune.md").read_text()
    probe = tmp_path / "probe" / "probe.json"
    probe.parent.mkdir()
    probe.write_text(
        json.dumps(
            {
                "task": "probe",
                "encoder": "rad-dino",
                "summary": {"macro_auprc": {"mean": 0.5, "std": 0.01, "count": 5}},
            }
        )
    )
    compared = run_compare(CompareConfig(results=[str(probe.parent), str(out)], out=str(tmp_path / "cmp")))
    encoders = [row[0] for row in compared.tables["probe"]["rows"]]
    assert encoders[0] == "rad-dino"
    assert any("finetune full" in name for name in encoders)
    assert set(compared.tables) == {"probe"}
    assert str(result).startswith("frozen: macro_auprc")


def test_a_finished_mode_is_reused_and_overwrite_retrains_it(
    make_config: Callable[..., FinetuneConfig],
) -> None:
    config = make_config(epochs=1)
    run_finetune(config)
    steps: list[int] = []
    run_finetune(config, callbacks=[lambda done, record: steps.append(done)])
    assert steps == []  # nothing retrained
    run_finetune(make_config(epochs=1, overwrite=True), callbacks=[lambda done, record: steps.append(done)])
    assert steps == [1, 2, 3, 4]


def test_max_steps_stops_and_a_rerun_finishes(make_config: Callable[..., FinetuneConfig]) -> None:
    stopped = run_finetune(make_config(max_steps=3))
    assert stopped.modes["frozen"] is None
    assert "rerun to resume" in str(stopped)
    steps: list[int] = []
    finished = run_finetune(make_config(), callbacks=[lambda done, record: steps.append(done)])
    assert steps[0] == 4
    assert finished.modes["frozen"] is not None


def test_segmentation_fine_tunes_the_encoder_with_the_linear_head(
    make_config: Callable[..., FinetuneConfig],
) -> None:
    config = make_config(
        task="segment", structures=["heart", "left_lung"], modes=["last-k"], epochs=2, lr=3e-3, labels=[]
    )
    result = run_finetune(config)
    entry = result.modes["last-k"]
    assert entry is not None
    assert entry["compare_as"] == "segment"
    dice = entry["test"]["dice"]
    assert 0.0 <= dice["low"] <= dice["value"] <= dice["high"] <= 1.0
    assert set(entry["summary"]) == {"dice", "dice/heart", "dice/left_lung"}


def test_bootstrap_intervals_hold_the_point_estimate() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, (200, 2)).astype(np.float32)
    labels[:20, 1] = np.nan
    scores = labels + rng.normal(0, 0.8, labels.shape)
    metrics = classification_metrics(scores, labels, ["a", "b"], resamples=200, seed=0)
    for key in ("macro_auprc", "auprc/a", "auroc/b"):
        assert metrics[key]["low"] < metrics[key]["value"] < metrics[key]["high"]
    perfect = torch.ones(5, 1, 8, 8, dtype=torch.bool)
    seg = segmentation_metrics(perfect, perfect, torch.ones(5, 1, dtype=torch.bool), ["x"], resamples=20)
    assert seg["dice"] == {"value": 1.0, "low": 1.0, "high": 1.0}


def _cli(make_config: Callable[..., FinetuneConfig], *extra: str) -> tuple[int, str]:
    config = make_config()
    words = [
        "finetune",
        config.input,
        "--model",
        config.model,
        "--out",
        config.out,
        "--device",
        "cpu",
        "--set",
        "progress=false",
        *extra,
    ]
    result = runner.invoke(app, words)
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--labels", "nodulez"), "no label column 'nodulez'"),
        (("--mode", "lora", "--lora-targets", "qkv"), "lora.target_modules ['qkv']"),
        (("--mode", "last-k", "--last-k", "7"), "last_k=7 exceeds the encoder's 2 blocks"),
        (("--set", "augment.crop_area=0"), "augment.crop_area must lie in (0, 1]"),
        (("--set", "lora.rnak=4"), "rnak"),
        (("--micro-batch-size", "64"), "micro_batch_size must lie in [0, batch_size=32]"),
    ],
)
def test_bad_settings_give_one_line(
    make_config: Callable[..., FinetuneConfig], extra: tuple[str, ...], message: str
) -> None:
    code, output = _cli(make_config, *extra)
    assert code == 2, output
    assert message in output
    assert "Traceback" not in output


def test_bad_inputs_give_one_line(make_config: Callable[..., FinetuneConfig], tmp_path: Path) -> None:
    config = make_config()
    code, output = _cli(lambda: config, "--model", str(tmp_path / "missing"))
    assert code == 2
    assert "missing: no such file or folder" in output
    bad = tmp_path / "bad.csv"
    with open(config.input, newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[0]["nodule"] = "maybe"
    with open(bad, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = runner.invoke(
        app,
        ["finetune", str(bad), "-m", config.model, "-o", config.out, "--device", "cpu", "--labels", "nodule"],
    )
    assert result.exit_code == 2
    assert "column 'nodule'" in result.output
    assert "'maybe' is not a label" in result.output


def test_an_unreadable_image_is_recorded_and_left_out(
    make_config: Callable[..., FinetuneConfig], tmp_path: Path
) -> None:
    config = make_config(epochs=1)
    source = Path(config.input)
    with open(source, newline="") as handle:
        rows = list(csv.DictReader(handle))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    rows[0]["path"] = str(broken)
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for row in rows[1:]:
        row["path"] = str(source.parent / row["path"])
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = run_finetune(make_config(input=str(manifest), epochs=1))
    errors = (Path(config.out) / "errors.csv").read_text()
    assert "broken.png" in errors
    assert result.modes["frozen"] is not None
    assert json.loads((Path(config.out) / "finetune.json").read_text())["failed"] == 1


def test_an_exploding_loss_stops_with_one_line_naming_the_step(
    make_config: Callable[..., FinetuneConfig],
) -> None:
    code, output = _cli(make_config, "--mode", "full", "--lr", "1e30", "--epochs", "2", "--batch-size", "8")
    assert code == 3, output
    assert "loss term 'loss' is" in output
    assert "lower lr or raise warmup_epochs" in output
    assert "Traceback" not in output
