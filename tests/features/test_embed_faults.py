"""``raddino embed`` under faults: damaged models, impossible options, a full disk, two runs on one output,
preprocessing that cannot be found. Each ends in one line naming the file or option, and leaves nothing
behind that a rerun could trust by mistake."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from typer.testing import CliRunner

from raddino.cli import app
from raddino.data.preprocess import PreprocessConfig
from raddino.features import embed as embed_module
from raddino.features.embed import EmbedConfig, embed
from raddino.features.options import EmbedOptionError, resolve_preprocess
from raddino.features.store import EmbeddingWriteError, read_embeddings
from raddino.io.lock import LockError, OutputLock, this_host
from raddino.models import load_encoder, save_dinov2_weights


def _config(tmp_path: Path, source: Path, model: Path | str, **overrides) -> EmbedConfig:
    values = {"input": str(source), "model": str(model), "out": str(tmp_path / "out" / "emb.parquet")}
    values.update({"batch_size": 2, "num_workers": 0, "device": "cpu"})
    values.update(overrides)
    return EmbedConfig(**values)


def _cli(source: Path, model: Path | str, out: Path, *options: str):
    arguments = ["embed", str(source), "--model", str(model), "--out", str(out), "--workers", "0"]
    return CliRunner().invoke(app, [*arguments, "--device", "cpu", *options])


def _error_lines(result) -> list[str]:
    """The lines of the command's output that report an error (a traceback has more than one)."""
    assert "Traceback" not in result.output
    return [line for line in result.output.splitlines() if line.startswith("error:")]


def _files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*")) if folder.exists() else []


# ------------------------------------------------------------------------------------- damaged models
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_model_weights_are_one_line_naming_the_file(tmp_path, xray_folder, tiny_encoder_dir, damage):
    model = tmp_path / "model"
    shutil.copytree(tiny_encoder_dir, model)
    weights = model / "model.safetensors"
    content = weights.read_bytes()
    weights.write_bytes(content[: len(content) - 100] if damage == "truncated" else os.urandom(2000))

    with pytest.raises(ValueError, match="not a readable safetensors file"):
        embed(_config(tmp_path, xray_folder, model))
    result = _cli(xray_folder, model, tmp_path / "cli" / "emb.parquet")

    assert result.exit_code == 2
    errors = _error_lines(result)
    assert len(errors) == 1
    assert errors[0].startswith(f"error: {weights}: not a readable safetensors file")
    assert _files_under(tmp_path / "out") == []
    assert _files_under(tmp_path / "cli") == []


# ------------------------------------------------------------------------------- options checked first
@pytest.fixture
def odd_crop(tmp_path: Path) -> Path:
    """A preprocessor_config.json whose 50-px crop does not split into the test encoder's 14-px patches."""
    path = tmp_path / "odd_crop.json"
    config = PreprocessConfig(shortest_edge=50, crop_size=(50, 50))
    path.write_text(json.dumps(config.to_processor_dict()))
    return path


@pytest.mark.parametrize(
    ("options", "named"),
    [
        (["--layer", "99"], "layers: block 99 does not exist"),
        (["--layer", "-3"], "layers: block -3 does not exist"),
        (["--layer", "1", "--layer", "-1"], "layers: 1 and -1 name the same block"),
        (["--precision", "fp16"], "precision: fp16 needs a GPU"),
        (["--batch-size", "0"], "batch_size must be at least 1"),
        (["--set", "shard_size=0"], "shard_size must be at least 1"),
        (["--column", "path"], "columns: 'path' is a column every embeddings row has"),
        (["--set", "dicom_tags=[PatientSx]"], "dicom_tags: 'PatientSx' is not a DICOM keyword"),
        (
            ["--patch-tokens", "--set", "tokens_format=npz", "--set", "tokens_dtype=bfloat16"],
            "tokens_dtype: bfloat16 cannot be stored as npz",
        ),
        (["--preprocess", "ODD_CROP"], "do not split into 14-px patches"),
        (["--preprocess", "no/such/folder"], "preprocess: no/such/folder"),
    ],
)
def test_bad_options_fail_before_any_output(
    tmp_path, xray_folder, tiny_encoder_dir, odd_crop, options, named
):
    options = [str(odd_crop) if option == "ODD_CROP" else option for option in options]
    result = _cli(xray_folder, tiny_encoder_dir, tmp_path / "out" / "emb.parquet", *options)

    assert result.exit_code == 2, result.output
    errors = _error_lines(result)
    assert len(errors) == 1
    assert named in errors[0]
    assert _files_under(tmp_path / "out") == []


def test_layer_out_of_range_through_the_library(tmp_path, xray_folder, tiny_encoder_dir):
    with pytest.raises(EmbedOptionError, match=r"which has 2 blocks \(0\.\.1, or -2\.\.-1"):
        embed(_config(tmp_path, xray_folder, tiny_encoder_dir, layers=[0, 99]))
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------ disk full
def _full_disk_on_shard(monkeypatch, shard: int) -> None:
    """``pq.write_table`` raises ENOSPC when writing the ``shard``-th part file (0-based)."""
    original = pq.write_table
    calls = {"parts": 0}

    def write_table(table, where, *args, **kwargs):
        if "part-" in Path(str(where)).name:
            calls["parts"] += 1
            if calls["parts"] == shard + 1:
                raise OSError(errno.ENOSPC, "Error writing bytes to file. Detail: [errno 28] No space left")
        return original(table, where, *args, **kwargs)

    monkeypatch.setattr(pq, "write_table", write_table)


def test_disk_full_names_the_file_keeps_no_partial_shard_and_a_rerun_resumes(
    tmp_path, xray_folder, tiny_encoder_dir, monkeypatch
):
    config = _config(tmp_path, xray_folder, tiny_encoder_dir, shard_size=2, patch_tokens=True)
    reference = embed(_config(tmp_path / "reference", xray_folder, tiny_encoder_dir, patch_tokens=True))

    with monkeypatch.context() as patch:
        _full_disk_on_shard(patch, shard=1)
        with pytest.raises(EmbeddingWriteError) as caught:
            embed(config)
    message = str(caught.value)
    shards = tmp_path / "out" / "emb_shards"
    assert "\n" not in message
    assert message.startswith(str(shards / "part-"))
    assert "No space left on device" in message
    assert "rerun the same command to resume" in message
    # The first shard is complete; the second left neither its tokens nor a temporary file.
    assert len(list(shards.glob("part-*.parquet"))) == 1
    assert len(list(shards.glob("tokens-*"))) == 1
    assert not [path for path in shards.iterdir() if path.name.startswith(".")]
    assert not (tmp_path / "out" / "emb.parquet.lock").exists()  # released on the error

    resumed = embed(config)
    assert (resumed.skipped, resumed.embedded) == (2, 3)
    expected_ids, expected = read_embeddings(reference.out)
    ids, values = read_embeddings(resumed.out)
    order = [ids.index(row_id) for row_id in expected_ids]
    assert np.array_equal(values[order], expected)


def test_disk_full_at_the_cli_is_one_line_and_non_zero(tmp_path, xray_folder, tiny_encoder_dir, monkeypatch):
    _full_disk_on_shard(monkeypatch, shard=0)
    result = _cli(xray_folder, tiny_encoder_dir, tmp_path / "emb.parquet", "--set", "shard_size=2")

    assert result.exit_code == 2
    errors = _error_lines(result)
    assert len(errors) == 1
    assert errors[0].startswith(f"error: {tmp_path / 'emb_shards' / 'part-'}")
    assert "No space left on device" in errors[0]
    assert list((tmp_path / "emb_shards").glob("part-*")) == []


# ------------------------------------------------------------------------------- one run per output
def test_second_run_on_a_locked_output_is_refused(tmp_path, xray_folder, tiny_encoder_dir):
    out = tmp_path / "out" / "emb.parquet"
    with OutputLock(tmp_path / "out" / "emb.parquet.lock"):  # as a run in progress holds it
        with pytest.raises(LockError, match=f"in use by process {os.getpid()} on {this_host()}"):
            embed(_config(tmp_path, xray_folder, tiny_encoder_dir))
        result = _cli(xray_folder, tiny_encoder_dir, out)
        assert result.exit_code == 3
        errors = _error_lines(result)
        assert len(errors) == 1
        assert "wait for that run to finish" in errors[0]
        assert _files_under(tmp_path / "out") == ["emb.parquet.lock"]  # nothing else written


def test_stale_lock_of_a_dead_run_is_taken_over(tmp_path, xray_folder, tiny_encoder_dir, caplog):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = tmp_path / "out" / "emb.parquet.lock"
    lock.parent.mkdir()
    lock.write_text(json.dumps({"pid": dead.pid, "host": this_host()}))

    with caplog.at_level(logging.WARNING, logger="raddino.io.lock"):
        summary = embed(_config(tmp_path, xray_folder, tiny_encoder_dir))
    assert summary.embedded == 5
    assert f"taking over the lock of process {dead.pid}" in caplog.text
    assert not lock.exists()  # released at the end


# ------------------------------------------------------------------------------------- preprocessing
def _offline(monkeypatch) -> list[str]:
    asked: list[str] = []

    def unreachable(repo_id, filename, **kwargs):
        asked.append(f"{repo_id}/{filename}")
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr("huggingface_hub.hf_hub_download", unreachable)
    return asked


def test_unreachable_hub_is_an_error_for_other_models_not_rad_dino_values(
    tmp_path, xray_folder, tiny_encoder_dir, monkeypatch
):
    asked = _offline(monkeypatch)
    with pytest.raises(EmbedOptionError) as caught:
        resolve_preprocess("facebook/dinov2-base")
    message = str(caught.value)
    assert message.startswith("facebook/dinov2-base: no preprocessing config could be found")
    assert "--preprocess" in message
    assert "Name or service not known" in message

    # RAD-DINO's own release falls back to its values, and says so.
    config, origin = resolve_preprocess("microsoft/rad-dino")
    assert config.image_mean == (0.5307,) * 3
    assert "RAD-DINO's release values" in origin
    assert asked == [
        "facebook/dinov2-base/preprocessor_config.json",
        "microsoft/rad-dino/preprocessor_config.json",
    ]

    # Through embed: the (cached) model loads, the preprocessing cannot be found, nothing is written.
    monkeypatch.setattr(embed_module, "load_encoder", lambda source: load_encoder(tiny_encoder_dir))
    result = _cli(xray_folder, "facebook/dinov2-base", tmp_path / "out" / "emb.parquet")
    assert result.exit_code == 2
    assert len(_error_lines(result)) == 1
    assert _files_under(tmp_path / "out") == []
    summary = embed(_config(tmp_path, xray_folder, "facebook/dinov2-base", preprocess=str(tiny_encoder_dir)))
    assert summary.embedded == 5


def test_the_models_own_preprocessing_is_used_and_logged(tmp_path, tiny_encoder_dir, monkeypatch, caplog):
    model = tmp_path / "imagenet-model"
    shutil.copytree(tiny_encoder_dir, model)
    imagenet = PreprocessConfig(
        shortest_edge=56,
        crop_size=(56, 56),
        image_mean=(0.485, 0.456, 0.406),
        image_std=(0.229, 0.224, 0.225),
    )
    (model / "preprocessor_config.json").write_text(json.dumps(imagenet.to_processor_dict()))

    with caplog.at_level(logging.INFO, logger="raddino.features.embed"):
        used = embed_module.preprocess_config_for(str(model))
    assert used.image_mean == (0.485, 0.456, 0.406)
    assert f"preprocessing from {model / 'preprocessor_config.json'}: " in caplog.text
    assert "mean (0.485, 0.456, 0.406) std (0.229, 0.224, 0.225)" in caplog.text

    # A bare DINOv2 weights file has no preprocessing of its own: an error, unless one is given.
    bare = save_dinov2_weights(load_encoder(tiny_encoder_dir), tmp_path / "bare" / "weights.safetensors")
    with pytest.raises(EmbedOptionError, match="no preprocessing config could be found"):
        resolve_preprocess(str(bare))
    assert resolve_preprocess(str(bare), "rad-dino")[0] == PreprocessConfig()
    assert resolve_preprocess(str(bare), str(model))[0] == imagenet
    assert resolve_preprocess("preset:test")[0] == PreprocessConfig()


# --------------------------------------------------------------------------------------------- kill -9
@pytest.mark.slow
def test_kill_9_then_rerun_is_bit_identical_to_an_uninterrupted_run(tmp_path, tiny_encoder_dir):
    rng = np.random.default_rng(0)
    images = tmp_path / "images"
    images.mkdir()
    for index in range(120):
        Image.fromarray(rng.integers(0, 256, (60, 60), dtype=np.uint8)).save(images / f"{index:03d}.png")
    out = tmp_path / "killed" / "emb.parquet"
    options = ["--batch-size", "1", "--set", "shard_size=1", "--workers", "0", "--device", "cpu"]
    command = [sys.executable, "-m", "raddino", "embed", str(images), "--model", str(tiny_encoder_dir)]
    child = subprocess.Popen([*command, "--out", str(out), *options], stderr=subprocess.DEVNULL)
    shards = out.with_name("emb_shards")
    deadline = time.monotonic() + 120
    while (
        len(list(shards.glob("part-*.parquet"))) < 3 and child.poll() is None and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    child.kill()
    child.wait()
    assert child.returncode == -9, "the run ended before it could be killed"
    assert out.with_name("emb.parquet.lock").exists()  # left behind by the killed run
    (shards / ".part-leftover.parquet.x1y2.tmp").write_bytes(b"half a shard")  # as a kill mid-write leaves

    config = {"batch_size": 1, "shard_size": 1, "num_workers": 0, "device": "cpu"}
    resumed = embed(EmbedConfig(input=str(images), model=str(tiny_encoder_dir), out=str(out), **config))
    assert resumed.skipped >= 3
    assert resumed.skipped + resumed.embedded == 120
    assert not list(shards.glob(".*.tmp"))
    assert not out.with_name("emb.parquet.lock").exists()
    reference = tmp_path / "reference" / "emb.parquet"
    embed(EmbedConfig(input=str(images), model=str(tiny_encoder_dir), out=str(reference), **config))
    expected_ids, expected = read_embeddings(reference)
    ids, values = read_embeddings(out)
    assert sorted(ids) == sorted(expected_ids)
    assert np.array_equal(values[[ids.index(row_id) for row_id in expected_ids]], expected)
