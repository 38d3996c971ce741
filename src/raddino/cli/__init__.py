"""The ``raddino`` command. Each sub-command lives in its own module here and is a thin layer over a
library function that a notebook can call too."""

from __future__ import annotations

import importlib

from raddino.cli.app import app

# Modules that register sub-commands on ``app`` when imported. A module listed here that does not
# exist yet is skipped, so sub-commands can land one at a time.
COMMAND_MODULES = (
    "raddino.cli.embed",
    "raddino.cli.prepare",
    "raddino.cli.shard",
    "raddino.cli.export",
    "raddino.cli.phantoms",
    "raddino.cli.manifest",
    "raddino.cli.demo",
    "raddino.cli.evaluate",
    "raddino.cli.report",
    "raddino.cli.pretrain",
    "raddino.cli.finetune",
    "raddino.cli.stats",
    "raddino.cli.viz",
    "raddino.cli.ablate",
)

for _module in COMMAND_MODULES:
    try:
        importlib.import_module(_module)
    except ModuleNotFoundError as _error:
        if _error.name != _module:
            raise


def main() -> None:
    """Entry point of the ``raddino`` console script."""
    app()


__all__ = ["app", "main"]
