"""One Typer option per config field: the type Typer parses, the help it shows, the value it gives.

A field whose type Typer can parse becomes such an option (``int``, ``Path``, ``Literal`` of words as
choices, ``bool`` as ``--flag/--no-flag``, lists repeatable); any other (``Literal[8, 16]``, ``bool |
Literal["auto"]``, a mapping) takes one YAML value, read as ``key=value`` would read it.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin

import typer
import yaml

from raddino.cli.app import fail
from raddino.cli.fields import Leaf
from raddino.config import load_yaml

_SCALARS = (str, int, float, Path)


def without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            return options[0]
    return annotation


def is_list(annotation: Any) -> bool:
    return get_origin(without_none(annotation)) in (list, tuple, Sequence)


def option_type(annotation: Any) -> Any:
    """The Python type Typer should parse; None when the option takes one YAML value instead
    (mappings, unions of several types, ``Literal`` of numbers, fixed-length tuples)."""
    annotation = without_none(annotation)
    origin = get_origin(annotation)
    if origin is Literal:
        return _choices(annotation)
    if annotation in _SCALARS or annotation is bool:
        return annotation
    if origin in (list, tuple, Sequence) and get_args(annotation):
        inner = without_none(get_args(annotation)[0])
        if origin is tuple and len(get_args(annotation)) > 1 and get_args(annotation)[-1] is not Ellipsis:
            return None  # fixed-length tuples: one YAML list
        if get_origin(inner) is Literal:
            choices = _choices(inner)
            return None if choices is None else list[choices]  # type: ignore[valid-type]
        if inner in _SCALARS:
            return list[inner]  # type: ignore[valid-type]
    return None


@functools.cache
def _words(words: tuple[str, ...]) -> type[enum.Enum]:
    """An Enum of some words, which Typer shows and checks as choices."""
    return enum.Enum("Choice", {word: word for word in words}, type=str)  # type: ignore[return-value]


def _choices(annotation: Any) -> type[enum.Enum] | None:
    values = get_args(annotation)
    if not all(isinstance(value, str) for value in values):
        return None  # Literal[8, 16]: one YAML value
    return _words(values)


def _metavar(annotation: Any) -> str:
    """How a YAML-valued option's value looks: its choices where it has some (``[8|16]``)."""
    words: list[str] = []
    annotation = without_none(annotation)
    union = get_origin(annotation) in (typing.Union, types.UnionType)
    for option in get_args(annotation) if union else (annotation,):
        if get_origin(option) is Literal:
            words.extend(str(value) for value in get_args(option))
        elif option is bool:
            words.extend(("true", "false"))
        else:
            return "<yaml>"
    return f"<{'|'.join(words)}>"


def _literal(text: str) -> str:
    """``text`` as printed, where Typer renders help with rich: ``[q_proj, v_proj]`` is not a style tag."""
    try:
        from rich.markup import escape
    except ImportError:  # without rich, Typer prints help as it is
        return text
    return escape(text)


def help_text(leaf: Leaf) -> str:
    text = (leaf.doc or leaf.key.replace("_", " ")).replace("``", "")
    shown = leaf.default
    if shown is dataclasses.MISSING or shown in ("", None) or shown == []:
        return _literal(text)
    if isinstance(shown, (list, tuple)):
        shown = ", ".join(str(v) for v in shown)
    return _literal(f"{text} (default: {shown})")


def param_name(key: str) -> str:
    return key.replace(".", "__")


def _plain(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


@dataclass(frozen=True)
class FieldOption:
    """One generated option: the field it sets and how its given value becomes the field's."""

    leaf: Leaf
    name: str  # the Python parameter name
    flags: tuple[str, ...]
    python_type: Any
    choices: Mapping[str, Any] | None = None
    hidden: bool = False
    negated: bool = False  # a lone flag that sets the (boolean) field to False

    def parameter(self) -> inspect.Parameter:
        python_type, flags = self.python_type, list(self.flags)
        if python_type is bool and not self.negated:
            flags[0] = f"{flags[0]}/--no-{flags[0][2:]}"
        metavar = None
        if self.choices is not None:
            python_type = _words(tuple(self.choices))
        elif python_type is None:
            python_type, metavar = str, _metavar(self.leaf.annotation)
        option = typer.Option(
            *flags, help=help_text(self.leaf), show_default=False, metavar=metavar, hidden=self.hidden
        )
        return inspect.Parameter(
            self.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[python_type | None, option],
        )

    def value(self, given: Any) -> Any:
        """The field's value from the option's (``None``: not given)."""
        if given is None or given == () or given == []:
            return None
        if self.negated:
            return not given
        if self.choices is not None:
            return self.choices[_plain(given)]
        if self.python_type is None:
            try:
                return load_yaml(given) if given.strip() else ""
            except yaml.YAMLError as error:
                raise fail(f"{self.flags[0]} {given!r}: not a valid YAML value") from error
        return _plain(given)
