"""The Typer application that sub-command modules register on, and the helpers every command uses."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Annotated, Any, TypeVar

import typer

from raddino import __version__
from raddino.config import ConfigError, load_config

T = TypeVar("T")

app = typer.Typer(
    name="raddino",
    help="RAD-DINO for your own chest X-rays: prepare, pre-train, export, embed and evaluate encoders.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"raddino {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log debug messages.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``message`` to stderr and return an Exit to raise (``raise fail(...)``)."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def load_settings(
    cls: type[T], config: str | None, overrides: list[str] | None, values: Mapping[str, Any]
) -> T:
    """A command's typed config from ``--config``, the options given and ``--set``; a bad key exits 2."""
    try:
        return load_config(cls, config, overrides or (), values)
    except ConfigError as error:
        raise fail(str(error)) from error
