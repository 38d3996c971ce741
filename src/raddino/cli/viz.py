"""``raddino attention``, ``raddino correspond`` and ``raddino pca``: the paper's visual diagnostics."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from raddino.cli.app import app, fail
from raddino.cli.generate import ConfigCommand, Outcome, register_deferred

if TYPE_CHECKING:
    from raddino.data.preprocess import PreprocessConfig
    from raddino.models import Encoder
    from raddino.viz.run import AttentionConfig, CorrespondConfig, PcaConfig

_SHORT = {"model": "-m", "out": "-o"}


def _check_files(named: list[tuple[str, str]]) -> None:
    for argument, path in named:
        if not Path(path).is_file():
            raise fail(f"{argument} {path}: no such file")


def _load(model: str) -> tuple[Encoder, PreprocessConfig]:
    from raddino.models import ModelLoadError
    from raddino.viz import load_model

    if not model:
        raise fail(
            "no model given: pass --model (a folder, a .safetensors/.pth file, preset:NAME or a hub id)"
        )
    try:
        return load_model(model)
    except (ModelLoadError, ValueError, OSError) as error:
        raise fail(f"--model {error}") from error


def _stem(path: str) -> str:
    return Path(path).stem.replace(" ", "_")


def _written(files: tuple[Path, ...]) -> list[str]:
    return [f"wrote {path}" for path in files]


def _attention(settings: AttentionConfig) -> Outcome:
    from raddino.io.errors import ImageReadError
    from raddino.viz import run_attention

    _check_files([("IMAGE", settings.image)])
    pair = _load(settings.model)
    target = settings.out or f"attention_{_stem(settings.image)}.png"
    try:
        maps, files = run_attention(
            settings.image,
            pair,
            target,
            layer=settings.layer,
            save_npy=settings.npy or None,
            tile=settings.tile,
        )
    except ImageReadError as error:
        raise fail(f"IMAGE {error}") from error
    except IndexError as error:
        raise fail(f"--layer {settings.layer}: {error}") from error
    peaks = ", ".join(f"{100 * head.max():.1f}%" for head in maps.heads)
    lines = [
        f"block {maps.layer}, {len(maps.heads)} heads on a {maps.mean.shape[1]}×{maps.mean.shape[0]} grid",
        f"largest share of CLS attention on one patch per head: {peaks}",
        *_written((files.figure, *files.extra)),
    ]
    return Outcome("\n".join(lines))


def _correspond(settings: CorrespondConfig) -> Outcome:
    from raddino.io.errors import ImageReadError
    from raddino.viz import PointError, parse_point, run_correspond

    try:
        parsed = [parse_point(text) for value in settings.points for text in value.split()]
    except PointError as error:
        raise fail(str(error)) from error
    if not parsed:
        raise fail("--points: give at least one x,y")
    query, target = settings.query, settings.target
    _check_files([("QUERY", query), ("TARGET", target)])
    pair = _load(settings.model)
    figure = Path(settings.out or f"correspond_{_stem(query)}_{_stem(target)}.png")
    tables: list[str | Path] = [*settings.matches] or [
        figure.with_suffix(".json"),
        figure.with_suffix(".csv"),
    ]
    for table in tables:
        if Path(table).suffix.lower() not in (".json", ".csv"):
            raise fail(f"--matches {table}: use a .json or .csv file")
    try:
        result, files = run_correspond(
            query, target, parsed, pair, figure, matches_out=tables, tile=settings.tile
        )
    except PointError as error:
        raise fail(f"--points: {error} of QUERY {query}") from error
    except ImageReadError as error:
        raise fail(f"{'QUERY' if error.path == str(Path(query)) else 'TARGET'} {error}") from error
    lines = [
        f"point {index} ({match.query_x:g}, {match.query_y:g}) -> "
        f"({match.target_x:.1f}, {match.target_y:.1f}) in TARGET, cosine {match.similarity:.3f}"
        for index, match in enumerate(result.matches, start=1)
    ]
    return Outcome("\n".join([*lines, *_written((files.figure, *files.extra))]))


def _pca(settings: PcaConfig) -> Outcome:
    from raddino.io.errors import ImageReadError
    from raddino.viz import run_pca

    if not 0.0 <= settings.threshold <= 1.0:
        raise fail(f"--threshold {settings.threshold}: must lie in [0, 1]")
    images = settings.images
    _check_files([(f"IMAGES[{index}]", path) for index, path in enumerate(images)])
    pair = _load(settings.model)
    threshold = settings.threshold if settings.mask else None
    try:
        result, files = run_pca(images, pair, settings.out, threshold=threshold, tile=settings.tile)
    except ImageReadError as error:
        raise fail(f"IMAGES {error}") from error
    masked = f"{len(images)} images, {100 * result.masked_fraction:.1f}% of patches masked as background"
    return Outcome("\n".join([masked, *_written((files.figure,))]))


def _attention_spec() -> ConfigCommand:
    from raddino.viz.run import AttentionConfig

    return ConfigCommand("attention", AttentionConfig, _attention, arguments=("image",), short=_SHORT)


def _correspond_spec() -> ConfigCommand:
    from raddino.viz.run import CorrespondConfig

    short = {**_SHORT, "points": "-p"}
    return ConfigCommand(
        "correspond", CorrespondConfig, _correspond, arguments=("query", "target"), short=short
    )


def _pca_spec() -> ConfigCommand:
    from raddino.viz.run import PcaConfig

    return ConfigCommand("pca", PcaConfig, _pca, arguments=("images",), short=_SHORT)


register_deferred(
    app,
    "attention",
    _attention_spec,
    help="Last-layer CLS→patch attention per head and their mean, over the image (Figure A.2).",
)
register_deferred(
    app,
    "correspond",
    _correspond_spec,
    help="Cosine similarity of QUERY's patch at each point with every patch of TARGET (Figures 3, A.3, A.4).",
)
register_deferred(
    app,
    "pca",
    _pca_spec,
    help="First three principal components of patch tokens as RGB, background masked (DINOv2's figure).",
)
