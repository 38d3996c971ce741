"""``raddino export``: convert an encoder between the transformers folder and the DINOv2 format."""

from __future__ import annotations

from raddino.cli.app import app
from raddino.cli.generate import ConfigCommand, register_deferred

HELP = (
    "Convert an encoder: transformers folder <-> DINOv2 state dict (+ DINO head), as in the release; "
    "or a gated static int8 CPU encoder (--format int8 --calibration MANIFEST)."
)


def _spec() -> ConfigCommand:
    from raddino.evaluate.int8_export import Int8GateError, run_int8_export
    from raddino.models.export import ExportConfig, run_export

    def run(config: ExportConfig) -> object:
        return run_int8_export(config) if config.format == "int8" else run_export(config)

    return ConfigCommand(
        "export",
        ExportConfig,
        run,
        arguments=("model", "out"),
        short={"format": "-f"},
        errors=(ValueError, OSError),
        error_codes={Int8GateError: 1},  # a model failing the int8 gate: refused, not bad input
    )


register_deferred(app, "export", _spec, help=HELP)
