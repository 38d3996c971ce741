"""The probe over the memory-mapped cache: the same heads as over tensors in memory, float16 storage
within a stated tolerance, and finished seeds still reused across the change of cache format."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from synthetic_sets import SyntheticSet

from raddino.evaluate.probe import ProbeConfig, run_probe
from raddino.evaluate.probe.heads import HeadSpec, HeadTraining, train_linear_heads
from raddino.features.cache import FeatureConfig
from raddino.features.vectors import FeatureView


def _problem(rows: int = 90) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    rng = np.random.default_rng(0)
    labels = (rng.random((rows, 2)) < 0.4).astype(np.float32)
    labels[::7, 0] = np.nan
    cls = rng.normal(size=(rows, 6)).astype(np.float32) + 3.0  # an offset, so standardising matters
    cls[:, :2] += np.nan_to_num(labels) * 2
    patch = rng.normal(size=(rows, 4)).astype(np.float32)
    return cls, patch, torch.from_numpy(labels)


@pytest.mark.parametrize("standardize", [True, False])
def test_views_of_the_cache_train_the_heads_trained_in_memory(standardize: bool) -> None:
    cls, patch, labels = _problem()
    order = np.random.default_rng(1).permutation(len(cls))  # the cache's rows need not be in split order
    stored_cls, stored_patch = np.empty_like(cls), np.empty_like(patch)
    stored_cls[order], stored_patch[order] = cls, patch
    views = {
        "cls": FeatureView([stored_cls], order),
        "cls+patch_mean": FeatureView([stored_cls, stored_patch], order),
    }
    tensors = {
        "cls": torch.from_numpy(cls),
        "cls+patch_mean": torch.from_numpy(np.concatenate([cls, patch], 1)),
    }
    specs = [HeadSpec("cls", 1e-2), HeadSpec("cls+patch_mean", 3e-2)]
    training = HeadTraining(epochs=4, batch_size=16, standardize=standardize)
    streamed = train_linear_heads(views, labels, specs, training, seed=3, progress=False)
    in_memory = train_linear_heads(tensors, labels, specs, training, seed=3, progress=False)
    for ours, reference in zip(streamed.heads, in_memory.heads, strict=True):
        if standardize:  # the view's statistics are summed in float64, the tensor's in float32
            torch.testing.assert_close(ours.weight, reference.weight, rtol=0, atol=1e-5)
        else:  # nothing summed differently: the same numbers exactly
            assert torch.equal(ours.weight, reference.weight)
    for ours_scores, reference_scores in zip(
        streamed.predict(views), in_memory.predict(tensors), strict=True
    ):
        np.testing.assert_allclose(ours_scores, reference_scores, rtol=0, atol=1e-5)


def _config(data: SyntheticSet, out: Path, **values: object) -> ProbeConfig:
    settings: dict[str, object] = {
        "input": str(data.manifest),
        "out": str(out),
        "features": FeatureConfig(embeddings=str(data.informative)),
        "lrs": [1e-2],
        "training": HeadTraining(epochs=15, batch_size=32),
        "seeds": [0],
        "progress": False,
        "figure": False,
    }
    settings.update(values)
    return ProbeConfig(**settings)  # type: ignore[arg-type]


def test_float16_storage_keeps_the_probe_within_tolerance(
    synthetic_set: SyntheticSet, tmp_path: Path
) -> None:
    """Stated tolerance: macro AUPRC and AUROC within 0.01 of float32 storage."""
    exact = run_probe(_config(synthetic_set, tmp_path / "f32"))
    half_features = FeatureConfig(embeddings=str(synthetic_set.informative), storage="float16")
    half = run_probe(_config(synthetic_set, tmp_path / "f16", features=half_features))
    for metric in ("macro_auprc", "macro_auroc"):
        assert half.summary[metric].mean == pytest.approx(exact.summary[metric].mean, abs=0.01)


def test_seeds_finished_before_the_cache_had_copies_are_reused(
    synthetic_set: SyntheticSet, tmp_path: Path
) -> None:
    run_probe(_config(synthetic_set, tmp_path / "run"))
    seed_file = tmp_path / "run" / "seeds" / "seed-0.json"
    stamp = seed_file.stat().st_mtime_ns
    copies = synthetic_set.informative.with_name("informative_vectors")
    shutil.rmtree(copies)  # the cache as the earlier format left it: the Parquet file alone
    run_probe(_config(synthetic_set, tmp_path / "run"))
    assert seed_file.stat().st_mtime_ns == stamp  # same settings: reused
    assert list(copies.glob("cls-*-float32.npy"))  # and the copies written again
    half_features = FeatureConfig(embeddings=str(synthetic_set.informative), storage="float16")
    run_probe(_config(synthetic_set, tmp_path / "run", features=half_features))
    assert seed_file.stat().st_mtime_ns != stamp  # other numbers: recomputed
