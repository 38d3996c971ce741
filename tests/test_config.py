"""Typed configs: YAML + explicit values + dotted overrides, with misspelt keys failing by name."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from raddino.config import ConfigError, config_to_dict, load_config, load_yaml, parse_overrides, save_config


@dataclass
class Optim:
    base_lr: float = 1e-3
    layerwise_decay: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Recipe:
    name: str = "rad-dino"
    epochs: int = 100
    ibot: bool = True
    centering: Literal["centering", "sinkhorn_knopp"] = "centering"
    output: Path = Path("runs")
    init: str | None = None
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    layers: Sequence[int] = (3, 6)
    optim: Optim = field(default_factory=Optim)

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ValueError("epochs must be at least 1")


def _yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_file_values_and_overrides_in_increasing_priority(tmp_path: Path) -> None:
    path = _yaml(tmp_path, "epochs: 10\noptim:\n  base_lr: 0.002\n")
    config = load_config(
        Recipe,
        path,
        overrides=["optim.layerwise_decay=0.75", "epochs=20"],
        values={"epochs": 15, "init": None},
    )
    assert config.epochs == 20  # override beats value beats file
    assert config.optim == Optim(base_lr=0.002, layerwise_decay=0.75)  # nested section merged, not replaced
    assert config.init is None  # a None value leaves the file/default alone
    assert load_config(Recipe, path, values={"epochs": 15}).epochs == 15


def test_types_are_checked_and_converted_losslessly(tmp_path: Path) -> None:
    path = _yaml(
        tmp_path,
        "optim:\n  base_lr: 1\n  betas: [0.8, 0.95]\noutput: /tmp/x\nseeds: [4]\nlayers: [1, 2, 3]\n"
        "centering: sinkhorn_knopp\n",
    )
    config = load_config(Recipe, path)
    assert config.optim.base_lr == 1.0
    assert isinstance(config.optim.base_lr, float)
    assert config.optim.betas == (0.8, 0.95)
    assert config.output == Path("/tmp/x")
    assert config.seeds == [4]
    assert list(config.layers) == [1, 2, 3]
    assert config.centering == "sinkhorn_knopp"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epoch: 3\n", "unknown key 'epoch' (did you mean 'epochs'?)"),
        ("optim:\n  base_rl: 0.1\n", "unknown key 'optim.base_rl' (did you mean 'base_lr'?)"),
        ("epochs: 2.5\n", "key 'epochs' must be an integer"),
        ("epochs: true\n", "key 'epochs' must be an integer"),
        ("ibot: 1\n", "key 'ibot' must be true or false"),
        ("centering: mean\n", "key 'centering': 'mean' is not one of"),
        ("optim:\n  betas: [0.9]\n", r"key 'optim.betas' needs 2 values, got 1"),
        ("optim: 3\n", "key 'optim' must be a mapping"),
        ("seeds: [1, two]\n", r"key 'seeds\[1\]' must be an integer"),
        ("layers: [1, x]\n", r"key 'layers\[1\]' must be an integer"),
        ("epochs: 0\n", "epochs must be at least 1"),
        ("- a\n- b\n", "the top level must be a mapping"),
        ("epochs: [\n", "not valid YAML"),
    ],
)
def test_bad_files_fail_naming_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = _yaml(tmp_path, text)
    with pytest.raises(ConfigError, match=re.escape(message) if "\\" not in message else message) as caught:
        load_config(Recipe, path)
    assert str(path) in str(caught.value)


def test_bad_overrides_fail_naming_the_override() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'optim\.lr'"):
        load_config(Recipe, overrides=["optim.lr=0.1"])
    with pytest.raises(ConfigError, match="must look like key=value"):
        load_config(Recipe, overrides=["epochs"])
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(Recipe, "/nonexistent/recipe.yaml")


def test_parse_overrides_reads_yaml_scalars_and_lists() -> None:
    assert parse_overrides(["a.b=1.5e-3", "c=[0.1,0.5]", "d=null", "e=", "f=off", "g=text=with=equals"]) == {
        "a": {"b": 1.5e-3},
        "c": [0.1, 0.5],
        "d": None,
        "e": "",
        "f": False,
        "g": "text=with=equals",
    }


def test_exponents_without_a_dot_are_numbers(tmp_path: Path) -> None:
    # PyYAML follows YAML 1.1, where "1e-3" is a string; learning rates are written that way all the time.
    config = load_config(
        Recipe, _yaml(tmp_path, "optim:\n  base_lr: 1e-3\n"), overrides=["optim.layerwise_decay=5E-1"]
    )
    assert config.optim.base_lr == 1e-3
    assert config.optim.layerwise_decay == 0.5
    with pytest.raises(ConfigError, match="must be a number"):
        load_config(Recipe, overrides=["optim.base_lr=fast"])


def test_save_then_load_round_trips(tmp_path: Path) -> None:
    config = load_config(Recipe, overrides=["epochs=7", "optim.betas=[0.5,0.6]", "output=/data/run"])
    saved = save_config(config, tmp_path / "out" / "config.yaml")
    plain = yaml.safe_load(saved.read_text(encoding="utf-8"))
    assert plain == config_to_dict(config)
    assert plain["optim"]["betas"] == [0.5, 0.6]
    assert plain["output"] == "/data/run"
    assert load_config(Recipe, saved) == config


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("epochs: 3\nibot: false\nepochs: 5\n", "key 'epochs' appears twice (lines 1 and 3); keep one"),
        ("optim:\n  base_lr: 0.1\n  base_lr: 0.2\n", "key 'base_lr' appears twice (lines 2 and 3); keep one"),
        ("optim: {base_lr: 0.1, base_lr: 0.2}\n", "key 'base_lr' appears twice (line 1); keep one"),
    ],
)
def test_a_key_given_twice_is_refused_with_its_lines(tmp_path: Path, text: str, message: str) -> None:
    # PyYAML keeps the later value silently: a recipe edited in two places would run with either.
    path = _yaml(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(Recipe, path)
    assert str(caught.value) == f"{path}: {message}"
    with pytest.raises(ConfigError, match=r"key 'epochs' appears twice \(line 1\)"):
        parse_overrides(["optim={epochs: 1, epochs: 2}"])


def test_yaml_errors_are_one_line_and_merge_keys_still_work(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"not valid YAML: line 2, column 8: mapping values") as caught:
        load_config(Recipe, _yaml(tmp_path, "epochs: 3\nibot: a: b\n"))
    assert "\n" not in str(caught.value)
    shared = "defaults: &optim {base_lr: 0.5}\n"
    assert load_yaml(shared + "optim:\n  <<: *optim\n  layerwise_decay: 0.5\n")["optim"] == {
        "base_lr": 0.5,
        "layerwise_decay": 0.5,
    }
