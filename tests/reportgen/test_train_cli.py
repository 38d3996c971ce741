"""Training, resuming, generating and scoring end to end on CPU, through the library and the command."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from raddino.cli import app
from raddino.features.cache import FeatureConfig
from raddino.reportgen import ReportTrainConfig, load_language_model, train_report_model


def _csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _config(manifest: Path, encoder: Path, lm: Path, out: Path, cache: Path, **values) -> ReportTrainConfig:
    settings = {
        "epochs": 2,
        "batch_size": 4,
        "micro_batch_size": 2,
        "learning_rate": 3e-3,
        "device": "cpu",
        "checkpoint_every": 1,
        **values,
    }
    return ReportTrainConfig(
        input=str(manifest),
        language_model=str(lm),
        out=str(out),
        features=FeatureConfig(model=str(encoder), cache_dir=str(cache), device="cpu", num_workers=0),
        **settings,
    )


@pytest.mark.slow
def test_resumed_training_equals_uninterrupted_training(
    report_manifest: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    straight = train_report_model(
        _config(report_manifest, tiny_encoder_dir, tiny_lm_dir, tmp_path / "a", cache)
    )
    assert straight.complete
    assert straight.steps == 4
    assert straight.studies == 8

    stopped = train_report_model(
        _config(report_manifest, tiny_encoder_dir, tiny_lm_dir, tmp_path / "b", cache, max_steps=3)
    )
    assert not stopped.complete
    assert stopped.steps == 3
    assert not (tmp_path / "b" / "report_model.json").exists()
    resumed = train_report_model(
        _config(report_manifest, tiny_encoder_dir, tiny_lm_dir, tmp_path / "b", cache)
    )
    assert resumed.complete
    assert resumed.steps == 4
    for name, tensor in load_file(str(tmp_path / "a" / "projector.safetensors")).items():
        torch.testing.assert_close(load_file(str(tmp_path / "b" / "projector.safetensors"))[name], tensor)
    lm_a = load_file(str(tmp_path / "a" / "language_model" / "model.safetensors"))
    lm_b = load_file(str(tmp_path / "b" / "language_model" / "model.safetensors"))
    assert lm_a.keys() == lm_b.keys()
    for name in lm_a:
        torch.testing.assert_close(lm_b[name], lm_a[name])
    log = _csv_rows(tmp_path / "b" / "train_log.csv")
    assert [int(row["step"]) for row in log] == [1, 2, 3, 4]


@pytest.mark.slow
def test_projector_only_training_keeps_the_lm_and_lowers_the_loss(
    report_manifest: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "projector-only"
    summary = train_report_model(
        _config(
            report_manifest,
            tiny_encoder_dir,
            tiny_lm_dir,
            out,
            tmp_path / "cache",
            trainable="projector",
            epochs=6,
            learning_rate=1e-2,
            warmup_ratio=0.0,
        )
    )
    assert summary.complete
    assert not (out / "language_model").exists()  # the LM is named, not copied
    losses = [float(row["loss"]) for row in _csv_rows(out / "train_log.csv")]
    assert losses[-1] < losses[0]
    from raddino.reportgen import load_report_model

    model, _, info = load_report_model(out)
    original, _ = load_language_model(tiny_lm_dir)
    assert info.language_model == str(tiny_lm_dir)
    for (name, trained), untouched in zip(
        model.language_model.state_dict().items(), original.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(trained, untouched, msg=name)


@pytest.mark.slow
def test_train_generate_score_commands_end_to_end(
    report_manifest: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    out, cache = tmp_path / "model", tmp_path / "cache"
    common = ["--set", f"features.cache_dir={cache}", "--set", "features.num_workers=0", "--device", "cpu"]
    result = runner.invoke(
        app,
        [
            "report",
            "train",
            str(report_manifest),
            "--lm",
            str(tiny_lm_dir),
            "--model",
            str(tiny_encoder_dir),
            "--out",
            str(out),
            "--epochs",
            "2",
            "--batch-size",
            "4",
            "--micro-batch-size",
            "4",
            "--lr",
            "1e-3",
            *common,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "8 studies, 4 steps" in result.output
    assert (out / "report_model.json").is_file()
    assert (out / "train_config.yaml").is_file()

    generated = tmp_path / "generated.csv"
    result = runner.invoke(
        app,
        [
            "report",
            "generate",
            str(out),
            str(report_manifest),
            "--out",
            str(generated),
            "--max-new-tokens",
            "12",
            "--batch-size",
            "3",
            *common,
        ],
    )
    assert result.exit_code == 0, result.output
    rows = _csv_rows(generated)
    assert [row["id"] for row in rows] == ["s08", "s09", "s10", "s11"]  # the test split, in order
    assert rows[0]["reference"].startswith("Heart size is normal.")
    _, tokenizer = load_language_model(out / "language_model")
    assert all(len(tokenizer(row["generated"], add_special_tokens=False)["input_ids"]) <= 13 for row in rows)

    # a rerun finds everything done
    result = runner.invoke(
        app, ["report", "generate", str(out), str(report_manifest), "--out", str(generated), *common]
    )
    assert result.exit_code == 0
    assert "0 reports generated" in result.output
    assert "4 already done" in result.output

    # a rerun over more studies keeps the finished reports and adds the missing ones
    result = runner.invoke(
        app,
        [
            "report",
            "generate",
            str(out),
            str(report_manifest),
            "--out",
            str(generated),
            "--split",
            "",
            *common,
        ],
    )
    assert result.exit_code == 0, result.output
    assert "12 studies: 8 reports generated" in result.output
    assert sorted(row["id"] for row in _csv_rows(generated)) == [f"s{i:02d}" for i in range(12)]
    assert not generated.with_name(generated.name + ".partial").exists()

    table = tmp_path / "table.md"
    result = runner.invoke(
        app, ["report", "score", str(generated), "--name", "tiny", "--out", str(table), "--samples", "50"]
    )
    assert result.exit_code == 0, result.output
    assert table.read_text().startswith("| Image encoder | Studies | ROUGE-L | BLEU-4 |")
    assert "| tiny | 12 |" in table.read_text()


def test_train_without_a_report_column_names_the_file_and_column(
    tiny_encoder_dir: Path, tiny_lm_dir: Path, tmp_path: Path, report_manifest: Path
) -> None:
    manifest = tmp_path / "no_reports.csv"
    manifest.write_text("path,id\n" + f"{report_manifest.parent / 'study00.png'},s00\n")
    result = CliRunner().invoke(
        app,
        [
            "report",
            "train",
            str(manifest),
            "--lm",
            str(tiny_lm_dir),
            "--model",
            str(tiny_encoder_dir),
            "--out",
            str(tmp_path / "m"),
        ],
    )
    assert result.exit_code == 2
    assert "no_reports.csv: no 'report' column" in result.output


def test_studies_without_image_or_report_are_listed_and_training_goes_on(
    report_manifest: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tmp_path: Path
) -> None:
    rows = _csv_rows(report_manifest)
    rows[0]["report"] = "  "
    (tmp_path / "broken.png").write_bytes(b"not a png")
    rows[1]["path"] = str(tmp_path / "broken.png")
    for row in rows:
        if row["path"] != str(tmp_path / "broken.png"):
            row["path"] = str(report_manifest.parent / row["path"])
    manifest = tmp_path / "studies.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = tmp_path / "model"
    config = _config(manifest, tiny_encoder_dir, tiny_lm_dir, out, tmp_path / "cache", epochs=1, batch_size=8)
    summary = train_report_model(config)
    assert summary.complete
    assert summary.studies == 6  # 8 train rows, one without report, one unreadable image
    assert summary.skipped_studies == 2
    errors = _csv_rows(out / "errors.csv")
    assert sorted(row["reason"] for row in errors) == ["empty report", "image was not embedded"]
    assert train_report_model(config).skipped_studies == 2  # a rerun lists them once, not twice
    assert len(_csv_rows(out / "errors.csv")) == 2
