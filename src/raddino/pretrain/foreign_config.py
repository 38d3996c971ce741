"""DINOv2's and DINOv3's own train configs, accepted as they are by ``raddino pretrain --config``.

A config is *foreign* when it holds a key of :data:`~raddino.pretrain.foreign_keys.RULES` that is not
one of our fields (``MODEL``, ``compute_precision``, ``student.patch_size``, ``schedules``, …) or a
``student.arch`` named the way DINOv2/DINOv3 name them (``vit_large``); our own files hold neither, so
they pass through unchanged. A foreign config is merged onto its family's defaults (the values of its
``ssl_default_config.yaml`` that differ from ours, as those codes merge a train file onto it), and then
every key is mapped to our fields, honoured as a no-op or refused with its reason
(``docs/config_keys.md``). Keys in neither table still fail as unknown, so a misspelling is caught.
Where a foreign key and our own name set the same field, ours wins (``--set compute.mixed_precision=fp32``
over ``compute_precision``). The merged config saved as ``RUN/config.yaml`` holds only our names.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import re
import types
import typing
from collections.abc import Mapping
from typing import Any, get_args, get_origin, get_type_hints

from raddino.config import ConfigError
from raddino.models.presets import PRESETS
from raddino.pretrain.foreign_keys import NULL_FROM_SCHEDULE, RULES, Context, Decision, arch_rule
from raddino.pretrain.foreign_keys import honoured as _honoured
from raddino.pretrain.foreign_keys import mapped as _mapped
from raddino.pretrain.foreign_keys import refused as _refused

LOG = logging.getLogger(__name__)

DINOV3_MARKERS = (
    "MODEL.META_ARCHITECTURE",
    "compute_precision.param_dtype",
    "schedules.*",
    "checkpointing.*",
    "student.n_storage_tokens",
    "student.pos_embed_type",
    "student.ffn_ratio",
    "crops.rgb_mean",
    "dino.head_norm_last_layer",
    "optim.optimizer",
)
"""Keys only DINOv3's configs have; any of them makes a foreign config DINOv3's."""

# The values of each family's ssl_default_config.yaml that differ from our defaults, in its own names:
# a train file is merged onto them, as DINOv2's and DINOv3's setup_config merge it onto that file.
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "dinov2": {
        "student.arch": "vit_large",
        "student.patch_size": 16,
        "student.drop_path_rate": 0.3,
        "train.batch_size_per_gpu": 64,
        "train.num_workers": 10,
        "optim.base_lr": 0.004,
        "crops.global_crops_scale": [0.32, 1.0],
        "crops.local_crops_scale": [0.05, 0.32],
        "crops.global_crops_size": 224,
        "crops.local_crops_size": 96,
        "evaluation.eval_period_iterations": 12500,
    },
    "dinov3": {
        "student.arch": "vit_large",
        "student.patch_size": 16,
        "student.drop_path_rate": 0.3,
        "student.n_storage_tokens": 0,
        "student.mask_k_bias": False,
        "ibot.separate_head": True,
        "train.batch_size_per_gpu": 64,
        "train.num_workers": 10,
        "train.centering": "sinkhorn_knopp",
        "optim.lr": 0.001,
        "crops.global_crops_scale": [0.32, 1.0],
        "crops.local_crops_scale": [0.05, 0.32],
        "crops.global_crops_size": 224,
        "crops.local_crops_size": 96,
        "evaluation.eval_period_iterations": 12500,
    },
}
_DATASET_STRING = re.compile(r"(ImageNet|ImageNet22k)(:\w+=[^:]*)*|\w+(:\w+=[^:]*)+")


def _open_fields(cls: type) -> tuple[set[str], set[str]]:
    """Our dotted leaf keys, and the prefixes under which any key is ours (dict-typed fields)."""
    leaves: set[str] = set()
    open_prefixes: set[str] = set()

    def walk(kind: type, prefix: str) -> None:
        hints = get_type_hints(kind)
        for item in dataclasses.fields(kind):
            annotation = hints[item.name]
            if get_origin(annotation) in (typing.Union, types.UnionType):
                options = [a for a in get_args(annotation) if a is not type(None)]
                annotation = options[0] if len(options) == 1 else annotation
            key = f"{prefix}{item.name}"
            if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
                leaves.add(key)  # a section given as null
                walk(annotation, f"{key}.")
            else:
                leaves.add(key)
                if annotation is dict or get_origin(annotation) is dict:
                    open_prefixes.add(f"{key}.")

    walk(cls, "")
    return leaves, open_prefixes


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted leaves of a nested mapping (lists and empty mappings are leaves)."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The nested mapping of dotted leaves."""
    tree: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = tree
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return tree


def _rule_for(key: str) -> Any:
    return next((rule for pattern, rule in RULES if fnmatch.fnmatchcase(key, pattern)), None)


def _is_foreign_arch(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("vit_")


def family_of(flat: Mapping[str, Any]) -> str:
    """``dinov3`` when a DINOv3-only key is present, else ``dinov2``."""
    dinov3 = any(fnmatch.fnmatchcase(key, marker) for key in flat for marker in DINOV3_MARKERS)
    return "dinov3" if dinov3 else "dinov2"


def _own_value(key: str, value: Any, context: Context) -> Decision | None:
    """Our field with a value only the foreign families use (``vit_large``, ``''``, a null schedule)."""
    if key == "student.arch" and _is_foreign_arch(value):
        return arch_rule()(value, context)
    if key == "student.pretrained_weights" and value == "":
        return _mapped({key: None}, "'' is DINOv2's none")
    if (
        key == "train.dataset_path"
        and isinstance(value, str)
        and (_DATASET_STRING.fullmatch(value) or re.fullmatch(r"<[^>]*>", value))
    ):
        return _refused("a DINOv2/v3 dataset name, not a path: give an image folder or manifest (--data)")
    if key == "train.dataset_path" and value is None:
        return _mapped({key: ""}, "null: give --data")
    if key in NULL_FROM_SCHEDULE and value is None:
        name = NULL_FROM_SCHEDULE[key]
        if context.group(f"schedules.{name}"):
            return _honoured(f"given by schedules.{name}")
        return _refused(f"null needs schedules.{name}")
    return None


def is_foreign(flat: Mapping[str, Any], cls: type) -> bool:
    """Whether a flattened config holds a foreign key or a foreign ``student.arch`` name."""
    leaves, open_prefixes = _open_fields(cls)
    for key, value in flat.items():
        ours = key in leaves or any(key.startswith(prefix) for prefix in open_prefixes)
        if not ours and _rule_for(key) is not None:
            return True
        if key == "student.arch" and _is_foreign_arch(value):
            return True
    return False


def decide(flat: Mapping[str, Any], cls: type) -> tuple[dict[str, Any], dict[str, Decision]]:
    """Our dotted keys for a foreign config, and the decision on each foreign key or value.

    Our own keys pass through; a key that is neither ours nor in the table also passes through, so that
    building the dataclass names it as unknown.
    """
    leaves, open_prefixes = _open_fields(cls)
    context = Context(dict(flat), family_of(flat), has_out="out" in leaves)
    kept: dict[str, Any] = {}
    decisions: dict[str, Decision] = {}
    for key, value in flat.items():
        ours = key in leaves or any(key.startswith(prefix) for prefix in open_prefixes)
        decision = _own_value(key, value, context) if ours else None
        rule = None if ours else _rule_for(key)
        if decision is None and rule is not None:
            decision = rule(value, context)
        if decision is None:
            kept[key] = value
        else:
            decisions[key] = decision
    return kept, decisions


def _merge(kept: dict[str, Any], decisions: Mapping[str, Decision], given: set[str], source: str) -> None:
    """Add the mapped values to ``kept``. Our own keys given in the config win over any foreign key; a
    key the config gives wins over a family default's; two given foreign keys that disagree fail."""
    by: dict[str, str] = {}
    ours_given = {key for key in given if key in kept}  # our own names, kept as the config gives them
    ordered = sorted(decisions.items(), key=lambda item: item[0] not in given)  # given keys first
    for key, decision in ordered:
        for ours, value in decision.values.items():
            if ours in ours_given and ours != key:
                continue
            if ours in by:
                if key in given and by[ours] in given and kept[ours] != value:
                    raise ConfigError(
                        f"{source}: {key}: gives {ours}={value!r} but {by[ours]} gives {kept[ours]!r}; "
                        "make them agree"
                    )
                continue
            kept[ours], by[ours] = value, key


def _defaults(flat: Mapping[str, Any], family: str) -> dict[str, Any]:
    """The family's defaults for ``flat``; none of its architecture defaults when the arch is our preset."""
    defaults = dict(FAMILY_DEFAULTS[family])
    if flat.get("student.arch") in PRESETS:
        for key in ("student.patch_size", "student.n_storage_tokens", "student.mask_k_bias"):
            defaults.pop(key, None)
    return defaults


def translate_tree(tree: Mapping[str, Any], cls: type, source: str) -> dict[str, Any]:
    """Our nested config for ``tree``: unchanged when it is ours, else every foreign key decided.

    Raises:
        ConfigError: one line naming the first refused key, its value and the reason (and how many
            more were refused), or two foreign keys that set one field differently.
    """
    flat = flatten(tree)
    if not is_foreign(flat, cls):
        return dict(tree)
    family = family_of(flat)
    merged = {**_defaults(flat, family), **flat}
    explicit = set(flat)
    kept, decisions = decide(merged, cls)
    refusals = [(key, d) for key, d in decisions.items() if d.kind == "refused" and key in explicit]
    if refusals:
        key, decision = refusals[0]
        more = (
            f" (and {len(refusals) - 1} more: {', '.join(k for k, _ in refusals[1:4])})"
            if len(refusals) > 1
            else ""
        )
        raise ConfigError(f"{source}: {key}: {merged[key]!r}: {decision.reason}{more}")
    _merge(kept, decisions, explicit, source)
    counts = {kind: sum(d.kind == kind for d in decisions.values()) for kind in ("mapped", "honoured")}
    LOG.info(
        "%s: a %s config; %d keys mapped to ours, %d honoured as no-ops (docs/config_keys.md)",
        source,
        family.upper(),
        counts["mapped"],
        counts["honoured"],
    )
    return unflatten(kept)


__all__ = ["FAMILY_DEFAULTS", "decide", "family_of", "flatten", "is_foreign", "translate_tree", "unflatten"]
