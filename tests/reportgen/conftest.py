"""Report-generation fixtures: small studies with reports, a tokenizer trained on them, a test-sized LM."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

HEART = ("The heart is enlarged.", "Heart size is normal.")
EFFUSION = ("There is a left pleural effusion.", "No pleural effusion.")
EXTRA_TEXTS = ["No pneumothorax.", "The lungs are clear.", "Lines and tubes are unchanged."]


def study_report(enlarged: bool, effusion: bool) -> str:
    """The report of a synthetic study: one sentence per finding, positive or negative."""
    return f"{HEART[0 if enlarged else 1]} {EFFUSION[0 if effusion else 1]} No pneumothorax."


def study_image(rng: np.random.Generator, enlarged: bool, effusion: bool, size: int = 56) -> np.ndarray:
    """A 56 px grey picture whose content follows the findings: a wide central blob, a bright lower left."""
    pixels = rng.normal(0.3, 0.05, (size, size))
    rows, cols = np.mgrid[0:size, 0:size]
    radius = 16 if enlarged else 8
    pixels[(rows - size / 2) ** 2 + (cols - size / 2) ** 2 < radius**2] += 0.4
    if effusion:
        pixels[size * 3 // 4 :, : size // 3] += 0.5
    return (np.clip(pixels, 0, 1) * 255).astype(np.uint8)


@pytest.fixture(scope="session")
def report_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve studies (8 train, 4 test), every combination of two findings, with their reports."""
    root = tmp_path_factory.mktemp("report-studies")
    rng = np.random.default_rng(0)
    rows = []
    for index in range(12):
        enlarged, effusion = bool(index % 2), bool((index // 2) % 2)
        path = root / f"study{index:02d}.png"
        Image.fromarray(study_image(rng, enlarged, effusion)).save(path)
        rows.append(
            {
                "path": path.name,
                "id": f"s{index:02d}",
                "subject_id": f"p{index:02d}",
                "split": "train" if index < 8 else "test",
                "report": study_report(enlarged, effusion),
            }
        )
    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


@pytest.fixture(scope="session")
def report_texts() -> list[str]:
    return [study_report(a, b) for a in (False, True) for b in (False, True)] + EXTRA_TEXTS


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory: pytest.TempPathFactory, report_texts: list[str]) -> Path:
    """A tokenizer trained on the reports and a 2-layer, 32-wide Llama, saved as a transformers folder."""
    from raddino.reportgen import build_causal_lm, train_report_tokenizer

    folder = tmp_path_factory.mktemp("tiny-lm")
    tokenizer = train_report_tokenizer(report_texts * 4, vocab_size=300)
    build_causal_lm(tokenizer, folder, hidden_size=32, num_layers=2, num_heads=2, seed=0)
    return folder
