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
