"""Every generated sub-command: help from the config's docstrings, the same option names everywhere."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from raddino.cli import app
from raddino.cli.fields import leaves
from raddino.cli.generate import ConfigCommand

# Spellings the same setting has elsewhere; a generated command shows only the first.
UNIFORM = {"--num-workers": "--workers", "--encoder": "--model", "--restart": "--overwrite"}


def _generated(group: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], ConfigCommand]]:
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from _generated(command, (*path, name))
        elif hasattr(command, "spec"):
            yield (*path, name), command.spec()


GENERATED = dict(_generated(typer.main.get_command(app)))


def test_the_converted_commands_are_generated() -> None:
    names = {" ".join(path) for path in GENERATED}
    expected = {"embed", "prepare", "phantoms", "stats", "export", "demo", "attention", "correspond", "pca"}
    assert expected <= names
    assert {"manifest brax", "manifest mimic-cxr", "manifest merge"} <= names
    assert {"probe", "knn", "search", "metadata", "segment", "compare"} <= names
    assert {"report train", "report generate", "report score"} <= names
    assert {"pretrain", "export-run"} <= names


@pytest.mark.parametrize("path", sorted(GENERATED), ids=" ".join)
def test_every_option_has_its_fields_docstring(path: tuple[str, ...]) -> None:
    spec = GENERATED[path]
    shown = [option.leaf for option in spec.options()]
    undocumented = [leaf.key for leaf in shown if not leaf.doc]
    assert undocumented == [], f"{' '.join(path)}: fields without a docstring"
    keys = {leaf.key for leaf in leaves(spec.config)}
    assert set(spec.arguments) <= keys


@pytest.mark.parametrize("path", sorted(GENERATED), ids=" ".join)
def test_options_have_one_name_everywhere(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    flags = set(re.findall(r"--[a-z][a-z0-9-]*", result.output))
    assert not flags & set(UNIFORM), f"{' '.join(path)} shows {sorted(flags & set(UNIFORM))}"
    assert "--config" in flags
    assert "--set" in flags


def test_manifest_merge_from_a_config_file(tmp_path: Path) -> None:
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text("path,subject_id,source,view\nx1.png,s1,a,PA\nx2.png,s2,a,LL\n")
    second.write_text("path,subject_id,source,view\ny1.png,s3,b,AP\n")
    config = tmp_path / "merge.yaml"
    config.write_text(f"inputs: [{first}, {second}]\nfrontal_only: true\n")
    out = tmp_path / "merged.csv"
    result = CliRunner().invoke(app, ["manifest", "merge", "-c", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (2 images)" in result.output


def test_a_required_setting_left_out_is_one_line() -> None:
    result = CliRunner().invoke(app, ["manifest", "brax", "--out", "x.csv"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: no dataset folder given: pass --root FOLDER"
    result = CliRunner().invoke(app, ["phantoms", "--n", "2"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: no output folder given: pass --out FOLDER"


@pytest.mark.parametrize("command", ["probe", "knn", "metadata", "report train", "report generate"])
def test_the_feature_source_has_the_same_options_everywhere(command: str) -> None:
    spec = GENERATED[tuple(command.split())]
    flags = {option.flags[0]: option.leaf.key for option in spec.options() if not option.hidden}
    expected = {"--model": "features.model", "--embeddings": "features.embeddings"}
    expected |= {"--cache-dir": "features.cache_dir", "--workers": "features.num_workers"}
    assert expected.items() <= flags.items()
    assert flags["--out"] == "out"


def test_report_commands_take_the_earlier_encoder_spelling() -> None:
    for flag in ("--encoder", "-e", "--model"):
        result = CliRunner().invoke(app, ["report", "train", "studies.csv", flag, "enc"])
        assert result.exit_code == 2
        # the encoder was taken: the next missing setting is reported
        assert result.output.strip().startswith("error: no language model given: pass --lm"), flag
    result = CliRunner().invoke(app, ["report", "train", "studies.csv", "--lm", "lm"])
    assert result.output.strip().startswith("error: no encoder given: pass --model")


def test_help_shows_square_brackets_of_docstrings() -> None:
    result = CliRunner().invoke(app, ["report", "train", "--help"], env={"COLUMNS": "300"})
    assert "e.g. [q_proj, v_proj] (Llama) or [c_attn] (GPT-2)" in result.output


def test_evaluation_commands_without_a_feature_source_are_one_line() -> None:
    for command in ("probe", "knn", "metadata"):
        result = CliRunner().invoke(app, [command, "m.csv"])
        assert result.exit_code == 2
        line = result.output.strip()
        assert line.startswith("error: no encoder given: pass --model"), command
        assert "--embeddings" in line


def test_report_score_names_a_bad_csv_and_a_wrong_name_count(tmp_path: Path) -> None:
    generated = tmp_path / "gen.csv"
    generated.write_text("id,reference,generated\ns1,no effusion,no effusion\n")
    result = CliRunner().invoke(app, ["report", "score", str(generated), "--name", "a", "--name", "b"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: 2 names for 1 CSV files; give one per CSV"
    broken = tmp_path / "broken.csv"
    broken.write_text("id,text\ns1,x\n")
    result = CliRunner().invoke(app, ["report", "score", str(broken)])
    assert result.exit_code == 2
    assert result.output.strip().startswith(f"error: {broken}: missing column(s) ['generated', 'reference']")


def test_pretrain_needs_data_and_a_run_folder_and_names_a_misspelt_key() -> None:
    result = CliRunner().invoke(app, ["pretrain", "--out", "run"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: train.dataset_path: no data; set it in the config or with --data"
    result = CliRunner().invoke(app, ["pretrain", "--data", "images"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: no run folder given: pass --out FOLDER"
    result = CliRunner().invoke(app, ["pretrain", "--data", "images", "--out", "run", "optim.base_lrr=1"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: overrides: unknown key 'optim.base_lrr' (did you mean 'base_lr'?)"


def test_export_run_without_a_checkpoint_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["export-run", str(tmp_path), str(tmp_path / "out")])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {tmp_path}: no checkpoint to export (run raddino pretrain first)"
