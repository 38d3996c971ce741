"""``raddino attention``, ``raddino correspond`` and ``raddino pca``: the paper's visual diagnostics."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from raddino.cli.app import app, fail

if TYPE_CHECKING:
    from raddino.data.preprocess import PreprocessConfig
    from raddino.models import Encoder

ModelOption = Annotated[
    str,
    typer.Option(
        "--model", "-m", help="Transformers folder, DINOv2 .safetensors/.pth, preset:NAME or hub id."
    ),
]
TileOption = Annotated[int, typer.Option("--tile", help="Side of each panel in the PNG, pixels.")]


def _check_files(named: list[tuple[str, str]]) -> None:
    for argument, path in named:
        if not Path(path).is_file():
            raise fail(f"{argument} {path}: no such file")


def _load(model: str) -> tuple[Encoder, PreprocessConfig]:
    from raddino.models import ModelLoadError
    from raddino.viz import load_model

    try:
        return load_model(model)
    except (ModelLoadError, ValueError, OSError) as error:
        raise fail(f"--model {error}") from error


def _stem(path: str) -> str:
    return Path(path).stem.replace(" ", "_")


@app.command()
def attention(
    image: Annotated[str, typer.Argument(help="Chest X-ray (PNG, JPEG, TIFF or DICOM).")],
    model: ModelOption,
    out: Annotated[
        str | None, typer.Option("--out", "-o", help="Output PNG [default: attention_<image>.png].")
    ] = None,
    layer: Annotated[int, typer.Option("--layer", help="Block to read; -1 is the last (the paper's).")] = -1,
    npy: Annotated[
        str | None, typer.Option("--npy", help="Also save the (heads + 1, h, w) maps as this .npy file.")
    ] = None,
    tile: TileOption = 256,
) -> None:
    """Last-layer CLS→patch attention per head and their mean, over the image (Figure A.2)."""
    from raddino.io.errors import ImageReadError
    from raddino.viz import run_attention

    _check_files([("IMAGE", image)])
    pair = _load(model)
    target = out or f"attention_{_stem(image)}.png"
    try:
        maps, files = run_attention(image, pair, target, layer=layer, save_npy=npy, tile=tile)
    except ImageReadError as error:
        raise fail(f"IMAGE {error}") from error
    except IndexError as error:
        raise fail(f"--layer {layer}: {error}") from error
    except ValueError as error:
        raise fail(str(error)) from error
    peaks = ", ".join(f"{100 * head.max():.1f}%" for head in maps.heads)
    typer.echo(
        f"block {maps.layer}, {len(maps.heads)} heads on a {maps.mean.shape[1]}×{maps.mean.shape[0]} grid"
    )
    typer.echo(f"largest share of CLS attention on one patch per head: {peaks}")
    for path in (files.figure, *files.extra):
        typer.echo(f"wrote {path}")


@app.command()
def correspond(
    query: Annotated[str, typer.Argument(help="Image the points are on.")],
    target: Annotated[str, typer.Argument(help="Image to search (may be QUERY itself).")],
    points: Annotated[
        list[str],
        typer.Option(
            "--points",
            "-p",
            help="Query point x,y in QUERY's pixels (0,0 = top-left); repeatable, or several in one "
            'quoted value: --points "120,300 400,310".',
        ),
    ],
    model: ModelOption,
    out: Annotated[
        str | None,
        typer.Option("--out", "-o", help="Output PNG [default: correspond_<query>_<target>.png]."),
    ] = None,
    matches: Annotated[
        list[str] | None,
        typer.Option(
            "--matches", help="Best matches as .json or .csv (repeatable) [default: both, beside --out]."
        ),
    ] = None,
    tile: TileOption = 256,
) -> None:
    """Cosine similarity of QUERY's patch at each point with every patch of TARGET (Figures 3, A.3, A.4)."""
    from raddino.io.errors import ImageReadError
    from raddino.viz import PointError, parse_point, run_correspond

    try:
        parsed = [parse_point(text) for value in points for text in value.split()]
    except PointError as error:
        raise fail(str(error)) from error
    if not parsed:
        raise fail("--points: give at least one x,y")
    _check_files([("QUERY", query), ("TARGET", target)])
    pair = _load(model)
    figure = Path(out or f"correspond_{_stem(query)}_{_stem(target)}.png")
    tables = matches if matches else [figure.with_suffix(".json"), figure.with_suffix(".csv")]
    for table in tables:
        if Path(table).suffix.lower() not in (".json", ".csv"):
            raise fail(f"--matches {table}: use a .json or .csv file")
    try:
        result, files = run_correspond(query, target, parsed, pair, figure, matches_out=tables, tile=tile)
    except PointError as error:
        raise fail(f"--points: {error} of QUERY {query}") from error
    except ImageReadError as error:
        raise fail(f"{'QUERY' if error.path == str(Path(query)) else 'TARGET'} {error}") from error
    for index, match in enumerate(result.matches, start=1):
        typer.echo(
            f"point {index} ({match.query_x:g}, {match.query_y:g}) -> "
            f"({match.target_x:.1f}, {match.target_y:.1f}) in TARGET, cosine {match.similarity:.3f}"
        )
    for path in (files.figure, *files.extra):
        typer.echo(f"wrote {path}")


@app.command()
def pca(
    images: Annotated[
        list[str], typer.Argument(help="One or more images; the PCA is fitted on all jointly.")
    ],
    model: ModelOption,
    out: Annotated[str, typer.Option("--out", "-o", help="Output PNG.")] = "pca.png",
    threshold: Annotated[
        float,
        typer.Option(
            "--threshold",
            help="Mask patches whose first component, scaled to [0, 1] with the background side low, is "
            "below this (DINOv2's background mask).",
        ),
    ] = 0.5,
    mask: Annotated[bool, typer.Option("--mask/--no-mask", help="Mask the background at all.")] = True,
    tile: TileOption = 256,
) -> None:
    """First three principal components of patch tokens as RGB, background masked (DINOv2's figure)."""
    from raddino.io.errors import ImageReadError
    from raddino.viz import run_pca

    if not 0.0 <= threshold <= 1.0:
        raise fail(f"--threshold {threshold}: must lie in [0, 1]")
    _check_files([(f"IMAGES[{index}]", path) for index, path in enumerate(images)])
    pair = _load(model)
    try:
        result, files = run_pca(images, pair, out, threshold=threshold if mask else None, tile=tile)
    except ImageReadError as error:
        raise fail(f"IMAGES {error}") from error
    except ValueError as error:
        raise fail(str(error)) from error
    typer.echo(f"{len(images)} images, {100 * result.masked_fraction:.1f}% of patches masked as background")
    typer.echo(f"wrote {files.figure}")
