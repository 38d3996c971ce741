"""``raddino pretrain`` (continue DINOv2 pre-training) and ``raddino export-run`` (a run's encoder out)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated

import typer

from raddino.cli.app import ConfigOption, OverrideOption, app, fail


class _Which(str, Enum):
    teacher = "teacher"
    student = "student"


class _Format(str, Enum):
    transformers = "transformers"
    dinov2 = "dinov2"


@app.command()
def pretrain(
    out: Annotated[
        str, typer.Option("--out", "-o", help="Run folder (checkpoints, metrics, config, export).")
    ],
    config: ConfigOption = None,
    overrides: OverrideOption = None,
    data: Annotated[
        str | None, typer.Option("--data", help="Image folder or manifest CSV (sets train.dataset_path).")
    ] = None,
    restart: Annotated[
        bool, typer.Option("--restart", help="Refuse to resume: fail if RUN already has checkpoints.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start afresh: remove RUN's checkpoints, logs and exports.")
    ] = False,
) -> None:
    """Continue DINOv2 pre-training (DINO + iBOT + KoLeo, EMA teacher) on your images; resumes by default.

    Under torchrun every process runs this same command:
    torchrun --nproc_per_node 8 -m raddino pretrain -c configs/rad_dino_vitb14.yaml --out runs/x
    """
    from raddino.config import ConfigError
    from raddino.io.state_file import StateFileError
    from raddino.pretrain.config import load_pretrain_config
    from raddino.pretrain.train import pretrain as run_pretraining
    from raddino.training import NonFiniteLossError, TrainingError

    try:
        settings = load_pretrain_config(config, overrides or (), {"train.dataset_path": data})
        result = run_pretraining(settings, out, resume=not restart, overwrite=overwrite)
    except NonFiniteLossError as error:
        raise fail(str(error), code=3) from error
    except (ConfigError, StateFileError, TrainingError, FileExistsError, ValueError, OSError) as error:
        raise fail(str(error)) from error
    typer.echo(f"done: {result.iterations} iterations in {result.run}; last checkpoint {result.checkpoint}")
    if result.export is not None:
        typer.echo(f"teacher exported to {result.export}")
    if result.failures:
        typer.echo(f"{result.failures} image(s) could not be read: see {result.run / 'errors.csv'}")


@app.command("export-run")
def export_run(
    run: Annotated[str, typer.Argument(help="A raddino pretrain run folder.")],
    out: Annotated[str, typer.Argument(help="Output folder.")],
    which: Annotated[
        _Which, typer.Option("--which", help="Export the EMA teacher or the student.")
    ] = _Which.teacher,
    format: Annotated[
        _Format,
        typer.Option(
            "--format", "-f", help="transformers folder, or DINOv2 backbone_compatible.safetensors."
        ),
    ] = _Format.transformers,
    checkpoint: Annotated[
        str | None, typer.Option("--checkpoint", help="A checkpoint file (default: the run's newest).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace existing output files.")] = False,
) -> None:
    """Export a pre-training run's encoder (+ DINO head) with the run's normalisation."""
    from raddino.io.state_file import StateFileError
    from raddino.pretrain.export import export_run as export

    try:
        result = export(
            run, out, which=which.value, format=format.value, checkpoint=checkpoint, overwrite=overwrite
        )
    except (StateFileError, FileExistsError, ValueError, OSError) as error:
        raise fail(str(error)) from error
    typer.echo(str(result))
