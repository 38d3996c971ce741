"""Dataset pixel statistics: exact against numpy over all pixels, streaming merge, failures recorded."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raddino.data.stats import PixelMoments, compute_stats, write_stats


def _write_images(folder: Path) -> np.ndarray:
    """Two 8-bit PNGs and one 16-bit PNG of different sizes; all their pixels scaled to [0, 1]."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    eight_a = rng.integers(0, 256, (20, 30), dtype=np.uint8)
    eight_b = rng.integers(40, 200, (24, 24), dtype=np.uint8)
    sixteen = rng.integers(0, 65536, (18, 22), dtype=np.uint16)
    Image.fromarray(eight_a).save(folder / "a.png")
    Image.fromarray(eight_b).save(folder / "b.png")
    Image.fromarray(sixteen).save(folder / "c.png")
    return np.concatenate([eight_a.ravel() / 255, eight_b.ravel() / 255, sixteen.ravel() / 65535])


def test_mean_and_std_over_every_pixel(tmp_path: Path):
    expected = _write_images(tmp_path / "images")
    stats = compute_stats(tmp_path / "images", progress=False)
    assert stats.n_images == 3
    assert stats.n_failed == 0
    assert stats.n_pixels == expected.size
    assert stats.mean == pytest.approx(expected.mean(), rel=1e-6)
    assert stats.std == pytest.approx(expected.std(), rel=1e-5)
    assert stats.image_mean == (stats.mean,) * 3
    assert stats.image_std == (stats.std,) * 3


def test_moments_merge_exactly():
    rng = np.random.default_rng(1)
    parts = [rng.random(size) * scale for size, scale in ((100, 1.0), (7, 5.0), (1, 0.1), (0, 1.0))]
    merged = PixelMoments()
    for part in parts:
        merged = merged + PixelMoments.of(part)
    everything = np.concatenate(parts)
    assert merged.count == everything.size
    assert merged.mean == pytest.approx(everything.mean(), rel=1e-12)
    assert merged.std == pytest.approx(everything.std(), rel=1e-12)


def test_unreadable_files_are_recorded_and_skipped(tmp_path: Path):
    expected = _write_images(tmp_path / "images")
    (tmp_path / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    Image.fromarray(np.full((20, 20), 7, dtype=np.uint8)).save(tmp_path / "images" / "uniform.png")
    errors = tmp_path / "errors.csv"
    stats = compute_stats(tmp_path / "images", errors=errors, progress=False)
    assert stats.n_images == 3
    assert stats.n_failed == 2
    assert stats.errors == str(errors)
    assert stats.mean == pytest.approx(expected.mean(), rel=1e-6)
    text = errors.read_text()
    assert "broken.png" in text
    assert "uniform" in text


def test_sample_workers_and_json(tmp_path: Path):
    _write_images(tmp_path / "images")
    whole = compute_stats(tmp_path / "images", progress=False)
    pooled = compute_stats(tmp_path / "images", workers=2, progress=False)
    assert pooled == whole
    subset = compute_stats(tmp_path / "images", sample=2, seed=3, progress=False)
    assert subset.n_images == 2
    assert subset == compute_stats(tmp_path / "images", sample=2, seed=3, progress=False)
    written = json.loads(write_stats(whole, tmp_path / "stats.json").read_text())
    assert written["mean"] == whole.mean
    assert written["image_std"] == [whole.std] * 3


def test_nothing_readable_is_an_error(tmp_path: Path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "x.png").write_bytes(b"nope")
    with pytest.raises(ValueError, match="none of its 1 images"):
        compute_stats(tmp_path / "images", progress=False)
