"""``raddino manifest DATASET`` and ``raddino manifest merge``: thin layers over ``raddino.data.datasets``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from raddino.cli.app import app, fail

manifest_app = typer.Typer(
    help="Manifests of public chest X-ray datasets from their own metadata files, and their merge.",
    no_args_is_help=True,
)
app.add_typer(manifest_app, name="manifest")

RootOption = Annotated[
    Path, typer.Option("--root", "-r", help="The dataset's folder, as downloaded and unpacked.")
]
OutOption = Annotated[Path, typer.Option("--out", "-o", help="Manifest CSV to write.")]
MetadataOption = Annotated[
    list[Path] | None,
    typer.Option(
        "--metadata", "-m", help="Metadata file to use instead of the one under --root (repeatable)."
    ),
]
KeepMissingOption = Annotated[
    bool,
    typer.Option(
        "--keep-missing", help="Keep rows whose image is not on disk (they are reported either way)."
    ),
]
CheckImagesOption = Annotated[
    bool, typer.Option("--check-images/--no-check-images", help="Check that every image exists.")
]
SplitOption = Annotated[
    str | None,
    typer.Option(
        "--split", help="Train/val/test fractions drawn by subject where no official split, e.g. 70/15/15."
    ),
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the --split draw.")]
StrictOption = Annotated[bool, typer.Option("--strict", help="Exit 1 if any row was reported.")]


def _build(
    dataset: str,
    root: Path,
    out: Path,
    metadata: list[Path] | None,
    check_images: bool,
    keep_missing: bool,
    split: str | None,
    seed: int,
    strict: bool,
    **options: Any,
) -> None:
    from raddino.data.datasets import (
        DatasetError,
        build_manifest,
        count_sources,
        format_counts,
        parse_fractions,
        write_dataset_manifest,
    )
    from raddino.data.splits import SplitError

    try:
        fractions = parse_fractions(split) if split else None
        manifest = build_manifest(
            dataset,
            root,
            metadata or (),
            check_images=check_images,
            keep_missing=keep_missing,
            split_fractions=fractions,
            seed=seed,
            **options,
        )
        errors = write_dataset_manifest(manifest, out)
    except (DatasetError, SplitError) as error:
        raise fail(str(error)) from error
    for note in manifest.notes:
        typer.echo(f"{dataset}: {note}")
    typer.echo(format_counts(count_sources(manifest.rows)))
    by_stage: dict[str, int] = {}
    for problem in manifest.problems:
        by_stage[problem.stage] = by_stage.get(problem.stage, 0) + 1
    typer.echo(f"wrote {out} ({len(manifest.rows)} images)")
    if manifest.problems:
        summary = ", ".join(f"{count} {stage}" for stage, count in sorted(by_stage.items()))
        typer.echo(f"{len(manifest.problems)} rows reported ({summary}): see {errors}", err=True)
        if strict:
            raise typer.Exit(1)


@manifest_app.command("mimic-cxr")
def mimic_cxr(
    root: RootOption,
    out: OutOption,
    metadata: MetadataOption = None,
    layout: Annotated[str, typer.Option(help="jpg (MIMIC-CXR-JPG), dicom (MIMIC-CXR) or auto.")] = "auto",
    check_images: CheckImagesOption = True,
    keep_missing: KeepMissingOption = False,
    split: SplitOption = None,
    seed: SeedOption = 0,
    strict: StrictOption = False,
) -> None:
    """MIMIC-CXR: metadata (views), official split and CheXpert labels of MIMIC-CXR-JPG."""
    if layout not in ("auto", "jpg", "dicom"):
        raise fail(f"--layout must be auto, jpg or dicom, not {layout!r}")
    _build("mimic-cxr", root, out, metadata, check_images, keep_missing, split, seed, strict, layout=layout)


def _register_plain(dataset: str, summary: str) -> None:
    """One ``raddino manifest DATASET`` command for a dataset with no options of its own."""

    def command(
        root: RootOption,
        out: OutOption,
        metadata: MetadataOption = None,
        check_images: CheckImagesOption = True,
        keep_missing: KeepMissingOption = False,
        split: SplitOption = None,
        seed: SeedOption = 0,
        strict: StrictOption = False,
    ) -> None:
        _build(dataset, root, out, metadata, check_images, keep_missing, split, seed, strict)

    command.__doc__ = summary
    manifest_app.command(dataset)(command)


for _dataset, _summary in (
    ("chexpert", "CheXpert: train.csv and valid.csv, uncertain labels kept as -1."),
    ("nih-cxr", "NIH ChestX-ray14: Data_Entry_2017, official train_val/test lists, bounding boxes."),
    ("padchest", "PadChest: label terms parsed into 0/1 columns, view from Projection."),
    (
        "candid-ptx",
        "CANDID-PTX: pneumothorax, chest tube and rib fracture labels with their run-length masks.",
    ),
):
    _register_plain(_dataset, _summary)


@manifest_app.command("brax")
def brax(
    root: RootOption,
    out: OutOption,
    metadata: MetadataOption = None,
    image_format: Annotated[str, typer.Option(help="png or dicom: which rendering rows point to.")] = "png",
    check_images: CheckImagesOption = True,
    keep_missing: KeepMissingOption = False,
    split: SplitOption = None,
    seed: SeedOption = 0,
    strict: StrictOption = False,
) -> None:
    """BRAX: master spreadsheet, CheXpert-style labels."""
    if image_format not in ("png", "dicom"):
        raise fail(f"--image-format must be png or dicom, not {image_format!r}")
    _build(
        "brax",
        root,
        out,
        metadata,
        check_images,
        keep_missing,
        split,
        seed,
        strict,
        image_format=image_format,
    )


@manifest_app.command("vindr-cxr")
def vindr_cxr(
    root: RootOption,
    out: OutOption,
    metadata: MetadataOption = None,
    min_votes: Annotated[
        int, typer.Option(help="Radiologists who must agree for a positive training label.")
    ] = 2,
    check_images: CheckImagesOption = True,
    keep_missing: KeepMissingOption = False,
    split: SplitOption = None,
    seed: SeedOption = 0,
    strict: StrictOption = False,
) -> None:
    """VinDr-CXR: per-radiologist labels aggregated by vote, boxes kept."""
    _build(
        "vindr-cxr", root, out, metadata, check_images, keep_missing, split, seed, strict, min_votes=min_votes
    )


@manifest_app.command("rsna-pneumonia")
def rsna_pneumonia(
    root: RootOption,
    out: OutOption,
    metadata: MetadataOption = None,
    read_headers: Annotated[
        bool,
        typer.Option("--read-headers/--no-read-headers", help="Read views from DICOM headers if no table."),
    ] = True,
    check_images: CheckImagesOption = True,
    keep_missing: KeepMissingOption = False,
    split: SplitOption = None,
    seed: SeedOption = 0,
    strict: StrictOption = False,
) -> None:
    """RSNA Pneumonia: stage 2 training labels, boxes, views from the DICOM headers."""
    _build(
        "rsna-pneumonia",
        root,
        out,
        metadata,
        check_images,
        keep_missing,
        split,
        seed,
        strict,
        read_headers=read_headers,
    )


@manifest_app.command("vindr-ribcxr")
def vindr_ribcxr(
    root: RootOption,
    out: OutOption,
    metadata: MetadataOption = None,
    masks_dir: Annotated[
        Path | None, typer.Option(help="Draw the 20 rib masks as PNGs here (default: polygons kept as JSON).")
    ] = None,
    check_images: CheckImagesOption = True,
    keep_missing: KeepMissingOption = False,
    split: SplitOption = None,
    seed: SeedOption = 0,
    strict: StrictOption = False,
) -> None:
    """VinDr-RibCXR: official train/val split, 20 rib masks."""
    _build(
        "vindr-ribcxr",
        root,
        out,
        metadata,
        check_images,
        keep_missing,
        split,
        seed,
        strict,
        masks_dir=masks_dir,
    )


@manifest_app.command("merge")
def merge(
    inputs: Annotated[list[Path], typer.Argument(help="Manifest CSVs to merge.")],
    out: OutOption,
    frontal_only: Annotated[
        bool, typer.Option("--frontal-only", help="Keep frontal (PA/AP) images only.")
    ] = False,
    exclude: Annotated[
        list[Path] | None,
        typer.Option("--exclude", "-x", help="Evaluation manifest whose subjects are dropped (repeatable)."),
    ] = None,
) -> None:
    """Merge manifests into a pre-training manifest, without the subjects of evaluation manifests."""
    from raddino.data.datasets import format_counts, merge_manifests, write_merged
    from raddino.io.manifest import ManifestError

    try:
        result = merge_manifests(inputs, frontal_only=frontal_only, exclude=exclude or ())
        write_merged(result, out)
    except ManifestError as error:
        raise fail(str(error)) from error
    reasons = [
        reason
        for reason in ("excluded", "not frontal", "duplicate")
        if any((entry.dropped or {}).get(reason) for entry in result.counts.values())
    ]
    typer.echo(format_counts(result.counts, reasons))
    typer.echo(f"wrote {out} ({len(result.rows)} images)")
