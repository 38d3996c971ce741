"""From files to figures: what ``raddino attention``, ``raddino correspond`` and ``raddino pca`` do.

Each function loads the model (with the preprocessing it ships with) and the images, computes the maps,
writes the outputs and returns the arrays, so a notebook gets both the files and the numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from raddino.data.preprocess import PreprocessConfig
from raddino.io.progress import progress_bar
from raddino.models import Encoder
from raddino.viz.attention import AttentionMaps, attention_figure, cls_attention, save_attention_arrays
from raddino.viz.correspond import (
    Correspondence,
    correspond,
    correspondence_figure,
    patch_tokens,
    write_matches,
)
from raddino.viz.inputs import load_model, read_input
from raddino.viz.pca import PatchPCA, patch_pca, pca_figure


@dataclass(frozen=True)
class FigureOutputs:
    """Files a figure command wrote.

    Attributes:
        figure: The PNG.
        extra: Other files (``.npy`` maps, match tables), in the order written.
    """

    figure: Path
    extra: tuple[Path, ...] = ()


@dataclass
class AttentionConfig:
    """Settings of ``raddino attention`` (see :func:`run_attention`)."""

    image: str = ""
    """Chest X-ray (PNG, JPEG, TIFF or DICOM)."""
    model: str = ""
    """The encoder: transformers folder, DINOv2 .safetensors/.pth, preset:NAME or hub id."""
    out: str = ""
    """Output PNG (default: attention_<image>.png)."""
    layer: int = -1
    """Block to read; -1 is the last (the paper's)."""
    npy: str = ""
    """Also save the (heads + 1, h, w) maps as this .npy file."""
    tile: int = 256
    """Side of each panel in the PNG, pixels."""


@dataclass
class CorrespondConfig:
    """Settings of ``raddino correspond`` (see :func:`run_correspond`)."""

    query: str = ""
    """Image the points are on."""
    target: str = ""
    """Image to search (may be the query itself)."""
    points: list[str] = field(default_factory=list)
    """Query point x,y in the query's pixels (0,0 = top-left); repeatable, or several in one quoted value:
    "120,300 400,310"."""
    model: str = ""
    """The encoder: transformers folder, DINOv2 .safetensors/.pth, preset:NAME or hub id."""
    out: str = ""
    """Output PNG (default: correspond_<query>_<target>.png)."""
    matches: list[str] = field(default_factory=list)
    """Best matches as .json or .csv (repeatable; default: both, beside the PNG)."""
    tile: int = 256
    """Side of each panel in the PNG, pixels."""


@dataclass
class PcaConfig:
    """Settings of ``raddino pca`` (see :func:`run_pca`)."""

    images: list[str] = field(default_factory=list)
    """One or more images; the PCA is fitted on all jointly."""
    model: str = ""
    """The encoder: transformers folder, DINOv2 .safetensors/.pth, preset:NAME or hub id."""
    out: str = "pca.png"
    """Output PNG."""
    threshold: float = 0.5
    """Mask patches whose first component, scaled to [0, 1] with the background side low, is below this
    (DINOv2's background mask)."""
    mask: bool = True
    """Mask the background at all."""
    tile: int = 256
    """Side of each panel in the PNG, pixels."""


def _model(model: str | tuple[Encoder, PreprocessConfig]) -> tuple[Encoder, PreprocessConfig]:
    return load_model(model) if isinstance(model, str) else model


def run_attention(
    image: str | Path,
    model: str | tuple[Encoder, PreprocessConfig],
    out: str | Path,
    layer: int = -1,
    save_npy: str | Path | None = None,
    tile: int = 256,
) -> tuple[AttentionMaps, FigureOutputs]:
    """Attention maps of one image file.

    Args:
        image: A PNG/JPEG/TIFF/DICOM file.
        model: A source for :func:`raddino.models.load_encoder`, or an (encoder, preprocessing) pair.
        out: Output PNG grid (image, heads, mean).
        layer: Block to read (-1: last).
        save_npy: Also write the (heads + 1, h, w) patch-grid maps here.
        tile: Panel side in pixels.
    """
    encoder, preprocess = _model(model)
    encoded = read_input(image, preprocess, encoder.patch_size)
    maps = cls_attention(encoder, encoded.pixels, layer=layer)
    figure = attention_figure(encoded, maps, out, tile=tile)
    extra = (save_attention_arrays(maps, save_npy),) if save_npy is not None else ()
    return maps, FigureOutputs(figure, extra)


def run_correspond(
    query: str | Path,
    target: str | Path,
    points: Sequence[tuple[float, float]],
    model: str | tuple[Encoder, PreprocessConfig],
    out: str | Path,
    matches_out: Sequence[str | Path] = (),
    tile: int = 256,
) -> tuple[Correspondence, FigureOutputs]:
    """Correspondences of query points (query pixels) in a target image file.

    Args:
        query: Image the points are on.
        target: Image to search (may be the query itself).
        points: (x, y) in the query's pixels.
        model: A source for :func:`raddino.models.load_encoder`, or an (encoder, preprocessing) pair.
        out: Output PNG (one row per point).
        matches_out: ``.json`` / ``.csv`` files for the best matches.
        tile: Panel side in pixels.

    Raises:
        raddino.viz.geometry.PointError: a point is outside the query or cut away by its centre crop.
    """
    encoder, preprocess = _model(model)
    query_input = read_input(query, preprocess, encoder.patch_size)
    target_input = read_input(target, preprocess, encoder.patch_size)
    result = correspond(encoder, query_input, target_input, points)
    figure = correspondence_figure(query_input, target_input, result, out, tile=tile)
    extra = tuple(write_matches(result, path) for path in matches_out)
    return result, FigureOutputs(figure, extra)


def run_pca(
    images: Sequence[str | Path],
    model: str | tuple[Encoder, PreprocessConfig],
    out: str | Path,
    threshold: float | None = 0.5,
    tile: int = 256,
) -> tuple[PatchPCA, FigureOutputs]:
    """PCA colour maps of patch tokens, fitted jointly over image files.

    Args:
        images: One or more image files.
        model: A source for :func:`raddino.models.load_encoder`, or an (encoder, preprocessing) pair.
        out: Output PNG (images above, colours below).
        threshold: Background threshold on the scaled first component (``None``: no masking).
        tile: Panel side in pixels.
    """
    if not images:
        raise ValueError("no images given")
    encoder, preprocess = _model(model)
    encoded, tokens = [], []
    # One image at a time (sizes may differ); a bar for the many-image case.
    for path in progress_bar(images, desc="pca: embedding", unit="img", disable=len(images) < 8):
        encoded.append(read_input(path, preprocess, encoder.patch_size))
        tokens.extend(patch_tokens(encoder, encoded[-1:]))
    result = patch_pca(tokens, threshold=threshold)
    return result, FigureOutputs(pca_figure(encoded, result, out, tile=tile))
