"""Typed configuration: dataclasses loaded from YAML, with dotted command-line overrides.

Every command has one config dataclass. ``load_config`` builds it from (in increasing priority) the
dataclass defaults, a YAML file, and ``key.sub=value`` overrides; an unknown or misspelt key fails with
its full dotted name. ``save_config`` writes the merged result next to a command's outputs.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections import abc
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

import yaml

from raddino.io.atomic import atomic_write_text

T = TypeVar("T")
_YAML11_MISSED_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class ConfigError(ValueError):
    """A configuration file or override is invalid; the message names the key and the source."""


class DuplicateKeyError(yaml.YAMLError):
    """A YAML mapping gives the same key twice; the message names the key and both lines."""


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error, not "later wins"."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *defaults" merges; it is not a key
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key; the base class reports it
                break
            if first is not None:
                where = f"line {line}" if first == line else f"lines {first} and {line}"
                raise DuplicateKeyError(f"key {key!r} appears twice ({where}); keep one")
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML error in one line: where it is and what is wrong (PyYAML's own text spans several lines)."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        return f"line {mark.line + 1}, column {mark.column + 1}: {error.problem}"
    return " ".join(str(error).split())


def load_yaml(text: str) -> Any:
    """Parse YAML like ``yaml.safe_load``, refusing a mapping that repeats a key (PyYAML keeps the last).

    Raises:
        yaml.YAMLError: invalid YAML, or a repeated key (the message names it and both lines).
    """
    return yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass: no arbitrary objects


def _suggest(key: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _coerce(value: Any, annotation: Any, key: str, source: str) -> Any:
    """Check ``value`` against a type annotation, converting where the conversion is lossless."""
    origin = get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(annotation)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, key, source)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(f"{source}: key '{key}': {value!r} matches none of {annotation}")
    if origin is typing.Literal:
        if value not in get_args(annotation):
            raise ConfigError(f"{source}: key '{key}': {value!r} is not one of {list(get_args(annotation))}")
        return value
    if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: key '{key}' must be a mapping, got {value!r}")
        return _build(annotation, value, f"{key}.", source)
    if origin in (list, tuple, typing.Sequence, abc.Sequence) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: key '{key}' must be a list, got {value!r}")
        args = get_args(annotation)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{source}: key '{key}' needs {len(args)} values, got {len(value)}")
            return tuple(
                _coerce(v, a, f"{key}[{i}]", source) for i, (v, a) in enumerate(zip(value, args, strict=True))
            )
        inner = args[0] if args else Any
        items = [_coerce(v, inner, f"{key}[{i}]", source) for i, v in enumerate(value)]
        return items if origin is list or annotation is list else tuple(items)
    if origin is dict or annotation is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{source}: key '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if annotation is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: key '{key}' must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: key '{key}' must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, str) and _YAML11_MISSED_FLOAT.fullmatch(value.strip()):
            value = float(value)  # "1e-3": YAML 1.1 (PyYAML) reads exponents without a dot as text
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: key '{key}' must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: key '{key}' must be a string, got {value!r}")
        return value
    if annotation is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{source}: key '{key}' must be a path, got {value!r}")
        return Path(value)
    return value


def _build(cls: type[T], values: Mapping[str, Any], prefix: str, source: str) -> T:
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            raise ConfigError(f"{source}: unknown key '{prefix}{key}'{_suggest(key, fields)}")
        kwargs[key] = _coerce(value, hints[key], f"{prefix}{key}", source)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{source}: {prefix.rstrip('.') or cls.__name__}: {error}") from error


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{dotted}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def _deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def config_to_dict(config: Any) -> dict[str, Any]:
    """A plain, YAML-safe dict of a config dataclass (paths as strings, tuples as lists)."""

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(config)


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """Turn ``["optim.base_lr=1e-3", "crops.local_crops_number=0"]`` into a nested dict.

    Values are parsed as YAML scalars/lists (``1e-3`` → float, ``[0.1,0.5]`` → list, ``null`` → None).
    """
    tree: dict[str, Any] = {}
    for override in overrides:
        if "=" not in override:
            raise ConfigError(f"override '{override}' must look like key=value")
        key, raw = override.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override '{override}' has an empty key")
        try:
            value = load_yaml(raw) if raw.strip() else ""
        except yaml.YAMLError as error:
            raise ConfigError(
                f"override '{override}': value is not valid YAML: {_yaml_problem(error)}"
            ) from error
        _set_dotted(tree, key, value)
    return tree


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    values: Mapping[str, Any] | None = None,
) -> T:
    """Build a config dataclass from defaults, a YAML file, explicit values and dotted overrides.

    Args:
        cls: The config dataclass.
        path: Optional YAML file; its keys must be fields of ``cls`` (nested sections for nested dataclasses).
        overrides: ``key.sub=value`` strings, applied last.
        values: Explicit values (e.g. from command-line options), applied after the file and before
            ``overrides``; ``None`` values are ignored so unset options keep the file's value.

    Raises:
        ConfigError: naming the file or override and the offending key.
    """
    tree: dict[str, Any] = {}
    source = "config"
    if path is not None:
        path = Path(path)
        source = str(path)
        try:
            loaded = load_yaml(path.read_text(encoding="utf-8"))
        except OSError as error:
            raise ConfigError(f"{path}: cannot read config file: {error.strerror or error}") from error
        except DuplicateKeyError as error:
            raise ConfigError(f"{path}: {error}") from error
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML: {_yaml_problem(error)}") from error
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(loaded).__name__}")
        tree = loaded
    if values:
        explicit: dict[str, Any] = {}
        for key, value in values.items():
            if value is not None:
                _set_dotted(explicit, key, value)
        tree = _deep_merge(tree, explicit)
    override_tree = parse_overrides(overrides)
    if override_tree:
        tree = _deep_merge(tree, override_tree)
        source = f"{path} + overrides" if path is not None else "overrides"
    translate = getattr(cls, "translate_config_tree", None)  # e.g. DINOv2's own files for pretrain
    if translate is not None:
        tree = translate(tree, source)
    return _build(cls, tree, "", source)


def save_config(config: Any, path: str | Path) -> Path:
    """Write the merged config as YAML, atomically; returns the path written."""
    text = yaml.safe_dump(config_to_dict(config), sort_keys=False)
    return atomic_write_text(Path(path), text)
