"""``raddino embed``: values, bad files, resume, settings checks, tokens, the CLI's exit codes."""

from __future__ import annotations

import csv
import struct
import zlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from typer.testing import CliRunner

from raddino.cli import app
from raddino.data.preprocess import InferencePreprocessor, PreprocessConfig
from raddino.features.embed import EmbedConfig, embed
from raddino.features.store import EmbeddingStoreError, read_embeddings, read_tokens
from raddino.io.images import read_image
from raddino.io.manifest import write_manifest
from raddino.models import load_encoder


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims ``width``×``height`` but carries (almost) no pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + header
    ihdr = struct.pack(">I", len(header)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + ihdr)


@pytest.fixture
def mixed_folder(xray_folder: Path) -> Path:
    """Five good PNGs plus every kind of bad file a real folder holds."""
    (xray_folder / "empty.png").write_bytes(b"")
    (xray_folder / "notes.png").write_text("this is not an image")
    good = (xray_folder / "image0.png").read_bytes()
    (xray_folder / "truncated.png").write_bytes(good[: len(good) // 3])
    (xray_folder / "tiny.png").write_bytes(b"")
    from PIL import Image

    Image.fromarray(np.full((3, 3), 7, np.uint8) + np.eye(3, dtype=np.uint8)).save(xray_folder / "tiny.png")
    _png_header_only(xray_folder / "huge.png", 60000, 60000)
    (xray_folder / "broken_link.png").symlink_to(xray_folder / "does-not-exist.png")
    return xray_folder


def _config(tmp_path: Path, source: Path, model: Path, **overrides) -> EmbedConfig:
    values = {"input": str(source), "model": str(model), "out": str(tmp_path / "out" / "emb.parquet")}
    values.update({"batch_size": 2, "num_workers": 0, "device": "cpu"})
    values.update(overrides)
    return EmbedConfig(**values)


def test_embeds_good_files_and_lists_each_bad_one(tmp_path, mixed_folder, tiny_encoder_dir):
    summary = embed(_config(tmp_path, mixed_folder, tiny_encoder_dir))

    assert (summary.embedded, summary.failed, summary.exit_code) == (5, 6, 0)
    ids, cls = read_embeddings(summary.out)
    assert sorted(ids) == ["image0", "image2", "image4", "sub/image1", "sub/image3"]
    encoder = load_encoder(tiny_encoder_dir)
    assert cls.shape == (5, encoder.embed_dim)
    assert np.isfinite(cls).all()
    with open(summary.errors, newline="") as handle:
        failures = {Path(row["path"]).name: row["reason"] for row in csv.DictReader(handle)}
    assert set(failures) == {
        "empty.png",
        "notes.png",
        "truncated.png",
        "tiny.png",
        "huge.png",
        "broken_link.png",
    }
    assert all(reason.strip() for reason in failures.values())


def test_vectors_equal_the_encoder_on_the_preprocessed_image(tmp_path, xray_folder, tiny_encoder_dir):
    summary = embed(_config(tmp_path, xray_folder, tiny_encoder_dir, layers=[0]))
    assert (tmp_path / "out" / "emb_errors.csv").read_text() == "path,stage,reason\n"  # none failed

    encoder = load_encoder(tiny_encoder_dir).eval()
    preprocess = InferencePreprocessor(PreprocessConfig.from_model_folder(tiny_encoder_dir))
    pixels = preprocess(read_image(xray_folder / "sub" / "image3.png"))[None]  # (1, 3, H, W)
    with torch.no_grad():
        expected = encoder.forward_features(pixels)
        first_block = encoder.forward_intermediates(pixels, [0])[0]
    table = pq.read_table(summary.out).to_pylist()
    row = next(row for row in table if row["id"] == "sub/image3")
    np.testing.assert_allclose(row["cls"], expected.cls[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(
        row["patch_mean"], expected.patch_tokens[0].mean(dim=(1, 2)).numpy(), atol=1e-5
    )
    stored = read_tokens(summary.out, "sub/image3", "layer0_cls").float()
    np.testing.assert_allclose(stored.numpy(), first_block.cls[0].numpy(), atol=2e-2)  # float16 storage


def test_patch_tokens_are_stored_per_image(tmp_path, xray_folder, tiny_encoder_dir):
    summary = embed(_config(tmp_path, xray_folder, tiny_encoder_dir, patch_tokens=True, tokens_format="npz"))

    encoder = load_encoder(tiny_encoder_dir)
    grid = encoder.image_size // encoder.patch_size
    tokens = read_tokens(summary.out, "image2")
    assert tokens.shape == (grid * grid, encoder.embed_dim)
    row = next(r for r in pq.read_table(summary.out).to_pylist() if r["id"] == "image2")
    np.testing.assert_allclose(tokens.float().mean(0).numpy(), row["patch_mean"], atol=1e-2)


def test_interrupted_run_resumes_without_recomputing_or_duplicating(
    tmp_path, xray_folder, tiny_encoder_dir, monkeypatch
):
    from raddino.features import embed as embed_module

    calls = {"batches": 0}
    original = embed_module._encode

    def failing_encode(encoder, pixels, config):
        calls["batches"] += 1
        if calls["batches"] == 3:
            raise KeyboardInterrupt  # as if the job were killed during the third batch
        return original(encoder, pixels, config)

    config = _config(tmp_path, xray_folder, tiny_encoder_dir, shard_size=2)
    monkeypatch.setattr(embed_module, "_encode", failing_encode)
    with pytest.raises(KeyboardInterrupt):
        embed(config)
    monkeypatch.setattr(embed_module, "_encode", original)

    summary = embed(config)
    assert (summary.skipped, summary.embedded) == (4, 1)
    ids, values = read_embeddings(summary.out)
    assert sorted(ids) == sorted(set(ids))
    assert len(ids) == 5
    # Bit for bit what an uninterrupted run gives.
    uninterrupted = embed(_config(tmp_path / "uninterrupted", xray_folder, tiny_encoder_dir, shard_size=2))
    expected_ids, expected = read_embeddings(uninterrupted.out)
    assert np.array_equal(values[[ids.index(row_id) for row_id in expected_ids]], expected)

    again = embed(config)
    assert (again.skipped, again.embedded, again.failed) == (5, 0, 0)


def test_resume_with_other_settings_is_refused_and_overwrite_starts_afresh(
    tmp_path, xray_folder, tiny_encoder_dir
):
    embed(_config(tmp_path, xray_folder, tiny_encoder_dir))
    with pytest.raises(EmbeddingStoreError, match="layers"):
        embed(_config(tmp_path, xray_folder, tiny_encoder_dir, layers=[0]))
    summary = embed(_config(tmp_path, xray_folder, tiny_encoder_dir, layers=[0], overwrite=True))
    assert (summary.skipped, summary.embedded) == (0, 5)


def test_manifest_input_copies_asked_columns(tmp_path, xray_folder, tiny_encoder_dir):
    rows = [
        {"path": str(xray_folder / "image0.png"), "id": "a", "subject_id": "s1", "split": "train"},
        {"path": str(xray_folder / "image2.png"), "id": "b", "subject_id": "s2", "split": "test"},
    ]
    manifest = write_manifest(rows, tmp_path / "manifest.csv")
    summary = embed(_config(tmp_path, manifest, tiny_encoder_dir, columns=["split"]))
    table = {row["id"]: row for row in pq.read_table(summary.out).to_pylist()}
    assert {key: row["split"] for key, row in table.items()} == {"a": "train", "b": "test"}
    assert "subject_id" not in next(iter(table.values()))

    with pytest.raises(Exception, match="no column 'label'"):
        embed(_config(tmp_path, manifest, tiny_encoder_dir, columns=["label"], overwrite=True))


def test_cli_exit_status_follows_strict(tmp_path, mixed_folder, tiny_encoder_dir):
    runner = CliRunner()
    base = [
        "embed",
        str(mixed_folder),
        "--model",
        str(tiny_encoder_dir),
        "--workers",
        "0",
        "--device",
        "cpu",
    ]
    lenient = runner.invoke(app, [*base, "--out", str(tmp_path / "a.parquet")])
    assert lenient.exit_code == 0, lenient.output
    assert "5 embedded" in lenient.output
    assert "6 failed" in lenient.output
    assert (tmp_path / "a_config.yaml").exists()

    strict = runner.invoke(app, [*base, "--out", str(tmp_path / "b.parquet"), "--strict"])
    assert strict.exit_code == 1

    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.png").write_text("nope")
    nothing = runner.invoke(
        app,
        [
            "embed",
            str(only_bad),
            "--model",
            str(tiny_encoder_dir),
            "--out",
            str(tmp_path / "c.parquet"),
            "--workers",
            "0",
        ],
    )
    assert nothing.exit_code == 1

    misspelt = runner.invoke(app, [*base, "--out", str(tmp_path / "d.parquet"), "--set", "batch_sise=4"])
    assert misspelt.exit_code == 2
    assert "batch_sise" in misspelt.output
    assert "batch_size" in misspelt.output
