"""The built-in end-to-end job behind ``raddino demo`` / ``make demo``: no downloads, no user data.

Today it makes synthetic chest X-rays, builds a test-sized DINOv2 encoder saved like a release (a
transformers folder with its preprocessor config), and embeds the images. Every step reuses the library's
commands and resumes when re-run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from raddino.evaluate.embed import EmbedConfig, EmbedSummary, embed

logger = logging.getLogger(__name__)


@dataclass
class DemoResult:
    """Where the demo left its outputs."""

    manifest: Path
    model: Path
    embeddings: EmbedSummary


def run_demo(out: str | Path = "demo", n_images: int = 48, size: int = 224, seed: int = 0) -> DemoResult:
    """Run the demo into ``out``; an existing ``out`` is resumed, not redone."""
    from raddino.data.phantoms import generate_phantoms
    from raddino.data.preprocess import PreprocessConfig
    from raddino.models import Encoder

    out = Path(out)
    manifest = out / "phantoms" / "manifest.csv"
    if not manifest.exists():
        logger.info("1/3 making %d synthetic chest X-rays at %d px", n_images, size)
        manifest = generate_phantoms(out / "phantoms", n=n_images, size=size, seed=seed)
    model_dir = out / "encoder"
    if not (model_dir / "config.json").exists():
        logger.info("2/3 building a test-sized DINOv2 encoder in %s", model_dir)
        encoder = Encoder.from_preset("test", seed=seed)
        encoder.save_pretrained(
            model_dir, preprocess=PreprocessConfig(shortest_edge=size, crop_size=(size, size))
        )
    logger.info("3/3 embedding the images")
    summary = embed(
        EmbedConfig(
            input=str(manifest),
            model=str(model_dir),
            out=str(out / "embeddings.parquet"),
            columns=["split"],
            batch_size=16,
        )
    )
    return DemoResult(manifest=manifest, model=model_dir, embeddings=summary)
