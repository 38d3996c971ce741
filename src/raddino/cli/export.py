"""``raddino export``: convert an encoder between the transformers folder and the DINOv2 format."""

from __future__ import annotations

from raddino.cli.app import app
from raddino.cli.generate import ConfigCommand, register_deferred

HELP = "Convert an encoder: transformers folder <-> DINOv2 state dict (+ DINO head), as in the release."


def _spec() -> ConfigCommand:
    from raddino.models.export import ExportConfig, run_export

    return ConfigCommand(
        "export",
        ExportConfig,
        run_export,
        arguments=("model", "out"),
        short={"format": "-f"},
        errors=(ValueError, OSError),
    )


register_deferred(app, "export", _spec, help=HELP)
