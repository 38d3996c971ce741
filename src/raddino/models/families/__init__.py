"""Backbone families: the adapters that know each transformers model's module paths.

>>> from raddino.models.families import family_of
>>> family_of(encoder.backbone).name
'dinov2'

Adding a family: write ``families/<name>.py`` with a :class:`BackboneFamily` subclass and add an instance
to :data:`FAMILIES` (as ``dinov3.py`` did for DINOv3); nothing outside ``raddino.models`` changes.
"""

from __future__ import annotations

from torch import nn

from raddino.models.families.base import NORM_TYPES, BackboneFamily
from raddino.models.families.dinov2 import Dinov2Family
from raddino.models.families.dinov3 import Dinov3Family

FAMILIES: tuple[BackboneFamily, ...] = (Dinov2Family(), Dinov3Family())


def family_of(backbone: nn.Module) -> BackboneFamily:
    """The family adapter for a transformers model.

    Raises:
        TypeError: no family reads this model (the message names its class and the supported ones).
    """
    for family in FAMILIES:
        if family.handles(backbone):
            return family
    supported = ", ".join(cls.__name__ for family in FAMILIES for cls in family.model_classes)
    raise TypeError(f"expected a transformers {supported}, got {type(backbone).__name__}")


def family_for_config(config: object) -> BackboneFamily:
    """The family adapter for a transformers config (to build a model from it).

    Raises:
        TypeError: no family builds models from this config class.
    """
    for family in FAMILIES:
        if family.handles_config(config):
            return family
    supported = ", ".join(cls.__name__ for family in FAMILIES for cls in family.config_classes)
    raise TypeError(f"expected a transformers {supported}, got {type(config).__name__}")


__all__ = [
    "FAMILIES",
    "NORM_TYPES",
    "BackboneFamily",
    "Dinov2Family",
    "Dinov3Family",
    "family_for_config",
    "family_of",
]
