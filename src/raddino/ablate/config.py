"""Settings of ``raddino ablate``: the base pre-training config (its sections, as ``pretrain`` takes them,
so ``--config configs/demo_cpu.yaml`` and ``--set optim.epochs=3`` mean what they mean there) and the
sweep's own fields."""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from raddino.config import config_to_dict, load_config
from raddino.pretrain.config import PretrainConfig


@dataclass
class AblateRun(PretrainConfig):
    """Settings of ``raddino ablate``: a pre-training config every point starts from, and the sweep."""

    sweep: str = ""
    """resolution, data-size, init, objective, or a dotted pre-training key (optim.base_lr)."""
    values: list[str] = field(default_factory=list)
    """The sweep's values: sizes (224 518), fractions or counts (0.25 1.0), random / a folder / a hub id,
    full / no-ibot / no-koleo, or YAML values of the dotted key."""
    evaluation: str = ""
    """Labelled manifest every point's encoder is probed on (its validation and test subjects are never
    pre-trained on)."""
    out: str = "ablation"
    """Sweep folder: points/<point>/ (a pre-training run folder each), ablation.{csv,md,png,json},
    compare/."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Pre-training seeds: every value is run once per seed; intervals are over seeds when there are
    several."""
    labels: list[str] = field(default_factory=list)
    """Label columns to probe; default: every column holding only 0 / 1 / -1 / empty."""
    probe_seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """Seeds of each point's linear probe (mean ± std over them)."""
    probe_epochs: int = 100
    """Epochs of the linear heads (the paper's 100)."""
    probe_lrs: list[float] = field(default_factory=lambda: [1e-4, 5e-4, 1e-3])
    """Learning rates of the heads, the best picked on validation."""
    split_ratios: list[float] = field(default_factory=lambda: [0.7, 0.15, 0.15])
    """Train / val / test shares of the evaluation manifest when it has no split column (by subject)."""
    split_seed: int = 0
    """Seed of that split."""
    subset_seed: int = 0
    """Seed of the subject order the nested data-size subsets are taken in."""
    segment: list[str] = field(default_factory=list)
    """Structures to segment with a linear head on each point's encoder too (Table 6), from the
    evaluation manifest's mask columns; none by default."""
    groups: list[str] = field(default_factory=list)
    """Finding groups of the figure, NAME=finding,finding (large=cardiomegaly,pleural_effusion)."""
    groups_file: str = ""
    """CSV with a finding column and a group column (groups_column) instead of groups."""
    groups_column: str = "group"
    """The groups_file column naming each finding's group."""
    parallel: int | None = None
    """Points run at once: default one per CUDA device (each process sees one), else 1; on the CPU each of
    N processes gets cpu_count / N threads."""
    progress: bool = True
    """Show progress bars."""
    overwrite: bool = False
    """Run every point again, discarding finished ones."""

    def pretrain_config(self) -> PretrainConfig:
        """The base pre-training config alone (what each point starts from)."""
        sections = {item.name: getattr(self, item.name) for item in dataclasses.fields(PretrainConfig)}
        return PretrainConfig(**sections)

    def pretrain_tree(self) -> dict[str, Any]:
        """The base pre-training config as a plain nested dict (sections → keys → values)."""
        return config_to_dict(self.pretrain_config())


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict, creating sections; ``None`` is kept (unlike option values)."""
    *sections, last = key.split(".")
    node = tree
    for section in sections:
        node = node.setdefault(section, {})
    node[last] = value


def point_config(base: dict[str, Any], overrides: dict[str, Any]) -> PretrainConfig:
    """The pre-training config of one point: the base tree with the point's dotted keys set.

    Raises:
        ConfigError: a key the config does not have (naming it, with a did-you-mean) or a bad value.
    """
    tree = copy.deepcopy(base)
    for key, value in overrides.items():
        set_dotted(tree, key, value)
    return load_config(PretrainConfig, values=tree)


__all__ = ["AblateRun", "point_config", "set_dotted"]
