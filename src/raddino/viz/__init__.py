"""The paper's visual diagnostics: attention maps, patch correspondences and PCA maps of patch tokens.

Typical use from a notebook::

    from raddino.viz import run_attention, run_correspond, run_pca

    maps, files = run_attention("cxr.png", "path/to/model", "attention.png")
    result, files = run_correspond("a.png", "b.png", [(200, 310)], "path/to/model", "correspond.png")
    pca, files = run_pca(["a.png", "b.png"], "path/to/model", "pca.png", threshold=0.5)

The lower-level functions (:func:`cls_attention`, :func:`correspond`, :func:`patch_pca`) take an
``Encoder`` and images prepared by :func:`encode_input` and return arrays only.
"""

from __future__ import annotations

from raddino.viz.attention import AttentionMaps, attention_figure, cls_attention, save_attention_arrays
from raddino.viz.correspond import (
    Correspondence,
    Match,
    correspond,
    correspondence_figure,
    patch_tokens,
    write_matches,
)
from raddino.viz.figure import Marker, Panel, save_grid, upsample
from raddino.viz.geometry import PointError, PreprocessGeometry, parse_point
from raddino.viz.inputs import EncodedInput, encode_input, load_model, read_input
from raddino.viz.pca import PatchPCA, patch_pca, pca_figure
from raddino.viz.run import FigureOutputs, run_attention, run_correspond, run_pca

__all__ = [
    "AttentionMaps",
    "Correspondence",
    "EncodedInput",
    "FigureOutputs",
    "Marker",
    "Match",
    "Panel",
    "PatchPCA",
    "PointError",
    "PreprocessGeometry",
    "attention_figure",
    "cls_attention",
    "correspond",
    "correspondence_figure",
    "encode_input",
    "load_model",
    "parse_point",
    "patch_pca",
    "patch_tokens",
    "pca_figure",
    "read_input",
    "run_attention",
    "run_correspond",
    "run_pca",
    "save_attention_arrays",
    "save_grid",
    "upsample",
    "write_matches",
]
