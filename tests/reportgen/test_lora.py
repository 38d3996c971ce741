"""LoRA adapters: only they and the projector train, checkpoints resume them, generation decodes with them."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from raddino.cli import app
from raddino.features.cache import FeatureConfig
from raddino.reportgen import (
    ReportCollator,
    ReportTrainConfig,
    greedy_reports,
    load_language_model,
    load_report_model,
    prompt_layout,
    train_report_model,
)
from raddino.reportgen.data import ReportItem
from raddino.reportgen.lora import LoraSettings

pytest.importorskip("peft", reason="LoRA needs peft (in the dev extra)")


def _config(manifest: Path, encoder: Path, lm: Path, out: Path, cache: Path, **values) -> ReportTrainConfig:
    settings = {
        "trainable": "lora",
        "lora": LoraSettings(rank=4, alpha=8.0, dropout=0.1),
        "epochs": 2,
        "batch_size": 4,
        "micro_batch_size": 2,
        "learning_rate": 1e-2,
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


def _base_name(name: str) -> str:
    """A peft-wrapped parameter's name in the plain LM (``base_model.model.`` and ``.base_layer`` off)."""
    return name.removeprefix("base_model.model.").replace(".base_layer", "")


def test_lora_trains_the_adapters_and_projector_and_leaves_the_lm_weights(
    report_manifest: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "lora"
    summary = train_report_model(_config(report_manifest, tiny_encoder_dir, tiny_lm_dir, out, tmp_path / "c"))
    assert summary.complete
    assert summary.steps == 4
    assert not (out / "language_model").exists()  # adapters only, the LM is named
    adapters = load_file(str(out / "lora_adapter" / "adapter_model.safetensors"))
    assert adapters
    assert all("lora_" in name for name in adapters)
    # LoRA's B starts at zero: non-zero after training means the adapters learnt
    assert any(float(tensor.abs().max()) > 0 for name, tensor in adapters.items() if "lora_B" in name)

    model, _, info = load_report_model(out, trainable_adapters=True)
    assert info.adapter == "lora_adapter"
    assert info.language_model == str(tiny_lm_dir)
    trainable = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    assert {name for name in trainable if not name.startswith("projector.")}
    assert all(name.startswith("projector.") or "lora_" in name for name in trainable)
    original, _ = load_language_model(tiny_lm_dir)
    weights = dict(original.named_parameters())
    compared = 0
    for name, parameter in model.language_model.named_parameters():
        if "lora_" not in name:
            torch.testing.assert_close(parameter, weights[_base_name(name)], msg=name)
            compared += 1
    assert compared == len(weights)


def test_resumed_lora_training_equals_uninterrupted_training(
    report_manifest: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    train_report_model(_config(report_manifest, tiny_encoder_dir, tiny_lm_dir, tmp_path / "a", cache))
    stopped = train_report_model(
        _config(report_manifest, tiny_encoder_dir, tiny_lm_dir, tmp_path / "b", cache, max_steps=3)
    )
    assert not stopped.complete
    assert (tmp_path / "b" / "checkpoints" / "step_0000003.pt").is_file()
    resumed = train_report_model(
        _config(report_manifest, tiny_encoder_dir, tiny_lm_dir, tmp_path / "b", cache)
    )
    assert resumed.complete
    assert resumed.steps == 4
    # same batches, same dropout draws (RNG restored): identical adapters and projector
    for name in ("lora_adapter/adapter_model.safetensors", "projector.safetensors"):
        straight, interrupted = load_file(str(tmp_path / "a" / name)), load_file(str(tmp_path / "b" / name))
        assert straight.keys() == interrupted.keys()
        for key, tensor in straight.items():
            torch.testing.assert_close(interrupted[key], tensor, msg=key)

    # resuming with another trainable setting is refused by name, not silently mixed
    with pytest.raises(ValueError, match="LoRA adapters, but trainable is 'projector'"):
        train_report_model(
            _config(
                report_manifest, tiny_encoder_dir, tiny_lm_dir, tmp_path / "b", cache, trainable="projector"
            )
        )


def test_lora_cli_train_then_generate_decodes_as_the_unmerged_model(
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
            "--trainable",
            "lora",
            "--lora-rank",
            "4",
            "--lora-alpha",
            "16",
            "--lora-targets",
            "q_proj,v_proj",
            "--epochs",
            "3",
            "--batch-size",
            "4",
            "--lr",
            "2e-2",
            *common,
        ],
    )
    assert result.exit_code == 0, result.output
    adapter_config = (out / "lora_adapter" / "adapter_config.json").read_text()
    assert '"r": 4' in adapter_config
    assert '"lora_alpha": 16' in adapter_config
    adapted = {
        name.split(".")[-3] for name in load_file(str(out / "lora_adapter" / "adapter_model.safetensors"))
    }
    assert adapted == {"q_proj", "v_proj"}

    generated = tmp_path / "generated.csv"
    result = runner.invoke(
        app, ["report", "generate", str(out), str(report_manifest), "--out", str(generated), *common]
    )
    assert result.exit_code == 0, result.output
    with open(generated, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["id"] for row in rows] == ["s08", "s09", "s10", "s11"]

    # generate merges the adapters into the LM: it must decode exactly as the adapters on top of the LM
    merged, tokenizer, info = load_report_model(out)
    unmerged, _, _ = load_report_model(out, trainable_adapters=True)
    torch.manual_seed(0)
    items = [ReportItem(f"r{i}", "", torch.randn(info.num_image_tokens, info.vision_dim)) for i in range(3)]
    batch = ReportCollator(tokenizer, prompt_layout(tokenizer, info.num_image_tokens), "generate")(items)
    from_merged = greedy_reports(merged.eval(), tokenizer, batch, max_new_tokens=20)
    assert from_merged == greedy_reports(unmerged.eval(), tokenizer, batch, max_new_tokens=20)
    texts = tokenizer.batch_decode(from_merged, skip_special_tokens=True)
    assert [" ".join(text.split()) for text in texts[:1]] != [""]


def test_lora_without_peft_says_how_to_install_it(
    report_manifest: Path, tiny_encoder_dir: Path, tiny_lm_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft now raises ImportError
    result = CliRunner().invoke(
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
            str(tmp_path / "m"),
            "--trainable",
            "lora",
            "--set",
            f"features.cache_dir={tmp_path / 'cache'}",
            "--set",
            "features.num_workers=0",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 2
    assert "LoRA needs the 'peft' package" in result.output
    assert "pip install" in result.output


def test_lora_settings_reject_bad_values_by_name() -> None:
    with pytest.raises(ValueError, match=r"lora\.rank"):
        LoraSettings(rank=0)
    with pytest.raises(ValueError, match=r"lora\.dropout"):
        LoraSettings(dropout=1.0)
