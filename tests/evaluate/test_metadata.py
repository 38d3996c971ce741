from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from synthetic_sets import write_csv, write_embeddings

from raddino.evaluate.metadata import (
    MetadataConfig,
    MetadataError,
    bin_values,
    interval_names,
    run_metadata,
)
from raddino.features.cache import FeatureConfig


def _metadata_set(folder: Path, count: int = 150) -> tuple[Path, Path, Path]:
    """Sex and age written into the first two dimensions of the informative embeddings."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    sex = rng.integers(0, 2, count)
    age = rng.uniform(20, 90, count)
    ids = [f"p{index}" for index in range(count)]
    rows: list[dict[str, object]] = [
        {
            "path": f"{row_id}.png",
            "id": row_id,
            "subject_id": f"s{index // 2}",
            "sex": "MF"[sex[index]],
            "age": f"{age[index]:.1f}" if index % 10 else "",
            "view": "PA" if index % 3 else "AP",
        }
        for index, row_id in enumerate(ids)
    ]
    informative = rng.normal(0, 0.3, (count, 8)).astype(np.float32)
    informative[:, 0] += sex * 3
    informative[:, 1] += (age - 55) / 8
    noise = rng.normal(0, 1, (count, 8)).astype(np.float32)
    return (
        write_csv(folder / "manifest.csv", rows),
        write_embeddings(folder / "informative.parquet", ids, {"cls": informative}),
        write_embeddings(folder / "random.parquet", ids, {"cls": noise}),
    )


def test_bins_follow_the_edges() -> None:
    edges = [40.0, 55.0, 65.0, 75.0]
    assert bin_values(np.array([10, 40, 54.9, 55, 70, 75, 99]), edges).tolist() == [0, 1, 1, 2, 3, 4, 4]
    assert interval_names(edges) == ["<40", "40–55", "55–65", "65–75", "≥75"]


def test_metadata_accuracy_tells_encoders_apart_and_beats_the_majority_class(tmp_path: Path) -> None:
    manifest, informative, random = _metadata_set(tmp_path / "data")

    def run(embeddings: Path, out: str, **values: object):  # type: ignore[no-untyped-def]
        settings = {
            "input": str(manifest),
            "out": str(tmp_path / out),
            "features": FeatureConfig(embeddings=str(embeddings)),
        }
        return run_metadata(MetadataConfig(**settings, **values))  # type: ignore[arg-type]

    good, bad = run(informative, "good"), run(random, "bad")
    assert set(good.summary) == {"accuracy/sex", "accuracy/age"}  # weight and bmi are absent: skipped
    assert good.summary["accuracy/sex"].mean > 0.95
    assert good.summary["accuracy/sex"].count == 5  # five folds
    assert bad.summary["accuracy/sex"].mean < 0.75
    assert good.summary["accuracy/age"].mean > bad.summary["accuracy/age"].mean + 0.2
    age = good.targets["age"]
    assert age["images"] == 135  # rows without an age are left out
    assert len(age["classes"]) == 5
    assert age["accuracy"].mean > age["majority_baseline"].mean
    payload = json.loads((tmp_path / "good" / "metadata.json").read_text())
    assert payload["summary"]["accuracy/sex"]["count"] == 5
    assert "≥75" in (tmp_path / "good" / "metadata.md").read_text()
    assert (tmp_path / "good" / "metadata.png").stat().st_size > 0
    categorical = run(informative, "view", targets=["view"])
    assert categorical.targets["view"]["classes"] == ["AP", "PA"]
    quantile = run(informative, "quantile", targets=["age"], binning="quantile")
    counts = quantile.targets["age"]["counts"]
    assert max(counts) - min(counts) <= 2  # quintiles: balanced classes


def test_bad_metadata_values_are_named(tmp_path: Path) -> None:
    manifest, informative, _ = _metadata_set(tmp_path / "data")
    text = manifest.read_text().replace(",M,", ",X,", 1)
    manifest.write_text(text)
    with pytest.raises(MetadataError, match=r"column 'sex', row '.*': 'X'"):
        run_metadata(
            MetadataConfig(
                input=str(manifest),
                out=str(tmp_path / "o"),
                features=FeatureConfig(embeddings=str(informative)),
            )
        )
    with pytest.raises(MetadataError, match="none of the target columns"):
        run_metadata(
            MetadataConfig(
                input=str(manifest),
                out=str(tmp_path / "o"),
                targets=["height"],
                features=FeatureConfig(embeddings=str(informative)),
            )
        )
