"""Patch correspondences: self-matches peak at the query point, matches follow moved content, outputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from raddino.data.preprocess import PreprocessConfig
from raddino.models import Encoder
from raddino.viz import PointError, correspond, correspondence_figure, encode_input, write_matches


def textured_points(image: np.ndarray, patch: int, count: int) -> list[tuple[float, float]]:
    """Centres of the ``count`` patches with the most grey-level variation (lung texture, edges)."""
    rows, cols = image.shape[0] // patch, image.shape[1] // patch
    blocks = image[: rows * patch, : cols * patch].reshape(rows, patch, cols, patch)
    spread = blocks.std(axis=(1, 3))  # (rows, cols)
    order = np.argsort(spread.ravel())[::-1][:count]
    return [((flat % cols + 0.5) * patch - 0.5, (flat // cols + 0.5) * patch - 0.5) for flat in order]


def test_self_correspondence_peaks_at_the_query_point(
    test_encoder: Encoder, phantom_112: np.ndarray, preprocess_112: PreprocessConfig
) -> None:
    image = encode_input(phantom_112, preprocess_112, test_encoder.patch_size)
    # Points off patch centres too: anywhere inside a patch must match that patch.
    points = [(x + offset, y - offset) for offset, (x, y) in enumerate(textured_points(phantom_112, 14, 6))]
    result = correspond(test_encoder, image, image, points)
    assert result.similarity.shape == (6, 8, 8)
    for match, similarity in zip(result.matches, result.similarity, strict=True):
        assert (match.target_row, match.target_col) == (match.query_row, match.query_col)
        assert abs(match.target_x - match.query_x) <= 7
        assert abs(match.target_y - match.query_y) <= 7
        assert match.similarity == pytest.approx(1.0, abs=1e-5)
        # The peak is honest only if no other patch has the same token: check a real runner-up gap.
        runner_up = np.sort(similarity.ravel())[-2]
        assert runner_up < 0.999


@pytest.fixture(scope="module")
def content_encoder() -> Encoder:
    """The test encoder with its position embeddings zeroed: tokens then depend on content only, so a
    match must follow the content wherever the target puts it."""
    encoder = Encoder.from_preset("test", seed=0).eval()
    with torch.no_grad():
        encoder.backbone.embeddings.position_embeddings.zero_()
    return encoder


def test_matches_follow_content_into_a_wider_target(
    content_encoder: Encoder, phantom_112: np.ndarray
) -> None:
    """Target 112×224 with the phantom at columns 84-195: after resize to 56×112 and the centre crop
    (columns 28-83 of the resized image), the phantom starts one patch right, so every match lies 84
    original pixels right of its query point."""
    config = PreprocessConfig(shortest_edge=56, crop_size=(56, 56))
    wide = np.zeros((112, 224), dtype=np.float32)
    wide[:, 84:196] = phantom_112
    query = encode_input(phantom_112, config, 14, name="query")
    target = encode_input(wide, config, 14, name="target")
    # Query patches in columns 0-2 (28 original px each) stay inside the target's crop; pick textured ones.
    downsampled = phantom_112.reshape(56, 2, 56, 2).mean(axis=(1, 3))[:, :42]
    points = [(2 * x + 0.5, 2 * y + 0.5) for x, y in textured_points(downsampled, 14, 5)]
    result = correspond(content_encoder, query, target, points)
    for match in result.matches:
        assert (match.target_row, match.target_col) == (match.query_row, match.query_col + 1)
        assert abs(match.target_x - (match.query_x + 84)) <= 14
        assert abs(match.target_y - match.query_y) <= 14
        assert match.similarity > 0.99


def test_points_outside_or_cropped_away_are_refused(test_encoder: Encoder, phantom_112: np.ndarray) -> None:
    config = PreprocessConfig(shortest_edge=56, crop_size=(56, 56))
    wide = encode_input(np.tile(phantom_112, (1, 2)), config, 14)  # 112×224: the crop keeps the middle
    with pytest.raises(PointError, match="outside the 224×112 image"):
        correspond(test_encoder, wide, wide, [(10, 300)])
    with pytest.raises(PointError, match="cut away by the centre crop"):
        correspond(test_encoder, wide, wide, [(20, 50)])


def test_figure_and_match_tables(
    tmp_path: Path, test_encoder: Encoder, phantom_112: np.ndarray, preprocess_112: PreprocessConfig
) -> None:
    image = encode_input(phantom_112, preprocess_112, 14, name="phantom")
    result = correspond(test_encoder, image, image, [(30, 40), (80, 60), (56, 90)])
    figure = correspondence_figure(image, image, result, tmp_path / "correspond.png", tile=96)
    with Image.open(figure) as opened:
        assert opened.size == (2 * 96, 3 * (96 + 22))
    rows = json.loads(write_matches(result, tmp_path / "matches.json").read_text())
    assert [(row["query_x"], row["query_y"]) for row in rows] == [(30, 40), (80, 60), (56, 90)]
    assert rows[0]["target_x"] == pytest.approx(result.matches[0].target_x)
    with write_matches(result, tmp_path / "matches.csv").open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 3
    assert float(table[2]["target_y"]) == pytest.approx(result.matches[2].target_y)
    with pytest.raises(ValueError, match=r"\.json or \.csv"):
        write_matches(result, tmp_path / "matches.txt")
