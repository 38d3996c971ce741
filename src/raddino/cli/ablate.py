"""``raddino ablate SWEEP VALUE…``: one of the paper's ablations on your data, generated from
:class:`~raddino.ablate.config.AblateRun` (the pre-training config's sections plus the sweep's fields)."""

from __future__ import annotations

from raddino.cli.app import app
from raddino.cli.generate import ConfigCommand, register_deferred

ABLATE_HELP = (
    "Sweep one pre-training setting (resolution, data-size, init, objective or any dotted key), probing "
    "each point's encoder; ends with the paper's figure, CSV / Markdown and compare's table. Resumes.\n\n"
    "raddino ablate resolution 224 336 518 -c configs/rad_dino_vitb14.yaml --data train.csv "
    "--eval labels.csv -o abl/\n"
)


def _ablate_spec() -> ConfigCommand:
    from raddino.ablate import AblateRun, SweepError, run_ablation
    from raddino.evaluate.compare import CompareError
    from raddino.io.lock import LockError
    from raddino.io.manifest import ManifestError
    from raddino.io.state_file import StateFileError
    from raddino.training import NonFiniteLossError, TrainingError

    return ConfigCommand(
        "ablate",
        AblateRun,
        run_ablation,
        arguments=("sweep", "values"),
        optional_arguments=("values",),
        promote={"train.dataset_path": "data", "compute.device": "device"},
        rename={"evaluation": "eval", "labels": "label", "seeds": "seed", "groups": "group"},
        short={"out": "-o"},
        errors=(SweepError, CompareError, ManifestError, StateFileError, TrainingError, ValueError, OSError),
        error_codes={LockError: 3, NonFiniteLossError: 3},
    )


register_deferred(app, "ablate", _ablate_spec, help=ABLATE_HELP)
