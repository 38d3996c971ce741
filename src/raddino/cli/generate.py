"""Sub-commands generated from their config dataclasses, so options cannot drift from the library.

Every leaf field of a command's config (``epochs``, ``features.model``) is reachable three ways, applied in
this order: a ``--config FILE.yaml`` section, an option, and ``key=value`` overrides (``--set key=value`` or
bare ``key=value`` words after the arguments, as DINOv2's ``train.py`` takes them). The top-level fields
become options named after the field (``batch_size`` → ``--batch-size``; booleans as ``--flag/--no-flag``,
``Literal`` fields as choices, lists repeatable); a nested field becomes an option only when the command
promotes it (``features.model`` → ``--model``). Each option's help is the field's docstring in the
dataclass, and its default is the dataclass's, so ``--help`` says what the library does.

Typer builds a command from a function's signature; here the signature is made from the fields
(``__signature__``), and the function turns the given options back into a dotted tree for
:func:`raddino.config.load_config`.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import inspect
import textwrap
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

import typer

from raddino.cli.app import fail, load_settings

_SCALARS = (str, int, float, Path)


@dataclass(frozen=True)
class Leaf:
    """One settable field of a config: its dotted key, type, default and docstring."""

    key: str
    annotation: Any
    default: Any
    doc: str


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """The docstrings written under a dataclass's fields (``x: int = 0`` then ``\"\"\"...\"\"\"``).

    Python keeps no such docstrings at run time, so they are read from the class's source; base classes
    contribute theirs first. A class whose source cannot be read gives none.
    """
    docs: dict[str, str] = {}
    for base in reversed(cls.__mro__[1:]):
        if dataclasses.is_dataclass(base):
            docs.update(field_docs(base))
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError, SyntaxError):
        return docs
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for statement, following in zip(body, [*body[1:], None], strict=True):
        if not (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)):
            continue
        if (
            isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[statement.target.id] = " ".join(following.value.value.split())
    return docs


def _default(item: dataclasses.Field[Any]) -> Any:
    if item.default is not dataclasses.MISSING:
        return item.default
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return dataclasses.MISSING


def _is_config(annotation: Any) -> bool:
    return isinstance(annotation, type) and dataclasses.is_dataclass(annotation)


def leaves(cls: type, prefix: str = "") -> list[Leaf]:
    """Every non-dataclass field of ``cls``, nested sections flattened to dotted keys, in field order."""
    hints = get_type_hints(cls)
    docs = field_docs(cls)
    found: list[Leaf] = []
    for item in dataclasses.fields(cls):
        annotation = hints[item.name]
        if _is_config(annotation):
            found.extend(leaves(annotation, f"{prefix}{item.name}."))
        else:
            found.append(Leaf(prefix + item.name, annotation, _default(item), docs.get(item.name, "")))
    return found


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in get_args(annotation) if a is not type(None)]
        if len(options) == 1:
            return options[0]
    return annotation


def _option_type(annotation: Any) -> Any:
    """The Python type Typer should parse; None when the field can only be set with ``key=value``
    (mappings, unions of several types, fixed-length tuples)."""
    annotation = _without_none(annotation)
    origin = get_origin(annotation)
    if origin is Literal:
        return _choices(annotation)
    if annotation in _SCALARS or annotation is bool:
        return annotation
    if origin in (list, tuple, Sequence) and get_args(annotation):
        inner = _without_none(get_args(annotation)[0])
        if origin is tuple and len(get_args(annotation)) > 1 and get_args(annotation)[-1] is not Ellipsis:
            return None  # fixed-length tuples: key=[a, b]
        if get_origin(inner) is Literal:
            choices = _choices(inner)
            return None if choices is None else list[choices]  # type: ignore[valid-type]
        if inner in _SCALARS:
            return list[inner]  # type: ignore[valid-type]
    return None


@functools.cache
def _choices(annotation: Any) -> type[enum.Enum] | None:
    """An Enum of a ``Literal`` of strings, which Typer shows and checks as choices."""
    values = get_args(annotation)
    if not all(isinstance(value, str) for value in values):
        return None  # Literal[1, 2]: key=value only
    return enum.Enum("Choice", {value: value for value in values}, type=str)  # type: ignore[return-value]


def _help(leaf: Leaf) -> str:
    text = leaf.doc or leaf.key.replace("_", " ")
    shown = leaf.default
    if shown is dataclasses.MISSING or shown in ("", None) or shown == []:
        return text
    if isinstance(shown, (list, tuple)):
        shown = ", ".join(str(v) for v in shown)
    return f"{text} (default: {shown})"


def _parameter(leaf: Leaf, flag: str, short: str | None) -> inspect.Parameter | None:
    python_type = _option_type(leaf.annotation)
    if python_type is None:
        return None
    names = [f"{flag}/--no-{flag[2:]}"] if python_type is bool else [flag]
    if short:
        names.append(short)
    option = typer.Option(*names, help=_help(leaf), show_default=False)
    return inspect.Parameter(
        _param_name(leaf.key),
        inspect.Parameter.KEYWORD_ONLY,
        default=None,
        annotation=Annotated[python_type | None, option],
    )


def _param_name(key: str) -> str:
    return key.replace(".", "__")


def _nested(values: Mapping[str, Any]) -> dict[str, Any]:
    """Given options (``None`` = not given, an empty repeatable = not given) as dotted keys."""

    def plain(value: Any) -> Any:
        if isinstance(value, enum.Enum):
            return value.value
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        return value

    return {
        key.replace("__", "."): plain(value)
        for key, value in values.items()
        if value is not None and value != () and value != []
    }


@dataclass
class ConfigCommand:
    """How one sub-command maps onto its config dataclass.

    Attributes:
        name: The sub-command (``probe``).
        config: Its config dataclass.
        run: The library call; its result is printed (``str``) and, when it has an integer
            ``exit_code``, becomes the exit status.
        arguments: Fields given as positional arguments, in order (``input``).
        optional_arguments: Of those, the ones that may be left out (given by ``--config`` instead).
        promote: Nested fields shown as options, with the option's name (``{"features.model": "model"}``).
        rename: Top-level fields shown under another option name (``{"num_workers": "workers"}``).
        short: One-letter aliases (``{"out": "-o"}``).
        hide: Top-level fields left to ``key=value`` only.
        errors: Exceptions that mean bad input: printed as one line, exit status 2.
        check: Called with the merged config before ``run``; raise one of ``errors`` to refuse it.
    """

    name: str
    config: type
    run: Callable[[Any], Any]
    arguments: tuple[str, ...] = ()
    optional_arguments: tuple[str, ...] = ()
    promote: Mapping[str, str] = field(default_factory=dict)
    rename: Mapping[str, str] = field(default_factory=dict)
    short: Mapping[str, str] = field(default_factory=dict)
    hide: tuple[str, ...] = ()
    errors: tuple[type[BaseException], ...] = (ValueError, OSError)
    check: Callable[[Any], None] | None = None

    def parameters(self) -> list[inspect.Parameter]:
        """The command's signature: arguments, one option per exposed field, ``--config``, ``--set``."""
        by_key = {leaf.key: leaf for leaf in leaves(self.config)}
        params: list[inspect.Parameter] = []
        for key in self.arguments:
            leaf = by_key[key]
            optional = key in self.optional_arguments
            argument = typer.Argument(help=leaf.doc or key, show_default=False)
            params.append(
                inspect.Parameter(
                    key,
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    default=None if optional else inspect.Parameter.empty,
                    annotation=Annotated[str | None if optional else str, argument],
                )
            )
        params.append(
            inspect.Parameter(
                "assignments",
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                default=None,
                annotation=Annotated[
                    list[str] | None,
                    typer.Argument(
                        help="key=value settings (DINOv2 style), applied last.", show_default=False
                    ),
                ],
            )
        )
        exposed = [
            (leaf, self.promote.get(leaf.key) or self.rename.get(leaf.key) or leaf.key)
            for leaf in by_key.values()
            if leaf.key not in self.arguments
            and ((("." not in leaf.key) and leaf.key not in self.hide) or leaf.key in self.promote)
        ]
        for leaf, option_name in exposed:
            flag = "--" + option_name.replace("_", "-")
            parameter = _parameter(leaf, flag, self.short.get(leaf.key))
            if parameter is not None:
                params.append(parameter)
        params.extend(_config_parameters())
        return params


def _config_parameters() -> list[inspect.Parameter]:
    config = typer.Option(
        "--config", "-c", help="YAML file with this command's settings.", show_default=False
    )
    overrides = typer.Option(
        "--set", "-s", help="Dotted setting key=value (repeatable), applied last.", show_default=False
    )
    return [
        inspect.Parameter(
            "config_file",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[str | None, config],
        ),
        inspect.Parameter(
            "overrides",
            inspect.Parameter.KEYWORD_ONLY,
            default=None,
            annotation=Annotated[list[str] | None, overrides],
        ),
    ]


def register(app: typer.Typer, spec: ConfigCommand, help: str | None = None) -> Callable[..., None]:
    """Add ``spec`` to ``app`` as a sub-command; returns the generated function (for tests)."""

    def command(**given: Any) -> None:
        config_file = given.pop("config_file", None)
        overrides = [*(given.pop("overrides", None) or ()), *(given.pop("assignments", None) or ())]
        for word in overrides:
            if "=" not in word:
                raise fail(f"'{word}': expected key=value (extra arguments are settings)")
        settings: Any = load_settings(spec.config, config_file, overrides, _nested(given))
        try:
            if spec.check is not None:
                spec.check(settings)
            result = spec.run(settings)
        except spec.errors as error:
            lines = str(error).strip().splitlines()
            raise fail(lines[0] if lines else type(error).__name__) from error
        if result is not None:
            typer.echo(str(result))
        code = getattr(result, "exit_code", 0)
        if isinstance(code, int) and code:
            raise typer.Exit(code)

    command.__signature__ = inspect.Signature(spec.parameters())  # type: ignore[attr-defined]
    command.__doc__ = help or (spec.config.__doc__ or "").strip()
    command.__name__ = spec.name.replace("-", "_")
    app.command(spec.name)(command)
    return command
