"""prepare_images: the release's training PNGs (B-spline resize, min-max, grey PNG), layout, resume."""

from __future__ import annotations

import csv
import sys
import textwrap
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
from PIL import Image

from raddino.data import prepare as prepare_module
from raddino.data import workers as workers_module
from raddino.data.prepare import (
    PrepareConfig,
    _Task,
    output_names,
    prepare_images,
    release_training_pixels,
    resize_shorter_side,
)
from raddino.data.workers import run_parallel
from raddino.io.dicom_write import write_dicom
from raddino.io.images import read_image
from raddino.io.manifest import read_manifest, write_manifest

PATIENT = {"PatientName": "DOE^JANE", "PatientID": "MRN-99812", "PatientBirthDate": "19600101"}


def _chest(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth 12-bit image (stored in uint16) with structure at several scales."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    picture = np.sin(6 * x) * np.cos(4 * y) + 0.3 * rng.standard_normal((height, width))
    return np.round((picture - picture.min()) / np.ptp(picture) * 4095).astype(np.uint16)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# --- the transform ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shape", "size", "expected"),
    [((60, 40), 20, (30, 20)), ((40, 60), 20, (20, 30)), ((50, 50), 20, (20, 20)), ((30, 45), 60, (60, 90))],
)
def test_shorter_side_becomes_size_and_aspect_is_kept(shape: tuple, size: int, expected: tuple) -> None:
    assert resize_shorter_side(np.random.default_rng(0).random(shape), size).shape == expected


def test_release_size_from_a_detector_sized_image() -> None:
    assert resize_shorter_side(np.zeros((3000, 2500), np.float32), 518).shape == (622, 518)


def test_cubic_b_spline_reproduces_constants_and_smooth_signals() -> None:
    constant = resize_shorter_side(np.full((40, 64), 0.3, np.float32), 20)
    np.testing.assert_allclose(constant, 0.3, atol=1e-6)
    # Halving a slow sine: output pixel j covers input pixels 2j and 2j+1, so its centre is input 2j + 0.5
    # (pixel-extent alignment, grid_mode=True); corner alignment would put it at j * (n - 1) / (m - 1).
    columns = np.arange(200)
    signal = np.sin(2 * np.pi * columns / 100.0)[None, :].repeat(100, axis=0).astype(np.float32)
    halved = resize_shorter_side(signal, 50)  # (50, 100)
    centres = 2 * np.arange(100) + 0.5
    np.testing.assert_allclose(halved[25, 5:-5], np.sin(2 * np.pi * centres / 100.0)[5:-5], atol=2e-3)


def test_release_training_pixels_span_exactly_zero_to_one() -> None:
    step = np.zeros((64, 48), np.float32)
    step[:, 24:] = 1.0  # a sharp edge makes the cubic spline overshoot; min-max after the resize absorbs it
    out = release_training_pixels(step, 24)
    assert out.shape == (32, 24)
    assert (out.min(), out.max()) == (0.0, 1.0)
    assert release_training_pixels(step, None).shape == (64, 48)


# --- output names ----------------------------------------------------------------------------------------


def test_output_names_keep_layout_and_handle_uids_collisions_and_outside_paths(tmp_path: Path) -> None:
    rows = [
        {"path": "p10/s1/view.dcm", "id": "a"},
        {"path": "1.2.840.113619.2.55", "id": "b"},
        {"path": "dup.png", "id": "c"},
        {"path": "dup.dcm", "id": "d"},
        {"path": str(tmp_path.parent / "outside" / "x.jpg"), "id": "site2/x"},
        {"path": "../up/y.dcm", "id": "y"},
    ]
    write_manifest(rows, tmp_path / "m.csv")
    names = output_names(read_manifest(tmp_path / "m.csv"))
    assert names == [
        PurePosixPath("p10/s1/view.png"),
        PurePosixPath("1.2.840.113619.2.55.png"),  # a UID's last part is not an extension
        PurePosixPath("dup.png.png"),
        PurePosixPath("dup.dcm.png"),
        PurePosixPath("site2/x.png"),  # outside the manifest's folder: named by its id
        PurePosixPath("y.png"),
    ]


# --- whole runs ------------------------------------------------------------------------------------------


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """Two good DICOMs (one MONOCHROME1 with patient data), a 16-bit PNG, a JPEG, and three bad files."""
    root = tmp_path / "in"
    write_dicom(root / "p1" / "chest.dcm", _chest(60, 48, 1), bits_stored=12, attributes=PATIENT)
    write_dicom(root / "p2" / "inverted.dcm", _chest(48, 72, 2), photometric="MONOCHROME1", bits_stored=12)
    Image.fromarray(_chest(40, 40, 3) * 16).save(root / "png16.png")
    Image.fromarray((_chest(44, 40, 4) // 16).astype(np.uint8)).save(root / "photo.jpg", quality=95)
    (root / "notes.png").write_text("not an image")
    write_dicom(root / "flat.dcm", np.full((30, 30), 5, np.uint16))
    (root / "p3").mkdir()
    (root / "p3" / "empty.dcm").write_bytes(b"")
    return root


def test_prepare_writes_release_pngs_manifest_and_errors(mixed_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = prepare_images(mixed_folder, out, size=24, workers=1, progress=False)
    assert (summary.total, summary.written, summary.skipped, summary.failed) == (7, 4, 0, 3)
    assert summary.succeeded == 4
    assert "4 image(s), 0 already done, 3 failed, of 7" in summary.line()

    manifest = _rows(out / "manifest.csv")
    assert [row["path"] for row in manifest] == ["p1/chest.png", "p2/inverted.png", "photo.png", "png16.png"]
    assert [row["id"] for row in manifest] == ["p1/chest", "p2/inverted", "photo", "png16"]
    for row in manifest:
        with Image.open(out / row["path"]) as image:
            assert image.mode == "L"
            assert min(image.size) == 24
            values = np.asarray(image)
        assert (values.min(), values.max()) == (0, 255)  # min-max to the full 8-bit range
    with Image.open(out / "p1" / "chest.png") as image:
        assert image.size == (24, 30)  # (width, height) of a 60×48 input

    errors = {Path(row["path"]).name: row for row in _rows(out / "errors.csv")}
    assert set(errors) == {"notes.png", "flat.dcm", "empty.dcm"}
    assert "uniform image" in errors["flat.dcm"]["reason"]
    assert "empty file" in errors["empty.dcm"]["reason"]
    assert errors["notes.png"]["stage"] == "read"
    assert (out / "prepare.yaml").read_text().startswith("size: 24\nbits: 8\n")


def test_output_equals_the_release_transform_of_the_read_image(mixed_folder: Path, tmp_path: Path) -> None:
    prepare_images(mixed_folder, tmp_path / "out", size=24, workers=1, progress=False)
    source = read_image(mixed_folder / "p2" / "inverted.dcm")
    expected = np.rint(release_training_pixels(source.pixels, 24) * 255).astype(np.uint8)
    with Image.open(tmp_path / "out" / "p2" / "inverted.png") as image:
        np.testing.assert_array_equal(np.asarray(image), expected)


def test_monochrome1_output_matches_the_same_picture_stored_as_monochrome2(tmp_path: Path) -> None:
    stored = _chest(50, 40, 7)
    write_dicom(tmp_path / "in" / "m1.dcm", stored, photometric="MONOCHROME1", bits_stored=12)
    write_dicom(tmp_path / "in" / "m2.dcm", (4095 - stored).astype(np.uint16), bits_stored=12)
    prepare_images(tmp_path / "in", tmp_path / "out", size=20, workers=1, progress=False)
    with Image.open(tmp_path / "out" / "m1.png") as one, Image.open(tmp_path / "out" / "m2.png") as two:
        np.testing.assert_array_equal(np.asarray(one), np.asarray(two))


def test_16_bit_outputs(mixed_folder: Path, tmp_path: Path) -> None:
    prepare_images(mixed_folder, tmp_path / "out", size=24, bits=16, workers=1, progress=False)
    with Image.open(tmp_path / "out" / "p1" / "chest.png") as image:
        assert image.mode == "I;16"
        values = np.asarray(image)
    assert (values.min(), values.max()) == (0, 65535)
    assert len(np.unique(values)) > 256  # more levels than 8 bits could hold


def test_no_patient_data_reaches_the_outputs(mixed_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare_images(mixed_folder, out, size=24, workers=1, progress=False)
    with Image.open(out / "p1" / "chest.png") as image:
        assert image.info == {}  # no text chunks, no metadata copied from the DICOM header
    for path in out.rglob("*"):
        if path.is_file():
            payload = path.read_bytes()
            for value in PATIENT.values():
                assert value.encode() not in payload, (path, value)


def test_rerun_resumes_and_overwrite_rewrites(mixed_folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare_images(mixed_folder, out, size=24, workers=1, progress=False)
    kept = out / "photo.png"
    stamp = kept.stat().st_mtime_ns
    (out / "png16.png").unlink()  # as if the first run had been interrupted before this one

    again = prepare_images(mixed_folder, out, size=24, workers=1, progress=False)
    assert (again.written, again.skipped, again.failed) == (1, 3, 3)
    assert kept.stat().st_mtime_ns == stamp
    assert len(_rows(out / "manifest.csv")) == 4
    assert len(_rows(out / "errors.csv")) == 3  # failures retried and listed once, not appended twice

    forced = prepare_images(mixed_folder, out, size=24, workers=1, overwrite=True, progress=False)
    assert (forced.written, forced.skipped) == (4, 0)


def test_manifest_input_carries_its_columns_over(tmp_path: Path) -> None:
    write_dicom(tmp_path / "data" / "a.dcm", _chest(40, 40, 1))
    write_dicom(tmp_path / "data" / "b.dcm", _chest(40, 40, 2))
    rows = [
        {"path": "data/a.dcm", "id": "subject1-a", "subject_id": "s1", "split": "train", "nodule": "1"},
        {"path": "data/b.dcm", "id": "subject2-b", "subject_id": "s2", "split": "test", "nodule": "0"},
        {"path": "data/missing.dcm", "id": "subject3-c", "subject_id": "s3", "split": "val", "nodule": "0"},
    ]
    write_manifest(rows, tmp_path / "labels.csv")
    summary = prepare_images(tmp_path / "labels.csv", tmp_path / "out", size=20, workers=1, progress=False)
    assert (summary.written, summary.failed) == (2, 1)
    written = read_manifest(tmp_path / "out" / "manifest.csv")
    assert written.columns == ["path", "id", "subject_id", "split", "nodule"]
    assert written.rows[1] == {
        "path": "data/b.png",
        "id": "subject2-b",
        "subject_id": "s2",
        "split": "test",
        "nodule": "0",
    }
    assert written.paths()[0].is_file()  # the output manifest is a valid input manifest
    assert "no such file" in _rows(tmp_path / "out" / "errors.csv")[0]["reason"]


def test_invalid_settings_are_refused(tmp_path: Path) -> None:
    for settings in ({"bits": 12}, {"size": 0}, {"workers": 0}):
        with pytest.raises(ValueError, match="must be"):
            PrepareConfig(**settings)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="bits must be 8 or 16"):
        prepare_images(tmp_path, tmp_path / "out", bits=12, progress=False)  # type: ignore[arg-type]


@pytest.mark.slow
def test_worker_processes_give_the_same_pngs(mixed_folder: Path, tmp_path: Path) -> None:
    prepare_images(mixed_folder, tmp_path / "one", size=24, workers=1, progress=False)
    summary = prepare_images(mixed_folder, tmp_path / "two", size=24, workers=2, progress=False)
    assert (summary.written, summary.failed) == (4, 3)
    for row in _rows(tmp_path / "one" / "manifest.csv"):
        assert (tmp_path / "one" / row["path"]).read_bytes() == (tmp_path / "two" / row["path"]).read_bytes()
    assert _rows(tmp_path / "one" / "manifest.csv") == _rows(tmp_path / "two" / "manifest.csv")


CRASHING_WORKER = """
import os
from raddino.data.prepare import _prepare_one

def work(task):
    if "crash" in os.path.basename(task.source):
        os._exit(3)  # what a segfaulting decoder or the out-of-memory killer looks like from outside
    return _prepare_one(task)
"""


@pytest.mark.slow
def test_a_crashing_worker_fails_only_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mixed_folder: Path
) -> None:
    (tmp_path / "helpers").mkdir()
    (tmp_path / "helpers" / "crashing_worker.py").write_text(textwrap.dedent(CRASHING_WORKER))
    monkeypatch.syspath_prepend(str(tmp_path / "helpers"))
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    def spawned(workers: int) -> ProcessPoolExecutor:
        # Spawned workers get this process's sys.path, so they can import the helper module.
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))

    crashing_worker = __import__("crashing_worker")
    sources = [
        mixed_folder / "p1" / "chest.dcm",
        mixed_folder / "p2" / "inverted.dcm",
        mixed_folder / "crash.dcm",
    ]
    write_dicom(sources[-1], _chest(40, 40, 9))
    tasks = [
        _Task(index, str(source), str(tmp_path / "out" / f"{index}.png"), 24, 8, "auto", None)
        for index, source in enumerate(sources)
    ]
    results = sorted(run_parallel(tasks, 2, crashing_worker.work, prepare_module._died, pool=spawned))
    assert [index for index, _, _ in results] == [0, 1, 2]
    assert results[0] == (0, None, "")
    assert results[1] == (1, None, "")
    assert results[2] == (2, "read", prepare_module._DIED)
    assert (tmp_path / "out" / "0.png").is_file()
    assert (tmp_path / "out" / "1.png").is_file()
    assert "crashing_worker" in sys.modules


def test_workers_that_cannot_start_give_a_clear_error(
    mixed_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    class DeadPool:  # what a pool looks like when its workers die while starting
        def __init__(self, *args: object, **kwargs: object) -> None:
            pass

        def submit(self, *args: object) -> Future:
            future: Future = Future()
            future.set_exception(BrokenProcessPool("a child process terminated abruptly"))
            return future

        def shutdown(self, **kwargs: object) -> None:
            pass

    monkeypatch.setattr(workers_module, "ProcessPoolExecutor", DeadPool)
    with pytest.raises(RuntimeError, match=r"worker processes could not start.*or use workers=1"):
        prepare_images(mixed_folder, tmp_path / "out", size=24, workers=2, progress=False)
    assert _rows(tmp_path / "out" / "manifest.csv") == []  # nothing claimed as written
