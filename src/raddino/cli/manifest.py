"""``raddino manifest DATASET`` and ``raddino manifest merge``: thin layers over ``raddino.data.datasets``."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import typer

from raddino.cli.app import app
from raddino.cli.generate import ConfigCommand, Outcome, register_deferred

if TYPE_CHECKING:
    from raddino.data.datasets.config import ManifestConfig, MergeConfig

manifest_app = typer.Typer(
    help="Manifests of public chest X-ray datasets from their own metadata files, and their merge.",
    no_args_is_help=True,
)
app.add_typer(manifest_app, name="manifest")

DATASET_HELP = {
    "mimic-cxr": "MIMIC-CXR: metadata (views), official split and CheXpert labels of MIMIC-CXR-JPG.",
    "chexpert": "CheXpert: train.csv and valid.csv, uncertain labels kept as -1.",
    "nih-cxr": "NIH ChestX-ray14: Data_Entry_2017, official train_val/test lists, bounding boxes.",
    "padchest": "PadChest: label terms parsed into 0/1 columns, view from Projection.",
    "brax": "BRAX: master spreadsheet, CheXpert-style labels.",
    "vindr-cxr": "VinDr-CXR: per-radiologist labels aggregated by vote, boxes kept.",
    "rsna-pneumonia": "RSNA Pneumonia: stage 2 training labels, boxes, views from the DICOM headers.",
    "candid-ptx": "CANDID-PTX: pneumothorax, chest tube and rib fracture labels with their run-length masks.",
    "vindr-ribcxr": "VinDr-RibCXR: official train/val split, 20 rib masks.",
}


def _check(settings: ManifestConfig | MergeConfig) -> None:
    if not getattr(settings, "root", True):
        raise ValueError("no dataset folder given: pass --root FOLDER")
    if not getattr(settings, "inputs", True):
        raise ValueError("no manifests given: name the CSVs to merge")
    if not settings.out:
        raise ValueError("no output given: pass --out FILE.csv")


def _build(dataset: str, settings: ManifestConfig) -> Outcome:
    from raddino.data.datasets import count_sources, format_counts
    from raddino.data.datasets.config import make_manifest

    manifest, errors = make_manifest(dataset, settings)
    lines = [f"{dataset}: {note}" for note in manifest.notes]
    lines += [
        format_counts(count_sources(manifest.rows)),
        f"wrote {settings.out} ({len(manifest.rows)} images)",
    ]
    if not manifest.problems:
        return Outcome("\n".join(lines))
    by_stage: dict[str, int] = {}
    for problem in manifest.problems:
        by_stage[problem.stage] = by_stage.get(problem.stage, 0) + 1
    summary = ", ".join(f"{count} {stage}" for stage, count in sorted(by_stage.items()))
    warning = f"{len(manifest.problems)} rows reported ({summary}): see {errors}"
    return Outcome("\n".join(lines), warning, exit_code=1 if settings.strict else 0)


def _dataset_spec(dataset: str) -> ConfigCommand:
    from raddino.data.datasets.config import DATASET_CONFIGS, ManifestConfig

    return ConfigCommand(
        dataset,
        DATASET_CONFIGS.get(dataset, ManifestConfig),
        lambda settings: _build(dataset, settings),
        short={"root": "-r", "out": "-o", "metadata": "-m"},
        check=_check,
    )


def _merge(settings: MergeConfig) -> Outcome:
    from raddino.data.datasets import format_counts
    from raddino.data.datasets.config import merge

    result = merge(settings)
    reasons = [
        reason
        for reason in ("excluded", "not frontal", "duplicate")
        if any((entry.dropped or {}).get(reason) for entry in result.counts.values())
    ]
    return Outcome(
        f"{format_counts(result.counts, reasons)}\nwrote {settings.out} ({len(result.rows)} images)"
    )


def _merge_spec() -> ConfigCommand:
    from raddino.data.datasets.config import MergeConfig

    return ConfigCommand(
        "merge",
        MergeConfig,
        _merge,
        arguments=("inputs",),
        optional_arguments=("inputs",),
        short={"out": "-o", "exclude": "-x"},
        check=_check,
    )


for _dataset, _help in DATASET_HELP.items():
    register_deferred(manifest_app, _dataset, functools.partial(_dataset_spec, _dataset), help=_help)
register_deferred(
    manifest_app,
    "merge",
    _merge_spec,
    help="Merge manifests into a pre-training manifest, without the subjects of evaluation manifests.",
)
