"""``raddino shard``: tar shards readable by tarfile and webdataset, the prepare step's bytes, one errors.csv
row per bad image, resume that keeps finished shards and rewrites a cut-short one, truncation as one line."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from raddino.cli import app
from raddino.data.prepare import prepare_images
from raddino.data.shards import ShardError, ShardSettings, open_shards, write_shards
from raddino.data.shards import writer as shard_writer
from raddino.io.dicom_write import write_dicom
from raddino.io.images import read_image
from raddino.io.manifest import read_manifest

SETTINGS = ShardSettings(images_per_shard=3, size=40)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five PNG phantoms, one 12-bit DICOM (row 6) and one file that is no image (row 3)."""
    from raddino.data.phantoms import generate_phantoms

    folder = tmp_path_factory.mktemp("inputs")
    generate_phantoms(folder / "png", n=5, size=64, seed=0, workers=1, masks=False, progress=False)
    ramp = (np.arange(56 * 48, dtype=np.uint16).reshape(56, 48) * 3) % 4096
    write_dicom(folder / "png" / "images" / "s00003.dcm", ramp, bits_stored=12)  # the last row
    (folder / "png" / "images" / "s00001_zz_broken.png").write_bytes(b"not a png at all")
    return folder / "png" / "images"


@pytest.fixture(scope="module")
def shards(inputs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards") / "out"
    summary = write_shards(inputs, out, SETTINGS, workers=1, progress=False)
    assert (summary.total, summary.written, summary.failed, summary.shards) == (7, 6, 1, 3)
    return out


def _tar_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.glob("shard-*.tar"))}


def test_shards_are_plain_tar_holding_the_prepared_pngs(inputs: Path, shards: Path, tmp_path: Path) -> None:
    prepared = prepare_images(inputs, tmp_path / "prepared", size=40, workers=1, progress=False)
    png_by_id = {
        row["id"]: (tmp_path / "prepared" / row["path"]).read_bytes()
        for row in read_manifest(prepared.manifest_path).rows
    }
    seen = []
    for path in sorted(shards.glob("shard-*.tar")):
        with tarfile.open(path) as tar:
            names = tar.getnames()
            assert [name.split(".", 1)[1] for name in names] == ["png", "json"] * (len(names) // 2)
            for png_name, json_name in zip(names[::2], names[1::2], strict=True):
                meta = json.loads(tar.extractfile(json_name).read())  # type: ignore[union-attr]
                assert png_name == f"{meta['row']:09d}.png"
                assert tar.extractfile(png_name).read() == png_by_id[meta["id"]]  # type: ignore[union-attr]
                seen.append(meta["id"])
    assert sorted(seen) == sorted(png_by_id)  # the DICOM too; not the broken file
    assert len(seen) == 6


def test_webdataset_reads_the_shards(shards: Path) -> None:
    wds = pytest.importorskip("webdataset")
    urls = [str(path) for path in sorted(shards.glob("shard-*.tar"))]
    samples = list(wds.WebDataset(urls, shardshuffle=False))
    assert [sample["__key__"] for sample in samples] == [
        "000000000",
        "000000001",
        "000000002",
        *(f"{row:09d}" for row in range(4, 7)),
    ]
    assert all(sample["png"].startswith(b"\x89PNG") for sample in samples)
    assert json.loads(samples[0]["json"])["row"] == 0


def test_one_bad_image_is_one_errors_csv_row(inputs: Path, shards: Path) -> None:
    rows = (shards / "errors.csv").read_text().splitlines()
    assert len(rows) == 2  # header + the broken file
    assert str(inputs / "s00001_zz_broken.png") in rows[1]
    assert ",read," in rows[1]


def test_reader_gives_the_pixels_read_image_gives_the_prepared_file(
    inputs: Path, shards: Path, tmp_path: Path
) -> None:
    prepared = prepare_images(inputs, tmp_path / "p", size=40, bits=8, workers=1, progress=False)
    files = [tmp_path / "p" / row["path"] for row in read_manifest(prepared.manifest_path).rows]
    images = open_shards(shards)
    assert len(images) == len(files) == 6
    assert images.lengths.tolist() == [3, 2, 1]  # row 3 (the broken file) left shard 1 one short
    for index, path in enumerate(files):  # both in input order
        assert np.array_equal(images.pixels(index), read_image(path).pixels)
    assert images.locate(3) == ("shard-000001.tar", 0)


def test_resume_keeps_finished_shards_and_rewrites_a_cut_short_one(
    inputs: Path, shards: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    write_shards(inputs, out, SETTINGS, workers=1, progress=False)
    before = _tar_bytes(out)
    assert before == _tar_bytes(shards)  # no time stamps or owners: the same bytes every time
    (out / "shard-000001.index.json").unlink()  # killed between the tar's rename and its index
    (out / ".shard-000002.tar.abc123.tmp").write_bytes(b"half a shard")
    kept = (out / "shard-000000.tar").stat().st_mtime_ns
    summary = write_shards(inputs, out, SETTINGS, workers=1, progress=False)
    assert (summary.kept, summary.written, summary.failed) == (4, 2, 1)  # shard 1 (3 rows, 1 bad) rewritten
    assert _tar_bytes(out) == before
    assert (out / "shard-000000.tar").stat().st_mtime_ns == kept
    assert not list(out.glob(".*.tmp"))
    assert len((out / "errors.csv").read_text().splitlines()) == 2  # the failure listed once


def test_interrupted_run_leaves_no_partial_shard_and_resumes_to_the_same_bytes(
    inputs: Path, shards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encode = shard_writer._encode_one

    def interrupted(task):  # type: ignore[no-untyped-def]
        if task.row == 4:
            raise KeyboardInterrupt
        return encode(task)

    monkeypatch.setattr(shard_writer, "_encode_one", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        write_shards(inputs, out, SETTINGS, workers=1, progress=False)
    assert sorted(path.name for path in out.iterdir() if "shard-" in path.name) == [
        "shard-000000.index.json",
        "shard-000000.tar",
    ]
    monkeypatch.setattr(shard_writer, "_encode_one", encode)
    assert write_shards(inputs, out, SETTINGS, workers=1, progress=False).kept == 3
    assert _tar_bytes(out) == _tar_bytes(shards)


def test_other_settings_on_the_same_folder_are_refused(inputs: Path, shards: Path) -> None:
    with pytest.raises(
        ValueError, match=r"shard\.yaml: these shards were written with images_per_shard=3, not 2"
    ):
        write_shards(inputs, shards, ShardSettings(images_per_shard=2, size=40), workers=1, progress=False)


def test_truncated_shard_is_one_line_naming_the_file(shards: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for path in shards.glob("shard-*"):
        (broken / path.name).write_bytes(path.read_bytes())
    tar = broken / "shard-000001.tar"
    tar.write_bytes(tar.read_bytes()[:3000])
    with pytest.raises(ShardError) as caught:
        open_shards(broken)
    assert str(caught.value).startswith(f"{tar}: truncated or changed: 3000 bytes where its index says")
    assert "\n" not in str(caught.value)
    # Without an index (a shard written by another tool) the tar headers are checked instead.
    (broken / "shard-000001.index.json").unlink()
    with pytest.raises(ShardError, match=r"shard-000001\.tar: .*truncated|not a complete tar"):
        open_shards(broken / "shard-000001.tar")


def test_shards_written_by_webdataset_are_read_by_scanning(shards: Path, tmp_path: Path) -> None:
    wds = pytest.importorskip("webdataset")
    images = open_shards(shards)
    with wds.TarWriter(str(tmp_path / "other.tar")) as sink:
        for index in range(3):
            sink.write({"__key__": f"sample{index}", "png": images.read_bytes(index), "cls": index})
    foreign = open_shards(tmp_path / "other.tar")
    assert len(foreign) == 3
    assert np.array_equal(foreign.pixels(2), images.pixels(2))
    assert foreign.name(1).endswith("other.tar:sample1")


def test_missing_or_empty_shard_spec_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ShardError, match=r"nowhere: no such shard folder or file"):
        open_shards(tmp_path / "nowhere")
    with pytest.raises(ShardError, match=r"no \.tar shards found"):
        open_shards(str(tmp_path / "shard-*.tar"))


def test_cli_shard_summary_and_bad_input(inputs: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "shard",
            str(inputs),
            str(tmp_path / "out"),
            "--images-per-shard",
            "4",
            "--size",
            "40",
            "--workers",
            "1",
            "-q",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "sharded 6 image(s), 0 in finished shards kept, 1 failed, of 7 into 2 shard(s)" in result.output
    result = runner.invoke(app, ["shard", str(tmp_path / "missing"), str(tmp_path / "o2"), "-q"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == f"error: {tmp_path / 'missing'}: no such file or folder"
