"""Commands generated from config dataclasses: options, help from field docstrings, key=value settings."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import typer
from typer.testing import CliRunner

from raddino.cli.generate import ConfigCommand, field_docs, leaves, register


@dataclass
class Training:
    """Head training."""

    epochs: int = 100
    """Epochs of the heads (paper: 100)."""
    lr: float = 5e-5


@dataclass
class Toy:
    """Settings of ``toy``."""

    input: str = ""
    """Manifest CSV."""
    out: str = "toy"
    """Output folder."""
    num_workers: int = 2
    """Decoding workers."""
    method: Literal["linear", "sklearn"] = "linear"
    """How heads are fitted."""
    strict: bool = False
    """Exit 1 if any image failed."""
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    """Seeds."""
    training: Training = field(default_factory=Training)
    model: str = ""
    """Encoder."""


@dataclass
class Outcome:
    text: str
    exit_code: int = 0

    def __str__(self) -> str:
        return self.text


def _app(seen: list[Toy]) -> typer.Typer:
    app = typer.Typer()

    def run(config: Toy) -> Outcome:
        seen.append(config)
        if config.model == "broken":
            raise ValueError("model 'broken': no such folder\nsecond line")
        return Outcome(f"ran {config.input}", exit_code=1 if config.strict else 0)

    spec = ConfigCommand(
        "toy",
        Toy,
        run,
        arguments=("input",),
        promote={"training.epochs": "epochs"},
        rename={"num_workers": "workers"},
        short={"out": "-o"},
    )
    register(app, spec)

    @app.command("other")
    def other() -> None:  # a second command, so typer keeps sub-command names
        """Unused."""

    return app


def test_field_docstrings_are_read_from_the_source() -> None:
    docs = field_docs(Toy)
    assert docs["num_workers"] == "Decoding workers."
    assert "lr" not in field_docs(Training)
    assert [leaf.key for leaf in leaves(Toy)] == [
        "input",
        "out",
        "num_workers",
        "method",
        "strict",
        "seeds",
        "training.epochs",
        "training.lr",
        "model",
    ]


def test_options_override_defaults_and_settings_override_options(tmp_path: Path) -> None:
    seen: list[Toy] = []
    result = CliRunner().invoke(
        _app(seen),
        [
            "toy",
            "data.csv",
            "--workers",
            "4",
            "--method",
            "sklearn",
            "--seeds",
            "3",
            "--seeds",
            "4",
            "--epochs",
            "7",
            "-o",
            str(tmp_path),
            "training.lr=0.001",
            "--set",
            "model=preset:vit_test",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "ran data.csv" in result.output
    config = seen[-1]
    assert (config.input, config.num_workers, config.method) == ("data.csv", 4, "sklearn")
    assert config.seeds == [3, 4]
    assert (config.training.epochs, config.training.lr, config.model) == (7, 0.001, "preset:vit_test")
    assert config.out == str(tmp_path)


def test_config_file_then_options(tmp_path: Path) -> None:
    seen: list[Toy] = []
    (tmp_path / "toy.yaml").write_text("num_workers: 8\ntraining:\n  epochs: 3\n  lr: 0.1\n")
    arguments = ["toy", "x.csv", "-c", str(tmp_path / "toy.yaml"), "--epochs", "5"]
    result = CliRunner().invoke(_app(seen), arguments)
    assert result.exit_code == 0, result.output
    assert (seen[-1].num_workers, seen[-1].training.epochs, seen[-1].training.lr) == (8, 5, 0.1)


def test_help_shows_docstrings_and_defaults() -> None:
    result = CliRunner().invoke(_app([]), ["toy", "--help"], env={"COLUMNS": "200"})
    text = re.sub(r"[\s│]+", " ", result.output)  # help boxes may wrap a line: read it as one
    assert "--workers" in text
    assert "--num-workers" not in text
    assert "Decoding workers. (default: 2)" in text
    assert "Epochs of the heads (paper: 100). (default: 100)" in text
    assert "--strict" in text
    assert "--no-strict" in text
    assert "linear" in text
    assert "sklearn" in text


def test_bad_input_is_one_line_and_exit_codes_pass_through() -> None:
    seen: list[Toy] = []
    app = _app(seen)
    result = CliRunner().invoke(app, ["toy", "x.csv", "--model", "broken"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: model 'broken': no such folder"
    result = CliRunner().invoke(app, ["toy", "x.csv", "training.epoch=3"])
    assert result.exit_code == 2
    assert "training.epoch" in result.output
    assert "did you mean 'epochs'" in result.output
    result = CliRunner().invoke(app, ["toy", "x.csv", "stray"])
    assert result.exit_code == 2
    assert "expected key=value" in result.output
    assert CliRunner().invoke(app, ["toy", "x.csv", "--strict"]).exit_code == 1
    assert CliRunner().invoke(app, ["toy", "x.csv", "--method", "svm"]).exit_code == 2


@pytest.mark.parametrize("flag", ["--strict", "--no-strict"])
def test_flags_are_flags(flag: str) -> None:
    seen: list[Toy] = []
    CliRunner().invoke(_app(seen), ["toy", "x.csv", flag])
    assert seen[-1].strict is (flag == "--strict")
