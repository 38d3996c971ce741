"""Commands generated from config dataclasses: options, help from field docstrings, key=value settings."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import typer
from typer.testing import CliRunner

from raddino.cli.generate import ConfigCommand, Outcome, field_docs, leaves, register, register_deferred


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


@dataclass
class Saved:
    """Settings saved beside the outputs.

    Attributes:
        bits: 8 or 16 bits per pixel.
        voi: Windowing: "auto", true or false.
    """

    bits: Literal[8, 16] = 8
    voi: bool | Literal["auto"] = "auto"


@dataclass
class Picture(Saved):
    """What ``picture`` is given: the saved settings and the images."""

    images: list[str] = field(default_factory=list)
    """Images to draw."""
    tile: int = 256
    """Side of each panel."""


class Busy(OSError):
    """Another run holds the output."""


def _picture_app(seen: list[Picture]) -> typer.Typer:
    app = typer.Typer()

    def run(config: Picture) -> Outcome:
        seen.append(config)
        if "busy.png" in config.images:
            raise Busy("out.png: another run is writing it")
        return Outcome(
            f"{len(config.images)} images", "1 unreadable: see errors.csv" if config.tile < 0 else ""
        )

    spec = ConfigCommand(
        "picture",
        Picture,
        run,
        arguments=("images",),
        choices={"voi": {"auto": "auto", "on": True, "off": False}},
        error_codes={Busy: 3},
    )
    register(app, spec)
    app.command("other")(lambda: None)
    return app


def test_attributes_sections_give_help_and_subclasses_add_fields() -> None:
    docs = field_docs(Picture)
    assert docs["bits"] == "8 or 16 bits per pixel."
    assert docs["voi"] == 'Windowing: "auto", true or false.'
    assert docs["tile"] == "Side of each panel."
    text = re.sub(r"[\s│]+", " ", CliRunner().invoke(_picture_app([]), ["picture", "--help"]).output)
    assert "--bits <8|16> 8 or 16 bits per pixel. (default: 8)" in text
    assert "<auto|on|off>" in text


def test_a_list_argument_takes_the_words_and_key_value_words_are_settings() -> None:
    seen: list[Picture] = []
    result = CliRunner().invoke(_picture_app(seen), ["picture", "a.png", "tile=3", "b.png", "--bits", "16"])
    assert result.exit_code == 0, result.output
    assert (seen[-1].images, seen[-1].tile, seen[-1].bits) == (["a.png", "b.png"], 3, 16)
    assert "2 images" in result.output


@pytest.mark.parametrize(("word", "value"), [("on", True), ("off", False), ("auto", "auto")])
def test_choices_map_words_onto_the_fields_values(word: str, value: object) -> None:
    seen: list[Picture] = []
    assert CliRunner().invoke(_picture_app(seen), ["picture", "a.png", "--voi", word]).exit_code == 0
    assert seen[-1].voi == value


def test_an_option_without_a_plain_type_takes_a_checked_yaml_value() -> None:
    result = CliRunner().invoke(_picture_app([]), ["picture", "a.png", "--bits", "12"])
    assert result.exit_code == 2
    assert "'bits': 12 is not one of [8, 16]" in result.output
    result = CliRunner().invoke(_picture_app([]), ["picture", "a.png", "--bits", "[8"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: --bits '[8': not a valid YAML value"


def test_error_codes_and_warnings() -> None:
    result = CliRunner().invoke(_picture_app([]), ["picture", "busy.png"])
    assert result.exit_code == 3
    assert result.output.strip() == "error: out.png: another run is writing it"
    result = CliRunner().invoke(_picture_app([]), ["picture", "a.png", "--tile", "-1"])
    assert (result.exit_code, result.stdout.strip(), result.stderr.strip()) == (
        0,
        "1 images",
        "1 unreadable: see errors.csv",
    )


def test_an_earlier_spelling_still_works_but_is_not_shown() -> None:
    seen: list[Toy] = []
    app = typer.Typer()
    spec = ConfigCommand(
        "toy", Toy, seen.append, rename={"num_workers": "workers"}, aliases={"--num-workers": "num_workers"}
    )
    register(app, spec)
    app.command("other")(lambda: None)
    assert CliRunner().invoke(app, ["toy", "--num-workers", "5"]).exit_code == 0
    assert seen[-1].num_workers == 5
    CliRunner().invoke(app, ["toy", "--num-workers", "5", "--workers", "6"])
    assert seen[-1].num_workers == 6  # the shown spelling wins
    assert "--num-workers" not in CliRunner().invoke(app, ["toy", "--help"]).output


def test_a_command_may_word_a_fields_help_its_own_way_and_brackets_are_shown() -> None:
    app = typer.Typer()
    spec = ConfigCommand("toy", Toy, lambda config: None, docs={"model": "Encoder [default: recorded]."})
    register(app, spec)
    app.command("other")(lambda: None)
    text = re.sub(r"[\s│]+", " ", CliRunner().invoke(app, ["toy", "--help"], env={"COLUMNS": "200"}).output)
    assert "Encoder [default: recorded]." in text  # rich would take [default: recorded] as a style tag
    assert "Decoding workers." in text  # the other fields keep their docstrings


def test_an_earlier_flag_may_turn_a_field_off_unseen(tmp_path: Path) -> None:
    seen: list[Toy] = []
    app = typer.Typer()
    register(app, ConfigCommand("toy", Toy, seen.append, negations={"--lenient": "strict"}))
    app.command("other")(lambda: None)
    config = tmp_path / "toy.yaml"
    config.write_text("strict: true\n")
    assert CliRunner().invoke(app, ["toy", "-c", str(config)]).exit_code == 0
    assert seen[-1].strict is True
    assert CliRunner().invoke(app, ["toy", "-c", str(config), "--lenient"]).exit_code == 0
    assert seen[-1].strict is False
    assert CliRunner().invoke(app, ["toy", "--lenient", "--strict"]).exit_code == 0
    assert seen[-1].strict is True  # the shown spelling wins
    assert "--lenient" not in CliRunner().invoke(app, ["toy", "--help"]).output


def test_a_deferred_command_is_built_only_when_it_is_used() -> None:
    built: list[str] = []
    seen: list[Toy] = []
    app = typer.Typer()

    def spec() -> ConfigCommand:
        built.append("toy")
        return ConfigCommand("toy", Toy, seen.append, arguments=("input",))

    register_deferred(app, "toy", spec, help="A toy command.")
    app.command("other")(lambda: None)
    listing = CliRunner().invoke(app, ["--help"])
    assert "A toy command." in listing.output
    assert built == []
    assert CliRunner().invoke(app, ["toy", "x.csv", "--out", "o"]).exit_code == 0
    assert (seen[-1].input, seen[-1].out, built) == ("x.csv", "o", ["toy"])
    assert "--num-workers" in CliRunner().invoke(app, ["toy", "--help"]).output


def test_listing_the_commands_imports_no_library() -> None:
    code = (
        "import sys, raddino.cli; print(sorted(m for m in ('torch', 'numpy', 'scipy') if m in sys.modules))"
    )
    listed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert listed.stdout.strip() == "[]"
