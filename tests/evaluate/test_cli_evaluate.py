from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from synthetic_sets import SyntheticSet, write_csv, write_embeddings
from typer.testing import CliRunner

from raddino.cli import app

runner = CliRunner()


def test_probe_command_writes_results_and_config(synthetic_set: SyntheticSet, tmp_path: Path) -> None:
    out = tmp_path / "probe"
    result = runner.invoke(
        app,
        [
            "probe",
            str(synthetic_set.manifest),
            "--embeddings",
            str(synthetic_set.informative),
            "--out",
            str(out),
            "--epochs",
            "20",
            "--batch-size",
            "32",
            "--seed",
            "0",
            "--set",
            "lrs=[0.05]",
            "--set",
            "figure=false",
            "--set",
            "progress=false",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "macro AUPRC" in result.output
    payload = json.loads((out / "probe.json").read_text())
    assert payload["summary"]["macro_auprc"]["mean"] > 0.8
    assert "epochs: 20" in (out / "probe_config.yaml").read_text()


def test_probe_command_names_a_misspelt_key_and_a_missing_label(
    synthetic_set: SyntheticSet, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["probe", str(synthetic_set.manifest), "--set", "trainig.epochs=3"])
    assert result.exit_code == 2
    assert "trainig" in result.output
    result = runner.invoke(
        app,
        [
            "probe",
            str(synthetic_set.manifest),
            "--embeddings",
            str(synthetic_set.informative),
            "--label",
            "nope",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert result.exit_code == 2
    assert "no label column 'nope'" in result.output


def test_knn_and_search_commands(synthetic_set: SyntheticSet, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "knn",
            str(synthetic_set.manifest),
            "--embeddings",
            str(synthetic_set.informative),
            "--k",
            "5",
            "--k",
            "10",
            "--out",
            str(tmp_path / "knn"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "knn" / "knn.json").read_text())["k"] in (5, 10)
    result = runner.invoke(app, ["search", str(synthetic_set.informative), "img0000", "-k", "3"])
    assert result.exit_code == 0, result.output
    assert len([line for line in result.output.splitlines() if line.endswith(".png")]) == 3
    result = runner.invoke(app, ["search", str(synthetic_set.informative), "no-such-image"])
    assert result.exit_code == 2
    assert "neither an id" in result.output


def test_metadata_command_with_user_bin_edges(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [
        {"path": f"{index}.png", "id": str(index), "weight": str(50 + index)} for index in range(40)
    ]
    manifest = write_csv(tmp_path / "m.csv", rows)
    vectors = np.arange(40, dtype=np.float32)[:, None].repeat(4, axis=1)
    embeddings = write_embeddings(
        tmp_path / "e.parquet", [str(index) for index in range(40)], {"cls": vectors}
    )
    result = runner.invoke(
        app,
        [
            "metadata",
            str(manifest),
            "--embeddings",
            str(embeddings),
            "--target",
            "weight",
            "--out",
            str(tmp_path / "o"),
            "--set",
            "bins.weight=[70]",
        ],
    )
    assert result.exit_code == 0, result.output
    payload = json.loads((tmp_path / "o" / "metadata.json").read_text())
    assert payload["targets"]["weight"]["classes"] == ["<70", "≥70"]
    assert payload["targets"]["weight"]["counts"] == [20, 20]
    assert payload["summary"]["accuracy/weight"]["mean"] > 0.9


def test_compare_command_on_probe_outputs(synthetic_set: SyntheticSet, tmp_path: Path) -> None:
    for name in ("informative", "random"):
        result = runner.invoke(
            app,
            [
                "probe",
                str(synthetic_set.manifest),
                "--embeddings",
                str(getattr(synthetic_set, name)),
                "--seed",
                "0",
                "--epochs",
                "10",
                "--out",
                str(tmp_path / name),
                "--set",
                "figure=false",
                "--set",
                "lrs=[0.05]",
            ],
        )
        assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        ["compare", str(tmp_path / "informative"), str(tmp_path / "random"), "--out", str(tmp_path / "cmp")],
    )
    assert result.exit_code == 0, result.output
    table = json.loads((tmp_path / "cmp" / "compare.json").read_text())["tables"]["probe"]
    assert table["best"]["macro_auprc"] == "informative"


def test_segment_command_checks_its_settings(tmp_path: Path) -> None:
    manifest = write_csv(tmp_path / "m.csv", [{"path": "a.png", "mask_left_lung": "a_mask.png"}])
    result = runner.invoke(app, ["segment", str(manifest), "--head", "unet", "--model", "preset:test"])
    assert result.exit_code == 2
    assert "'--head'" in result.output
    assert "'unet' is not one of" in result.output
    result = runner.invoke(app, ["segment", str(manifest), "heads=[unet]", "--model", "preset:test"])
    assert result.exit_code == 2
    unknown = "'unet' is not one of ['linear', 'vitdet', 'upernet']"
    assert result.output.strip() == f"error: overrides: key 'heads[0]': {unknown}"
    result = runner.invoke(app, ["segment", str(manifest)])
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: no model given: pass --model")
    result = runner.invoke(
        app,
        [
            "segment",
            str(manifest),
            "--model",
            "preset:test",
            "--set",
            "training.hflip=true",
            "--out",
            str(tmp_path / "o"),
        ],
    )
    assert result.exit_code == 2
    assert "left_lung" in result.output
