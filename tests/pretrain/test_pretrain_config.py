"""The pre-training config: the paper's recipe file, DINOv2's rules, clear errors; the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pretrain_helpers import TEST_CONFIG, make_phantoms
from typer.testing import CliRunner

from raddino.cli import app
from raddino.config import ConfigError
from raddino.pretrain.config import load_pretrain_config
from raddino.pretrain.task import build_schedules

CONFIGS = TEST_CONFIG.parent


def test_rad_dino_recipe_values() -> None:
    config = load_pretrain_config(CONFIGS / "rad_dino_vitb14.yaml", values={"train.dataset_path": "x"})
    assert config.global_batch_size(16) == 640  # 40 per GPU × 16 A100s (paper)
    assert config.scaled_lr(16) == pytest.approx(1e-3 * np.sqrt(640 / 1024))  # DINOv2's sqrt rule
    assert config.total_iterations == 100_000
    assert (config.teacher.momentum_teacher, config.teacher.final_momentum_teacher) == (0.992, 1.0)
    assert config.crops.global_crops_size == 518
    assert config.crops.local_crops_size == 196
    assert config.ibot.mask_ratio_min_max == (0.1, 0.5)
    assert config.dino.head_n_prototypes == 65536
    schedules = build_schedules(config, world_size=16).arrays
    assert schedules["teacher_temperature"][0] == pytest.approx(0.04)
    assert schedules["teacher_temperature"][30 * 1250] == pytest.approx(0.07)
    assert schedules["last_layer_learning_rate"][:1250].max() == 0.0  # frozen for the first "epoch"
    assert schedules["learning_rate"][12_500] == pytest.approx(config.scaled_lr(16))  # peak after warm-up
    assert schedules["momentum"][0] == 0.992
    assert all(len(array) == 100_000 for array in schedules.values())


def test_demo_and_test_configs_load() -> None:
    for name in ("demo_cpu.yaml", "test.yaml"):
        config = load_pretrain_config(CONFIGS / name, ["train.dataset_path=x"])
        assert config.compute.device == "cpu"


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("optim.base_lrr=1e-3", "optim.base_lrr"),
        ("ibot.mask_ratio_min_max=[0.6,0.2]", "ibot.mask_ratio_min_max"),
        ("train.centering=kmeans", "train.centering"),
        ("train.batch_size_per_gpu=1", "train.batch_size_per_gpu"),  # KoLeo needs 2 per process
        ("optim.warmup_epochs=9", "optim.warmup_epochs"),
    ],
)
def test_bad_values_name_their_key(override: str, named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_pretrain_config(TEST_CONFIG, ["train.dataset_path=x", override])


def test_missing_data_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"train\.dataset_path"):
        load_pretrain_config(TEST_CONFIG)


def test_cli_pretrain_export_and_errors(tmp_path: Path) -> None:
    manifest = make_phantoms(tmp_path / "phantoms", n=6)
    runner = CliRunner()
    run = tmp_path / "run"
    args = ["pretrain", "-c", str(TEST_CONFIG), "--out", str(run), "--data", str(manifest)]
    options = [
        "--set",
        "optim.epochs=1",
        "--set",
        "train.export_at_end=true",
        "--set",
        "train.export_period=1",
    ]
    result = runner.invoke(app, [*args, *options])
    assert result.exit_code == 0, result.output
    assert (run / "export" / "teacher" / "model.safetensors").is_file()
    assert (run / "export" / "teacher_0000001" / "dino_head.safetensors").is_file()  # the periodic snapshot
    assert (run / "config.yaml").is_file()
    # Rerunning the finished run resumes at its end and does nothing more.
    again = runner.invoke(app, [*args, "--set", "optim.epochs=1"])
    assert again.exit_code == 0, again.output
    assert "2 iterations" in again.output
    refused = runner.invoke(app, [*args, "--set", "optim.epochs=1", "--restart"])
    assert refused.exit_code == 2
    assert "already holds checkpoints" in refused.output
    bad = runner.invoke(app, [*args, "--set", "optim.base_lrr=1"])
    assert bad.exit_code == 2
    assert "optim.base_lrr" in bad.output
    exported = runner.invoke(app, ["export-run", str(run), str(tmp_path / "dv2"), "--format", "dinov2"])
    assert exported.exit_code == 0, exported.output
    assert (tmp_path / "dv2" / "backbone_compatible.safetensors").is_file()
    assert (tmp_path / "dv2" / "dino_head.safetensors").is_file()
