"""The points of a sweep: which pre-training settings each point changes, and what its folder is called.

Sweeps (the paper's ablations, Figures 1-2 and Tables 2 and 6):

* ``resolution``: pixel sizes; each sets ``crops.global_crops_size`` (pre-training and, through the
  export's preprocessing, inference), the local crops keeping the config's ratio to it (DINOv2: 98 / 224),
  and ``student.arch_overrides.image_size`` (the position grid of a random init) where the config sets it;
* ``data-size``: fractions (``0.25``) or image counts (``200``) of the pre-training pool, nested subsets
  (:mod:`raddino.ablate.subsets`);
* ``init``: ``random`` (the config's ``student.arch`` at random init), a folder / weights file or a hub id
  (``student.pretrained_weights``);
* ``objective``: ``full``, ``no-ibot`` (``ibot.loss_weight: 0``) or ``no-koleo`` (``dino.koleo_loss_weight:
  0``);
* any dotted pre-training key (``optim.base_lr``) with its values, each read as YAML (``1e-3``, ``true``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml

from raddino.config import load_yaml

NAMED_SWEEPS = ("resolution", "data-size", "init", "objective")
OBJECTIVES: dict[str, dict[str, Any]] = {
    "full": {},
    "no-ibot": {"ibot.loss_weight": 0.0},  # Table 6's no-MIM encoder
    "no-koleo": {"dino.koleo_loss_weight": 0.0},
}


class SweepError(ValueError):
    """A sweep or one of its values cannot be run; the message names it."""


@dataclass(frozen=True)
class Point:
    """One point of a sweep at one pre-training seed.

    Attributes:
        sweep: The sweep's name (``resolution``) or dotted key.
        value: The value as given (``"224"``), shown in tables and figures.
        seed: The pre-training seed (``train.seed``).
        overrides: Pre-training keys this point sets (dotted), on top of the base config.
        data_size: The ``data-size`` target (a fraction of the pool, or a count of images).
    """

    sweep: str
    value: str
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict)
    data_size: float | None = None

    @property
    def name(self) -> str:
        """The point's folder name, ``resolution-224_seed0``; characters outside ``[A-Za-z0-9._-]`` become
        ``-``."""
        slug = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{self.sweep}-{self.value}").strip("-")
        return f"{slug[:80]}_seed{self.seed}"


def _resolution(value: str, base: dict[str, Any]) -> dict[str, Any]:
    try:
        size = int(value)
    except ValueError:
        raise SweepError(f"resolution: {value!r} is not a whole number of pixels") from None
    if size < 14:
        raise SweepError(f"resolution: {size} px is smaller than one ViT patch")
    global_size = int(base.get("crops.global_crops_size", 224))
    local_size = int(base.get("crops.local_crops_size", 98))
    # Local crops keep the config's ratio to the global ones, on a multiple of 14 px (a ViT/14 patch).
    local = max(14, round(size * local_size / global_size / 14) * 14)
    overrides: dict[str, Any] = {"crops.global_crops_size": size, "crops.local_crops_size": local}
    architecture = dict(base.get("student.arch_overrides") or {})
    if "image_size" in architecture:  # a config that sizes the position grid gets it at this resolution
        overrides["student.arch_overrides"] = {**architecture, "image_size": size}
    return overrides


def _data_size(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise SweepError(
            f"data-size: {value!r} is not a fraction (0.25) or a count of images (200)"
        ) from None
    if number <= 0 or (number > 1 and not number.is_integer()):
        raise SweepError(f"data-size: {value!r} must be a fraction in (0, 1] or a whole count above 1")
    return number


def _init(value: str) -> dict[str, Any]:
    return {"student.pretrained_weights": None if value == "random" else value}


def _objective(value: str) -> dict[str, Any]:
    if value not in OBJECTIVES:
        raise SweepError(f"objective: {value!r} is not one of {list(OBJECTIVES)}")
    return dict(OBJECTIVES[value])


def _dotted(sweep: str, value: str) -> dict[str, Any]:
    if not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", sweep):
        raise SweepError(
            f"sweep {sweep!r}: not one of {list(NAMED_SWEEPS)} nor a dotted pre-training key (optim.base_lr)"
        )
    try:
        return {sweep: load_yaml(value)}
    except yaml.YAMLError as error:
        raise SweepError(f"{sweep}: {value!r} is not a YAML value: {' '.join(str(error).split())}") from None


def make_points(
    sweep: str, values: list[str], seeds: list[int], base: dict[str, Any] | None = None
) -> list[Point]:
    """The sweep's points, value by value and seed by seed.

    Args:
        sweep: ``resolution``, ``data-size``, ``init``, ``objective`` or a dotted pre-training key.
        values: The values, as the command line gives them.
        seeds: Pre-training seeds; every value is run once per seed.
        base: The base config's dotted values (``crops.*`` and ``student.arch_overrides``, for the
            resolution sweep).

    Raises:
        SweepError: an unknown sweep, no values, a value given twice or one the sweep cannot take.
    """
    if not values:
        raise SweepError(f"sweep {sweep!r}: no values given")
    if len(set(values)) != len(values):
        raise SweepError(f"sweep {sweep!r}: a value is given twice in {values}")
    if not seeds:
        raise SweepError("seeds: give at least one pre-training seed")
    base = base or {}
    points = []
    for value in values:
        size = None
        if sweep == "resolution":
            overrides = _resolution(value, base)
        elif sweep == "data-size":
            overrides, size = {}, _data_size(value)
        elif sweep == "init":
            overrides = _init(value)
        elif sweep == "objective":
            overrides = _objective(value)
        else:
            overrides = _dotted(sweep, value)
        points += [Point(sweep, value, seed, {**overrides, "train.seed": seed}, size) for seed in seeds]
    return points


__all__ = ["NAMED_SWEEPS", "OBJECTIVES", "Point", "SweepError", "make_points"]
