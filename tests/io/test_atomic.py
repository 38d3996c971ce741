"""Atomic writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

import pytest

from raddino.io.atomic import (
    atomic_directory,
    atomic_open,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
)


def test_write_text_creates_folders_and_replaces(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "a" / "b" / "c.txt", "first")
    atomic_write_text(target, "second\nline")
    assert target.read_text() == "second\nline"
    assert os.listdir(target.parent) == ["c.txt"]


def test_write_bytes(tmp_path: Path) -> None:
    assert atomic_write_bytes(tmp_path / "x.bin", b"\x00\xff").read_bytes() == b"\x00\xff"


def test_failure_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = atomic_write_text(tmp_path / "c.txt", "old")

    def interrupted_write() -> None:
        with atomic_open(target) as handle:
            handle.write("new, half written")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        interrupted_write()
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["c.txt"]


def test_atomic_path_gives_a_sibling_temporary_name(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    with atomic_path(target) as temporary:
        assert temporary.parent == tmp_path
        assert temporary != target
        assert not target.exists()
        temporary.write_bytes(b"weights")
    assert target.read_bytes() == b"weights"
    assert not temporary.exists()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_outputs_get_normal_permissions_not_private_ones(tmp_path: Path, umask: int, mode: int) -> None:
    # mkstemp creates 0600 files; outputs shared with a team must follow the umask like any other file.
    previous = os.umask(umask)
    try:
        target = atomic_write_text(tmp_path / "shared.csv", "path\n")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(target.stat().st_mode) == mode


def test_a_full_disk_names_the_output_and_keeps_the_old_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = atomic_write_text(tmp_path / "manifest.csv", "old")

    def full(descriptor: int) -> None:  # delayed allocation: a full disk often shows first at fsync
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match=r"No space left on device: '.*manifest\.csv'") as caught:
        atomic_write_text(target, "new")
    assert caught.value.errno == errno.ENOSPC
    assert caught.value.filename == str(target)
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["manifest.csv"]


def test_an_error_on_the_temporary_names_the_output_and_others_pass_through(tmp_path: Path) -> None:
    target = tmp_path / "model.safetensors"
    with pytest.raises(PermissionError) as caught, atomic_path(target) as temporary:
        raise PermissionError(errno.EACCES, "Permission denied", str(temporary))
    assert caught.value.filename == str(target)  # the hidden temporary is gone; the output is what failed

    source = tmp_path / "source.dcm"
    with pytest.raises(FileNotFoundError) as missing, atomic_path(target):
        source.read_bytes()
    assert missing.value.filename == str(source)  # an error about another file keeps its own name
    with pytest.raises(OSError, match=r"^cannot write mode P as JPEG$"), atomic_path(target):
        raise OSError("cannot write mode P as JPEG")  # a library's own OSError, without errno
    assert os.listdir(tmp_path) == []


def test_a_folder_that_refuses_new_files_names_the_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(prefix: str, suffix: str, dir: Path) -> tuple[int, str]:
        raise PermissionError(errno.EACCES, "Permission denied", f"{dir}/{prefix}k2j4{suffix}")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    monkeypatch.setattr(tempfile, "mkdtemp", refused)
    with pytest.raises(PermissionError, match=r"Permission denied: '.*/a\.csv'$"):
        atomic_write_text(tmp_path / "a.csv", "")
    with (
        pytest.raises(PermissionError, match=r"Permission denied: '.*/masks'$"),
        atomic_directory(tmp_path / "masks"),
    ):
        pass


@pytest.mark.parametrize(
    ("umask", "folder_mode", "file_mode"),
    [(0o022, 0o755, 0o644), (0o077, 0o700, 0o600), (0o027, 0o750, 0o640)],
)
def test_atomic_directory_gives_umask_permissions(
    tmp_path: Path, umask: int, folder_mode: int, file_mode: int
) -> None:
    previous = os.umask(umask)
    try:
        with atomic_directory(tmp_path / "export") as staging:
            assert stat.S_IMODE(staging.stat().st_mode) == 0o700  # mkdtemp's, until it is moved in
            (staging / "config.json").write_text("{}")
            (staging / "nested").mkdir(mode=0o700)
            handle, _ = tempfile.mkstemp(dir=staging / "nested")  # a writer that makes private files
            os.close(handle)
    finally:
        os.umask(previous)
    export = tmp_path / "export"
    assert stat.S_IMODE(export.stat().st_mode) == folder_mode
    assert stat.S_IMODE((export / "nested").stat().st_mode) == folder_mode
    files = [export / "config.json", *(export / "nested").iterdir()]
    assert [stat.S_IMODE(path.stat().st_mode) for path in files] == [file_mode, file_mode]


def test_atomic_directory_swaps_or_merges_and_a_failure_changes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "masks"
    with atomic_directory(target) as staging:
        (staging / "lung.png").write_bytes(b"1")
        (staging / "heart.png").write_bytes(b"1")
    with atomic_directory(target) as staging:  # swap: the old folder's contents go
        (staging / "lung.png").write_bytes(b"2")
    assert sorted(path.name for path in target.iterdir()) == ["lung.png"]
    with atomic_directory(target, merge=True) as staging:  # merge: same names replaced, others kept
        (staging / "heart.png").write_bytes(b"3")
    assert {path.name: path.read_bytes() for path in target.iterdir()} == {
        "lung.png": b"2",
        "heart.png": b"3",
    }

    with pytest.raises(OSError, match=r"No space left on device: '.*masks'"), atomic_directory(target):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert {path.name: path.read_bytes() for path in target.iterdir()} == {
        "lung.png": b"2",
        "heart.png": b"3",
    }
    assert os.listdir(tmp_path) == ["masks"]  # no staging or retired folder left


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_safetensors_written_through_atomic_path_follow_the_umask(
    tmp_path: Path, umask: int, mode: int
) -> None:
    # Token shards and model weights are written this way; safetensors replaces the file with a 0600 one.
    import torch
    from safetensors.torch import save_file

    previous = os.umask(umask)
    try:
        with atomic_path(tmp_path / "tokens-0.safetensors") as temporary:
            save_file({"patch_tokens": torch.zeros(2, 3)}, str(temporary))
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "tokens-0.safetensors").stat().st_mode) == mode
