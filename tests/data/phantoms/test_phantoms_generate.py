"""Generated folders: manifest, files, DICOM round trip, determinism across workers, resume, failures."""

from __future__ import annotations

import hashlib
import os
import stat
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raddino.data.phantoms import (
    FINDINGS,
    LABELS,
    STRUCTURES,
    PhantomsError,
    PhantomSettings,
    generate_phantoms,
    plan_phantoms,
    render_phantom,
    replace_prevalence,
)
from raddino.data.phantoms import writer as writer_module
from raddino.io.failures import FailureLog
from raddino.io.images import read_image
from raddino.io.manifest import read_manifest

SIZE = 64


def _digest(folder: Path) -> dict[str, str]:
    return {
        path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != "phantoms.yaml"
    }


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("phantoms")
    settings = replace_prevalence(PhantomSettings(), support_device=0.5, pneumothorax=0.4)
    generate_phantoms(
        root,
        n=14,
        size=96,
        seed=7,
        workers=1,
        formats=("png8", "png16", "dicom"),
        settings=settings,
        progress=False,
    )
    return root


def test_manifest_has_the_project_columns_and_files_exist(made: Path) -> None:
    manifest = read_manifest(made / "manifest.csv")
    assert len(manifest) == 14
    for column in (
        "path",
        "id",
        "subject_id",
        "view",
        "split",
        *LABELS,
        "sex",
        "age",
        "weight",
        "bmi",
        "report",
    ):
        assert column in manifest.columns
    assert {"path_png16", "path_dicom"} <= set(manifest.columns)
    assert {f"mask_{name}" for name in STRUCTURES} <= set(manifest.columns)
    for row in manifest.rows:
        assert manifest.resolve(row).is_file()
        assert manifest.resolve(row, "path_dicom").is_file()
        assert row["sex"] in ("F", "M")
        assert float(row["bmi"]) > 10
        assert int(row["age"]) >= 18
        assert all(row[name] in ("0", "1") for name in LABELS)
        assert row["view"] in ("PA", "AP", "LATERAL")
        assert row["split"] in ("train", "val", "test")
        for name in STRUCTURES:
            mask = np.array(Image.open(manifest.resolve(row, f"mask_{name}")))
            assert mask.shape == (96, 96)
            assert mask.dtype == bool
        tube = np.array(Image.open(manifest.resolve(row, "mask_chest_tube")))
        assert tube.any() == (row["support_device"] == "1")
        ptx = np.array(Image.open(manifest.resolve(row, "mask_pneumothorax")))
        assert ptx.any() == (row["pneumothorax"] == "1")
        assert row["report"].startswith("FINDINGS:")
    assert (made / "errors.csv").read_text() == "path,stage,reason\n"  # listed as an output: the header alone


def test_png_and_dicom_copies_read_back_to_the_same_picture(made: Path) -> None:
    manifest = read_manifest(made / "manifest.csv")
    kinds = set()
    for row in manifest.rows:
        png8 = read_image(manifest.resolve(row)).pixels
        png16 = read_image(manifest.resolve(row, "path_png16")).pixels
        dicom = read_image(manifest.resolve(row, "path_dicom"))
        kinds.add(dicom.record.inverted)
        assert dicom.record.voi_applied
        assert "modality_lut" in dicom.record.steps
        assert dicom.pixels.shape == png16.shape == (96, 96)
        # Stored at 12 bits: within half a 12-bit step of the image, so of the 16-bit PNG too.
        assert np.abs(dicom.pixels - png16).max() <= 0.5 / 4095 + 0.5 / 65535 + 1e-6
        assert np.abs(png8 - png16).max() <= 0.5 / 255 + 0.5 / 65535 + 1e-6
    assert kinds == {True, False}  # both MONOCHROME1 and MONOCHROME2 were written


def test_files_match_the_in_memory_render(made: Path) -> None:
    spec = plan_phantoms(
        14, seed=7, settings=replace_prevalence(PhantomSettings(), support_device=0.5, pneumothorax=0.4)
    )[3]
    phantom = render_phantom(spec, 96)
    png16 = read_image(made / f"images16/{spec.image_id}.png").pixels
    assert np.abs(png16 - phantom.image).max() <= 0.5 / 65535 + 1e-6
    heart = np.array(Image.open(made / f"masks/{spec.image_id}/heart.png"))
    np.testing.assert_array_equal(heart, phantom.masks["heart"])


def test_output_does_not_depend_on_the_number_of_workers(tmp_path: Path) -> None:
    generate_phantoms(tmp_path / "one", n=10, size=SIZE, seed=3, workers=1, progress=False)
    generate_phantoms(tmp_path / "two", n=10, size=SIZE, seed=3, workers=2, progress=False)
    assert _digest(tmp_path / "one") == _digest(tmp_path / "two")
    generate_phantoms(tmp_path / "other", n=10, size=SIZE, seed=4, workers=1, progress=False)
    assert _digest(tmp_path / "one")["manifest.csv"] != _digest(tmp_path / "other")["manifest.csv"]


def test_splits_in_the_manifest_never_share_a_subject(tmp_path: Path) -> None:
    generate_phantoms(tmp_path, n=60, size=32 * 2, seed=1, workers=1, masks=False, progress=False)
    manifest = read_manifest(tmp_path / "manifest.csv")
    splits = defaultdict(set)
    for row in manifest.rows:
        splits[row["subject_id"]].add(row["split"])
    assert all(len(found) == 1 for found in splits.values())
    assert {next(iter(found)) for found in splits.values()} == {"train", "val", "test"}
    assert not any(column.startswith("mask_") for column in manifest.columns)


def test_rerun_resumes_and_redoes_only_missing_images(tmp_path: Path) -> None:
    generate_phantoms(tmp_path, n=6, size=SIZE, seed=2, workers=1, progress=False)
    before = _digest(tmp_path)
    victim = next(tmp_path.glob("images/*.png"))
    victim.unlink()
    kept = next(path for path in tmp_path.glob("images/*.png") if path != victim)
    kept_time = kept.stat().st_mtime_ns
    generate_phantoms(tmp_path, n=6, size=SIZE, seed=2, workers=1, progress=False)
    assert _digest(tmp_path) == before  # the missing image is back, byte for byte
    assert kept.stat().st_mtime_ns == kept_time  # complete phantoms were not rendered again


@pytest.mark.parametrize(
    ("umask", "folder_mode", "file_mode"), [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600)]
)
def test_mask_folders_and_files_get_the_umask_permissions(
    tmp_path: Path, umask: int, folder_mode: int, file_mode: int
) -> None:
    # Mask folders were staged with mkdtemp and renamed into place: 0700, unreadable by a teammate.
    previous = os.umask(umask)
    try:
        generate_phantoms(tmp_path, n=2, size=SIZE, seed=2, workers=1, progress=False)
    finally:
        os.umask(previous)
    folders = [tmp_path / "masks", *(tmp_path / "masks").iterdir(), tmp_path / "images"]
    assert {stat.S_IMODE(path.stat().st_mode) for path in folders} == {folder_mode}
    files = [*tmp_path.glob("masks/*/*.png"), *tmp_path.glob("images/*.png"), tmp_path / "manifest.csv"]
    assert len(files) == 2 * len(STRUCTURES) + 3
    assert {stat.S_IMODE(path.stat().st_mode) for path in files} == {file_mode}


def test_other_settings_into_the_same_folder_are_refused_unless_overwrite(tmp_path: Path) -> None:
    generate_phantoms(tmp_path, n=3, size=SIZE, seed=2, workers=1, progress=False)
    with pytest.raises(PhantomsError, match="seed: 2 there, 5 now"):
        generate_phantoms(tmp_path, n=3, size=SIZE, seed=5, workers=1, progress=False)
    generate_phantoms(tmp_path, n=3, size=SIZE, seed=5, workers=1, progress=False, overwrite=True)
    assert read_manifest(tmp_path / "manifest.csv").rows[0]["id"] == plan_phantoms(3, seed=5)[0].image_id


def test_a_failing_phantom_is_recorded_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doomed = plan_phantoms(5, seed=9)[2].image_id
    real_write = writer_module.write_dicom

    def flaky(path: Path, pixels: np.ndarray, spec: object) -> Path:
        if getattr(spec, "image_id", "") == doomed:
            raise OSError("No space left on device")
        return real_write(path, pixels, spec)  # type: ignore[arg-type]

    monkeypatch.setattr(writer_module, "write_dicom", flaky)
    generate_phantoms(tmp_path, n=5, size=SIZE, seed=9, workers=1, formats=("png8", "dicom"), progress=False)
    errors = FailureLog(tmp_path / "errors.csv").read()
    assert [row["path"] for row in errors] == [f"images/{doomed}.png"]
    assert "No space left on device" in errors[0]["reason"]
    ids = read_manifest(tmp_path / "manifest.csv").ids()
    assert len(ids) == 4
    assert doomed not in ids


def test_labels_in_the_manifest_match_the_prevalence_settings(tmp_path: Path) -> None:
    settings = replace_prevalence(PhantomSettings(), **{name: 0.0 for name in FINDINGS})
    generate_phantoms(
        tmp_path, n=8, size=SIZE, seed=0, workers=1, masks=False, settings=settings, progress=False
    )
    rows = read_manifest(tmp_path / "manifest.csv").rows
    assert all(row["no_finding"] == "1" and row["support_device"] == "0" for row in rows)
