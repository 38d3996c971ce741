"""``raddino pretrain`` (continue DINOv2 pre-training) and ``raddino export-run`` (a run's encoder out),
generated from :class:`~raddino.pretrain.train.PretrainRun` and
:class:`~raddino.pretrain.export.ExportRunConfig`.

Pre-training's own settings are the config file's sections (``--config``) and ``key=value`` words
(``optim.base_lr=5e-4``); the few that name inputs and resources are options too (``--data``, ``--model``,
``--workers``, ``--device``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from raddino.cli.app import app
from raddino.cli.generate import ConfigCommand, Outcome, register_deferred

if TYPE_CHECKING:
    from raddino.pretrain.train import PretrainRun

PRETRAIN_HELP = (
    "Continue DINOv2 pre-training (DINO + iBOT + KoLeo, EMA teacher) on your images; resumes by default.\n\n"
    "Under torchrun every process runs this same command:\n"
    "torchrun --nproc_per_node 8 -m raddino pretrain -c configs/rad_dino_vitb14.yaml --out runs/x\n"
)


def _pretrain(settings: PretrainRun) -> Outcome:
    from raddino.pretrain.train import run_pretrain

    result = run_pretrain(settings)
    if int(os.environ.get("RANK", "0")) != 0:
        return Outcome()  # under torchrun every process runs the command; rank 0 reports for the run
    lines = [f"done: {result.iterations} iterations in {result.run}; last checkpoint {result.checkpoint}"]
    if result.export is not None:
        lines.append(f"teacher exported to {result.export}")
    if result.failures:
        lines.append(f"{result.failures} image(s) could not be read: see {result.run / 'errors.csv'}")
    return Outcome("\n".join(lines))


def _pretrain_spec() -> ConfigCommand:
    from raddino.io.state_file import StateFileError
    from raddino.pretrain.train import PretrainRun
    from raddino.training import NonFiniteLossError, TrainingError
    from raddino.training.tracking import TRACKING_OPTIONS

    return ConfigCommand(
        "pretrain",
        PretrainRun,
        _pretrain,
        promote={
            "train.dataset_path": "data",
            "train.shards": "shards",
            "student.pretrained_weights": "model",
            "train.num_workers": "workers",
            "compute.device": "device",
            **TRACKING_OPTIONS,
        },
        short={"out": "-o", "student.pretrained_weights": "-m"},
        negations={"--restart": "resume"},
        errors=(StateFileError, TrainingError, FileExistsError, ValueError, OSError),
        error_codes={NonFiniteLossError: 3},
    )


def _export_spec() -> ConfigCommand:
    from raddino.io.state_file import StateFileError
    from raddino.pretrain.export import ExportRunConfig, run_export_run

    return ConfigCommand(
        "export-run",
        ExportRunConfig,
        run_export_run,
        arguments=("run", "out"),
        short={"format": "-f"},
        errors=(StateFileError, FileExistsError, ValueError, OSError),
    )


register_deferred(app, "pretrain", _pretrain_spec, help=PRETRAIN_HELP)
register_deferred(
    app,
    "export-run",
    _export_spec,
    help="Export a pre-training run's encoder (+ DINO head) with the run's normalisation.",
)
