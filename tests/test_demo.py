"""``raddino demo``: the README's main command runs end to end on built-in data and resumes."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from raddino.cli import app
from raddino.evaluate.embedding_store import read_embeddings
from raddino.io.manifest import read_manifest


@pytest.mark.slow
def test_demo_embeds_every_phantom_and_a_rerun_resumes(tmp_path):
    out = tmp_path / "demo"
    first = CliRunner().invoke(app, ["demo", "--out", str(out), "--images", "12", "--size", "56"])
    assert first.exit_code == 0, first.output
    assert "12 embedded" in first.output

    manifest = read_manifest(out / "phantoms" / "manifest.csv")
    ids, cls = read_embeddings(out / "embeddings.parquet")
    assert sorted(ids) == sorted(manifest.ids())
    assert cls.shape == (12, 32)

    second = CliRunner().invoke(app, ["demo", "--out", str(out), "--images", "12", "--size", "56"])
    assert second.exit_code == 0, second.output
    assert "0 embedded" in second.output
    assert "12 already done" in second.output
