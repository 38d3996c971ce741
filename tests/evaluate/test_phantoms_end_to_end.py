"""Every evaluation command on phantoms through the command line, with a test-sized encoder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raddino.cli import app
from raddino.data.phantoms.generate import generate_phantoms

runner = CliRunner()


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("phantoms")
    return generate_phantoms(folder, n=48, size=64, seed=0, workers=1, progress=False)


def _invoke(arguments: list[str]) -> None:
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output


@pytest.mark.slow
def test_every_command_runs_on_phantoms_and_compare_gathers_them(
    phantoms: Path, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    common = ["--model", str(tiny_encoder_dir), "--cache-dir", str(tmp_path / "cache")]
    _invoke(
        [
            "probe",
            str(phantoms),
            *common,
            "--out",
            str(tmp_path / "probe"),
            "--epochs",
            "3",
            "--seed",
            "0",
            "--seed",
            "1",
            "--set",
            "features.num_workers=0",
            "--set",
            "progress=false",
        ]
    )
    _invoke(["knn", str(phantoms), *common, "--out", str(tmp_path / "knn"), "--k", "3", "--k", "5"])
    _invoke(["metadata", str(phantoms), *common, "--out", str(tmp_path / "metadata"), "--folds", "3"])
    _invoke(
        [
            "segment",
            str(phantoms),
            "--model",
            str(tiny_encoder_dir),
            "--out",
            str(tmp_path / "segment"),
            "--structure",
            "left_lung",
            "--structure",
            "heart",
            "--head",
            "linear",
            "--epochs",
            "2",
            "--set",
            "resolution=56",
            "--set",
            "training.channels=8",
            "--set",
            "progress=false",
        ]
    )
    assert len(list((tmp_path / "cache").glob("*.parquet"))) == 1  # one extraction served three commands
    probe = json.loads((tmp_path / "probe" / "probe.json").read_text())
    assert probe["findings"][:2] == ["cardiomegaly", "pleural_effusion"]
    assert probe["split_source"] == "manifest"  # the phantoms' own subject-wise splits
    assert probe["summary"]["macro_auprc"]["count"] == 2
    metadata = json.loads((tmp_path / "metadata" / "metadata.json").read_text())
    assert set(metadata["targets"]) == {"sex", "age", "weight", "bmi"}
    assert metadata["targets"]["age"]["classes"] == ["<40", "40–55", "55–65", "65–75", "≥75"]
    segment = json.loads((tmp_path / "segment" / "segment.json").read_text())
    assert segment["structures"] == ["left_lung", "heart"]
    assert 0.0 <= segment["summary"]["dice/linear/heart"]["mean"] <= 1.0
    _invoke(
        [
            "compare",
            str(tmp_path / "probe"),
            str(tmp_path / "knn"),
            str(tmp_path / "metadata"),
            str(tmp_path / "segment"),
            "--out",
            str(tmp_path / "compare"),
        ]
    )
    tables = json.loads((tmp_path / "compare" / "compare.json").read_text())["tables"]
    assert set(tables) == {"probe", "knn", "metadata", "segment"}
