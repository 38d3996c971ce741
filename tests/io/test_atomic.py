"""Atomic writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from raddino.io.atomic import atomic_open, atomic_path, atomic_write_bytes, atomic_write_text


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
