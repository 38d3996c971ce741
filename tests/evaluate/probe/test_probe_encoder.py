"""The probe on real images through a test-sized encoder: the feature cache is written once and reused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_sets import write_csv

from raddino.evaluate.probe import ProbeConfig, run_probe
from raddino.evaluate.probe.heads import HeadTraining
from raddino.features.cache import FeatureConfig


@pytest.fixture
def labelled_pngs(tmp_path: Path) -> Path:
    """24 small PNGs, a bright square in half of them (the 'finding'), one unreadable file."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "pngs"
    folder.mkdir()
    rows: list[dict[str, object]] = []
    for index in range(24):
        pixels = rng.integers(0, 120, (56, 56)).astype(np.uint8)
        finding = index % 2
        if finding:
            pixels[10:40, 10:40] = 250
        Image.fromarray(pixels).save(folder / f"{index}.png")
        rows.append({"path": f"{index}.png", "subject_id": f"s{index}", "finding": finding})
    (folder / "broken.png").write_bytes(b"not a png")
    rows.append({"path": "broken.png", "subject_id": "s99", "finding": 1})
    return write_csv(folder / "manifest.csv", rows)


def test_probe_on_an_encoder_extracts_once_and_reuses_the_cache(
    labelled_pngs: Path, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    def config(out: str, seeds: list[int]) -> ProbeConfig:
        return ProbeConfig(
            input=str(labelled_pngs),
            out=str(tmp_path / out),
            features=FeatureConfig(
                model=str(tiny_encoder_dir), cache_dir=str(tmp_path / "cache"), num_workers=0
            ),
            lrs=[1e-2],
            training=HeadTraining(epochs=5, batch_size=8),
            seeds=seeds,
            split_ratios=[0.5, 0.25, 0.25],
            progress=False,
            figure=False,
        )

    first = run_probe(config("first", [0]))
    assert first.embedded_now == 24  # the broken file is recorded, not fatal
    caches = list((tmp_path / "cache").glob("*.parquet"))
    assert len(caches) == 1
    errors = list((tmp_path / "cache").glob("*_errors.csv"))
    assert errors
    assert "broken.png" in errors[0].read_text()
    second = run_probe(config("second", [0, 1]))
    assert second.embedded_now == 0  # every image came from the cache
    assert second.seeds[0]["test"] == first.seeds[0]["test"]
    assert 0.0 <= second.summary["macro_auprc"].mean <= 1.0


def test_augmentation_path_embeds_a_fresh_view_each_epoch(
    labelled_pngs: Path, tiny_encoder_dir: Path, tmp_path: Path
) -> None:
    import torch

    from raddino.evaluate.probe.augment import AugmentedTrainFeatures

    paths = sorted(labelled_pngs.parent.glob("[0-9]*.png"))[:6]
    features = FeatureConfig(model=str(tiny_encoder_dir), batch_size=4, num_workers=0)
    views = AugmentedTrainFeatures(paths, ["patch_mean", "cls+patch_mean"], features, seed=0)
    first, again, second = views(0), views(0), views(1)
    assert first["cls+patch_mean"].shape == (6, 64)
    assert torch.equal(first["patch_mean"], again["patch_mean"])  # seeded by (seed, epoch)
    assert not torch.allclose(first["patch_mean"], second["patch_mean"])  # a new view each epoch
    config = ProbeConfig(
        input=str(labelled_pngs),
        out=str(tmp_path / "augmented"),
        features=FeatureConfig(model=str(tiny_encoder_dir), cache_dir=str(tmp_path / "cache"), num_workers=0),
        feature_choices=["patch_mean"],
        lrs=[1e-2],
        training=HeadTraining(epochs=2, batch_size=8),
        seeds=[0],
        augment=True,
        split_ratios=[0.5, 0.25, 0.25],
        progress=False,
        figure=False,
    )
    result = run_probe(config)
    assert 0.0 <= result.summary["macro_auprc"].mean <= 1.0
    with pytest.raises(ValueError, match="augment needs method 'linear'"):
        ProbeConfig(augment=True, method="sklearn")
