"""Patch correspondences between two images (the paper's Figures 3, A.3 and A.4).

For each query point, the last-layer patch token under it in the query image is compared by cosine
similarity with every patch token of the target image; the heatmap over the target is that similarity and
the best match is its arg-max patch, reported at the patch's centre in the target's original pixel
coordinates. Points are given in the query's original pixel coordinates and mapped through the
preprocessing's resize and centre crop (:mod:`raddino.viz.geometry`).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from raddino.io.atomic import atomic_write_text
from raddino.models import Encoder
from raddino.viz.figure import Marker, Panel, save_grid, upsample
from raddino.viz.inputs import EncodedInput

_COLOURS = ("cyan", "lime", "magenta", "yellow", "orange", "white", "red", "deepskyblue")


@dataclass(frozen=True)
class Match:
    """Where one query point matches best in the target.

    Attributes:
        query_x, query_y: The point, in query pixels.
        query_row, query_col: Query patch it falls in.
        target_row, target_col: Best-matching target patch.
        target_x, target_y: Centre of that patch, in target pixels (may lie slightly outside the image
            when the crop pads).
        similarity: Cosine similarity of the two patch tokens.
    """

    query_x: float
    query_y: float
    query_row: int
    query_col: int
    target_row: int
    target_col: int
    target_x: float
    target_y: float
    similarity: float


@dataclass(frozen=True)
class Correspondence:
    """Similarity maps and best matches of a set of query points.

    Attributes:
        similarity: (P, h, w) cosine similarity of each point's query token with every target token.
        matches: One :class:`Match` per point, in order.
    """

    similarity: np.ndarray
    matches: list[Match]


@torch.no_grad()
def patch_tokens(encoder: Encoder, images: Sequence[EncodedInput]) -> list[torch.Tensor]:
    """Last-layer patch tokens (D, h, w) of each image (one forward pass per image: sizes may differ)."""
    device = next(encoder.parameters()).device
    tokens = []
    for image in images:
        features = encoder.forward_features(image.pixels[None].to(device))
        tokens.append(features.patch_tokens[0].float().cpu())  # (D, h, w)
    return tokens


def correspond(
    encoder: Encoder,
    query: EncodedInput,
    target: EncodedInput,
    points: Sequence[tuple[float, float]],
) -> Correspondence:
    """Cosine similarity of the query's patch token at each point with every patch of the target.

    Args:
        encoder: The encoder (eval mode).
        query: Image the points are on.
        target: Image to search.
        points: (x, y) in the query's original pixel coordinates.

    Raises:
        raddino.viz.geometry.PointError: a point is outside the query or cut away by its centre crop.
    """
    if not points:
        raise ValueError("no query points given")
    cells = [query.geometry.patch_of(x, y, name="point") for x, y in points]
    query_tokens, target_tokens = patch_tokens(encoder, [query, target])
    rows, cols = target_tokens.shape[1:]
    chosen = torch.stack([query_tokens[:, row, col] for row, col in cells])  # (P, D)
    keys = F.normalize(target_tokens.flatten(1).T, dim=-1)  # (h*w, D)
    similarity = F.normalize(chosen, dim=-1) @ keys.T  # (P, h*w)
    best = similarity.argmax(dim=-1)  # (P,)
    matches = []
    for (x, y), (row, col), flat, scores in zip(points, cells, best.tolist(), similarity, strict=True):
        target_row, target_col = divmod(int(flat), cols)
        target_x, target_y = target.geometry.patch_centre(target_row, target_col)
        matches.append(
            Match(
                query_x=float(x),
                query_y=float(y),
                query_row=row,
                query_col=col,
                target_row=target_row,
                target_col=target_col,
                target_x=round(target_x, 2),
                target_y=round(target_y, 2),
                similarity=float(scores[flat]),
            )
        )
    return Correspondence(similarity=similarity.reshape(-1, rows, cols).numpy(), matches=matches)


def correspondence_figure(
    query: EncodedInput, target: EncodedInput, result: Correspondence, out: str | Path, tile: int = 256
) -> Path:
    """Save one row per point: the query with the point marked, the target's heatmap with the best match.

    Heatmaps share the cosine scale [-1, 1]. Markers are drawn in the preprocessed crop's pixels.

    Returns:
        ``out``; ``2 * tile`` wide and ``points * (tile + 22)`` high.
    """
    panels = []
    size = target.display.shape
    for index, (match, similarity) in enumerate(zip(result.matches, result.similarity, strict=True)):
        colour = _COLOURS[index % len(_COLOURS)]
        crop_x, crop_y = query.geometry.to_crop(match.query_x, match.query_y)
        label = f"{index + 1}"
        panels.append(
            Panel(
                query.display,
                title=f"query point {label} ({match.query_x:g}, {match.query_y:g})",
                markers=[Marker(crop_x - 0.5, crop_y - 0.5, colour, "o", label)],
            )
        )
        patch = target.geometry.patch_size
        best = Marker(
            (match.target_col + 0.5) * patch - 0.5, (match.target_row + 0.5) * patch - 0.5, colour, "x"
        )
        panels.append(
            Panel(
                target.display,
                title=f"target best ({match.target_x:.0f}, {match.target_y:.0f}) cos {match.similarity:.2f}",
                heatmap=upsample(similarity, size),
                heat_range=(-1.0, 1.0),
                markers=[best],
            )
        )
    return save_grid(panels, out, columns=2, tile=tile, colormap="jet")


def write_matches(result: Correspondence, out: str | Path) -> Path:
    """Write the best matches as ``.json`` (a list of objects) or ``.csv`` (one row per point), by suffix."""
    out = Path(out)
    rows = [asdict(match) for match in result.matches]
    if out.suffix.lower() == ".json":
        atomic_write_text(out, json.dumps(rows, indent=2) + "\n")
    elif out.suffix.lower() == ".csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(out, buffer.getvalue())
    else:
        raise ValueError(f"{out}: matches are written as .json or .csv")
    return out
