"""prepare_images under faults: a full disk stops the run naming the file, ``kill -9`` leaves no process
behind, and the resumed run is byte-identical to an uninterrupted one."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from raddino.data.prepare import OutputStorageError, prepare_images
from raddino.io.dicom_write import write_dicom
from raddino.io.manifest import write_manifest


def _chest(seed: int, side: int = 48) -> np.ndarray:
    """A smooth, non-uniform 12-bit picture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:side, 0:side] / side
    picture = np.sin(5 * x + seed) * np.cos(3 * y) + 0.2 * rng.standard_normal((side, side))
    return np.round((picture - picture.min()) / np.ptp(picture) * 4095).astype(np.uint16)


def _visible_files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` whose path has no hidden part, with its bytes."""
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not any(part.startswith(".") for part in path.relative_to(folder).parts)
    }


def test_a_full_disk_stops_the_run_naming_the_file_and_leaves_nothing_corrupt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(3):
        write_dicom(tmp_path / "in" / f"img{index}.dcm", _chest(index))
    out = tmp_path / "out"
    prepare_images(tmp_path / "in", out, size=24, workers=1, progress=False)
    (out / "img1.png").unlink()
    (out / "img2.png").unlink()
    real_save = Image.Image.save

    def full_disk(image: Image.Image, target: object, *args: object, **kwargs: object) -> None:
        if "img2" in str(target):
            real_save(image, target, *args, **kwargs)
            return
        Path(str(target)).write_bytes(b"\x89PNG\r\n\x1a\n half")  # the disk fills up mid-file
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Image.Image, "save", full_disk)
    with pytest.raises(OutputStorageError) as caught:
        prepare_images(tmp_path / "in", out, size=24, workers=1, progress=False)
    assert str(caught.value) == (
        f"[Errno 28] No space left on device: '{out / 'img1.png'}'; "
        "outputs so far are complete: free space and rerun"
    )
    assert sorted(os.listdir(out)) == ["errors.csv", "img0.png", "manifest.csv", "prepare.yaml"]  # no half
    assert (out / "manifest.csv").read_text().splitlines() == ["path,id", "img0.png,img0"]
    assert (out / "errors.csv").read_text() == "path,stage,reason\n"  # the inputs are fine: none listed

    monkeypatch.setattr(Image.Image, "save", real_save)
    resumed = prepare_images(tmp_path / "in", out, size=24, workers=1, progress=False)
    assert (resumed.written, resumed.skipped, resumed.failed) == (2, 1, 0)


def _process_table() -> dict[int, tuple[int, str, int]]:
    """``pid -> (parent pid, state, start time)`` of every process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), fields[0], int(fields[19]))
    return table


def _descendants(root: int) -> dict[int, int]:
    """``pid -> start time`` of every process below ``root``."""
    table = _process_table()
    children: dict[int, list[int]] = {}
    for pid, (parent, _, _) in table.items():
        children.setdefault(parent, []).append(pid)
    found, pending = {}, [root]
    while pending:
        for child in children.get(pending.pop(), []):
            found[child] = table[child][2]
            pending.append(child)
    return found


def _still_running(processes: dict[int, int]) -> list[int]:
    """Those of ``processes`` that still run (a zombie waiting for its new parent does not count)."""
    table = _process_table()
    return [
        pid
        for pid, started in processes.items()
        if pid in table and table[pid][2] == started and table[pid][1] != "Z"
    ]


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads the process tree from /proc")
def test_kill_9_leaves_no_process_behind_and_the_resumed_run_is_byte_identical(tmp_path: Path) -> None:
    inputs = tmp_path / "in"
    for index in range(10):
        write_dicom(inputs / f"img{index}.dcm", _chest(index))
    # Two inputs that are named pipes: a worker opening one blocks until someone writes to it, so the run
    # is certainly still working, both workers busy, when it is killed.
    late = [inputs / "late0.dcm", inputs / "late1.dcm"]
    for path in late:
        os.mkfifo(path)
    rows = [{"path": f"img{index}.dcm", "id": f"img{index}"} for index in range(10)]
    write_manifest([*rows, *({"path": path.name, "id": path.stem} for path in late)], inputs / "all.csv")

    out = tmp_path / "out"
    command = [sys.executable, "-m", "raddino", "prepare", str(inputs / "all.csv"), str(out)]
    run = subprocess.Popen([*command, "--size", "24", "--workers", "2", "--quiet"], stderr=subprocess.PIPE)
    processes: dict[int, int] = {}
    try:
        deadline = time.monotonic() + 120
        while len(list(out.glob("img*.png"))) < 10 or len(processes) < 4:
            assert run.poll() is None, run.stderr.read().decode() if run.stderr else ""
            assert time.monotonic() < deadline, "prepare did not get through the ten images in time"
            time.sleep(0.1)
            processes = _descendants(run.pid)  # two workers, the fork server, the resource tracker
        run.send_signal(signal.SIGKILL)
        run.wait()
        deadline = time.monotonic() + 10
        while _still_running(processes) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _still_running(processes) == []
    finally:
        for pid in _still_running(processes):
            os.kill(pid, signal.SIGKILL)
        if run.poll() is None:
            run.kill()

    for index, path in enumerate(late):  # the late files arrive; the rerun resumes
        path.unlink()
        write_dicom(path, _chest(20 + index))
    resumed = prepare_images(inputs / "all.csv", out, size=24, workers=1, progress=False)
    assert (resumed.written, resumed.skipped, resumed.failed) == (2, 10, 0)
    reference = prepare_images(inputs / "all.csv", tmp_path / "reference", size=24, workers=1, progress=False)
    assert reference.written == 12
    assert _visible_files(out) == _visible_files(tmp_path / "reference")
