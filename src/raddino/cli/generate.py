"""Sub-commands generated from their config dataclasses, so options cannot drift from the library.

Every leaf field of a command's config (``epochs``, ``features.model``) is reachable three ways, applied in
this order: a ``--config FILE.yaml`` section, an option, and ``key=value`` overrides (``--set key=value`` or
bare ``key=value`` words after the arguments, as DINOv2's ``train.py`` takes them). The top-level fields
become options named after the field (``batch_size`` → ``--batch-size``; booleans as ``--flag/--no-flag``,
``Literal`` fields as choices, lists repeatable); a nested field becomes an option only when the command
promotes it (``features.model`` → ``--model``). A field whose type has no plain option form (``Literal[8,
16]``, ``bool | Literal["auto"]``, a mapping) takes one YAML value, read as ``key=value`` would read it.
Each option's help is the field's docstring in the dataclass (see :mod:`raddino.cli.fields`), and its
default is the dataclass's, so ``--help`` says what the library does.

Typer builds a command from a function's signature; here the signature is made from the fields
(``__signature__``), and the function turns the given options back into a dotted tree for
:func:`raddino.config.load_config`. Commands are registered with :func:`register_deferred`, which builds
a command from its spec only when that command runs, so ``raddino --help`` imports no library (torch
takes seconds to import).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import re
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import typer
import typer.main
from typer.core import TyperCommand

from raddino.cli.app import fail, load_settings
from raddino.cli.fields import Leaf, field_docs, leaves
from raddino.cli.options import FieldOption, help_text, is_list, option_type, param_name

_SETTING = re.compile(r"[A-Za-z_][\w.]*=")  # a key=value word among a list argument's words

__all__ = ["ConfigCommand", "Leaf", "Outcome", "field_docs", "leaves", "register", "register_deferred"]


@dataclass
class Outcome:
    """What a command prints and the exit status it ends with.

    Attributes:
        text: Printed on stdout (nothing when empty).
        warning: Printed on stderr (nothing when empty), e.g. where the failures are listed.
        exit_code: The command's exit status.
    """

    text: str = ""
    warning: str = ""
    exit_code: int = 0

    def __str__(self) -> str:
        return self.text


@dataclass
class ConfigCommand:
    """How one sub-command maps onto its config dataclass.

    Attributes:
        name: The sub-command (``probe``).
        config: Its config dataclass.
        run: The library call; its result is printed (``str``; a ``warning`` attribute on stderr) and,
            when it has an integer ``exit_code``, that becomes the exit status.
        arguments: Fields given as positional arguments, in order (``input``); a list field takes every
            remaining word, where ``key=value`` words are settings.
        optional_arguments: Of those, the ones that may be left out (given by ``--config`` instead).
        promote: Nested fields shown as options, with the option's name (``{"features.model": "model"}``).
        rename: Top-level fields shown under another option name (``{"num_workers": "workers"}``).
        short: One-letter aliases (``{"out": "-o"}``).
        aliases: Earlier spellings still accepted but not shown (``{"--num-workers": "num_workers"}``).
        negations: Earlier flags, not shown, that set a boolean field to False (``{"--restart": "resume"}``).
        choices: Words an option takes instead of the field's own values (``{"voi": {"on": True}}``).
        hide: Top-level fields left to ``key=value`` only.
        docs: Help in place of a field's docstring where this command uses the field its own way
            (``{"features.model": "default: the encoder the report model was trained on"}``).
        errors: Exceptions that mean bad input: printed as one line, exit status 2.
        error_codes: Exceptions printed as one line with another exit status (``{LockError: 3}``);
            checked before ``errors``.
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
    aliases: Mapping[str, str] = field(default_factory=dict)
    negations: Mapping[str, str] = field(default_factory=dict)
    choices: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    hide: tuple[str, ...] = ()
    docs: Mapping[str, str] = field(default_factory=dict)
    errors: tuple[type[BaseException], ...] = (ValueError, OSError)
    error_codes: Mapping[type[BaseException], int] = field(default_factory=dict)
    check: Callable[[Any], None] | None = None

    def options(self) -> list[FieldOption]:
        """One option per exposed field, then one hidden option per earlier spelling."""
        found: list[FieldOption] = []
        for leaf in leaves(self.config):
            top_level = "." not in leaf.key and leaf.key not in self.hide
            if leaf.key in self.arguments or not (top_level or leaf.key in self.promote):
                continue
            option_name = self.promote.get(leaf.key) or self.rename.get(leaf.key) or leaf.key
            flags = ("--" + option_name.replace("_", "-"), *filter(None, [self.short.get(leaf.key)]))
            choices = self.choices.get(leaf.key)
            if leaf.key in self.docs:
                leaf = dataclasses.replace(leaf, doc=self.docs[leaf.key])
            found.append(
                FieldOption(leaf, param_name(leaf.key), flags, option_type(leaf.annotation), choices)
            )
        by_key = {option.leaf.key: option for option in found}
        for index, (flag, key) in enumerate(self.aliases.items()):
            old = dataclasses.replace(
                by_key[key], name=f"earlier_spelling_{index}", flags=(flag,), hidden=True
            )
            found.append(old)
        for index, (flag, key) in enumerate(self.negations.items()):
            name = f"earlier_negation_{index}"
            negation = dataclasses.replace(by_key[key], name=name, flags=(flag,), hidden=True, negated=True)
            found.append(negation)
        return found

    def parameters(self) -> list[inspect.Parameter]:
        """The command's signature: arguments, one option per exposed field, ``--config``, ``--set``."""
        by_key = {leaf.key: leaf for leaf in leaves(self.config)}
        params: list[inspect.Parameter] = []
        for key in self.arguments:
            leaf = by_key[key]
            optional = key in self.optional_arguments
            words: Any = list[str] if is_list(leaf.annotation) else str
            help = help_text(leaf) + (" key=value words among them are settings." if words is not str else "")
            argument = typer.Argument(help=help, show_default=False, metavar=key.upper())
            params.append(
                inspect.Parameter(
                    key,
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    default=None if optional else inspect.Parameter.empty,
                    annotation=Annotated[words | None if optional else words, argument],
                )
            )
        if not any(is_list(by_key[key].annotation) for key in self.arguments):
            help = "key=value settings (DINOv2 style), applied last."
            settings = typer.Argument(help=help, show_default=False, metavar="KEY=VALUE")
            params.append(
                inspect.Parameter(
                    "assignments",
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    default=None,
                    annotation=Annotated[list[str] | None, settings],
                )
            )
        params.extend(option.parameter() for option in self.options())
        params.extend(_config_parameters())
        return params

    def values(self, given: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """The dotted values of the given arguments and options, and the ``key=value`` words among
        a list argument's words."""
        values: dict[str, Any] = {}
        settings: list[str] = []
        by_key = {leaf.key: leaf for leaf in leaves(self.config)}
        for key in self.arguments:
            words = given.pop(key, None)
            if isinstance(words, list) and is_list(by_key[key].annotation):
                settings.extend(word for word in words if _SETTING.match(word))
                words = [word for word in words if not _SETTING.match(word)] or None
            values[key] = words
        for option in self.options():  # shown spellings first: they win over earlier ones
            value = option.value(given.pop(option.name, None))
            if value is not None and values.get(option.leaf.key) is None:
                values[option.leaf.key] = value
        return values, settings


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


def _echo(result: Any) -> None:
    if result is None:
        return
    text = str(result)
    if text:
        typer.echo(text)
    warning = getattr(result, "warning", "")
    if isinstance(warning, str) and warning:
        typer.echo(warning, err=True)


def _command(spec: ConfigCommand, help: str | None) -> Callable[..., None]:
    """The function Typer turns into ``spec``'s command: its signature is made from the fields."""
    caught = (*spec.error_codes, *spec.errors)

    def command(**given: Any) -> None:
        config_file = given.pop("config_file", None)
        overrides = [*(given.pop("overrides", None) or ()), *(given.pop("assignments", None) or ())]
        values, settings = spec.values(given)
        for word in overrides:
            if "=" not in word:
                raise fail(f"'{word}': expected key=value (extra arguments are settings)")
        settings_given: Any = load_settings(spec.config, config_file, [*settings, *overrides], values)
        try:
            if spec.check is not None:
                spec.check(settings_given)
            result = spec.run(settings_given)
        except caught as error:
            lines = str(error).strip().splitlines()
            code = next((code for kind, code in spec.error_codes.items() if isinstance(error, kind)), 2)
            raise fail(lines[0] if lines else type(error).__name__, code=code) from error
        _echo(result)
        code = getattr(result, "exit_code", 0)
        if isinstance(code, int) and code:
            raise typer.Exit(code)

    command.__signature__ = inspect.Signature(spec.parameters())  # type: ignore[attr-defined]
    command.__doc__ = help or (spec.config.__doc__ or "").strip()
    command.__name__ = spec.name.replace("-", "_")
    return command


def register(app: typer.Typer, spec: ConfigCommand, help: str | None = None) -> Callable[..., None]:
    """Add ``spec`` to ``app`` as a sub-command; returns the generated function (for tests)."""
    command = _command(spec, help)
    app.command(spec.name)(command)
    return command


class _Deferred(TyperCommand):
    """A sub-command built from its spec only when it is run or its help is asked for.

    Listing the commands (``raddino --help``) shows the help given at registration; the config
    dataclass, and the library that defines it (often torch), is imported for the one command used.
    """

    build: Callable[[], TyperCommand]
    spec: Callable[[], ConfigCommand]  # what ``build`` builds from (for checks over every command)

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        return self.build().make_context(info_name, args, parent=parent, **extra)


def register_deferred(app: typer.Typer, name: str, spec: Callable[[], ConfigCommand], help: str) -> None:
    """Add the command ``spec()`` describes, calling ``spec`` (and importing its config) only when used.

    Args:
        app: The application (or sub-application) to add it to.
        name: The sub-command's name, as ``spec().name``.
        spec: Builds the command's ``ConfigCommand``; import the library inside it.
        help: The command's help, shown in the command list and atop its own ``--help``.
    """

    @functools.cache
    def build() -> TyperCommand:
        made = spec()
        single = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
        single.command(made.name)(_command(made, help))
        return typing.cast(TyperCommand, typer.main.get_command(single))  # one command: not a group

    methods = {"build": staticmethod(build), "spec": staticmethod(spec)}
    deferred = type(f"Deferred_{name.replace('-', '_')}", (_Deferred,), methods)

    def placeholder() -> None:  # never called: the built command replaces it when the command runs
        raise AssertionError(name)

    app.command(name, cls=deferred, help=help, add_help_option=False)(placeholder)
