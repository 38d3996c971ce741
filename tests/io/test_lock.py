"""``OutputLock``: a live holder refuses a second run, a dead one's lock is taken over, release always."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from raddino.io.lock import LockError, OutputLock, process_alive, this_host

_HOLDER = """
import sys, time
from raddino.io.lock import OutputLock
lock = OutputLock(sys.argv[1]).acquire()
print("held", flush=True)
sys.stdin.read()  # hold until the test closes stdin or kills us
"""


def _dead_pid() -> int:
    """The PID of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _write_holder(path: Path, pid: int, host: str | None = None) -> None:
    path.write_text(json.dumps({"pid": pid, "host": host or this_host(), "started": "2024-01-01T00:00:00"}))


def test_second_attempt_is_refused_naming_the_holder_and_release_frees_it(tmp_path: Path):
    path = tmp_path / "out" / "emb.parquet.lock"
    first = OutputLock(path, what="embeddings output").acquire()
    holder = json.loads(path.read_text())
    assert (holder["pid"], holder["host"]) == (os.getpid(), this_host())

    with pytest.raises(LockError) as refused:
        OutputLock(path, what="embeddings output").acquire()
    message = str(refused.value)
    assert "\n" not in message
    assert str(path) in message
    assert f"process {os.getpid()} on {this_host()}" in message

    first.release()
    assert not path.exists()
    with OutputLock(path) as second:
        assert second.held
    assert not path.exists()


def test_a_live_holder_in_another_process_refuses_until_it_is_killed(tmp_path: Path):
    path = tmp_path / "emb.parquet.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockError, match=f"in use by process {holder.pid} on "):
            OutputLock(path).acquire()
    finally:
        holder.kill()  # as kill -9: no release, the lock file stays behind
        holder.wait()
    assert path.exists()
    lock = OutputLock(path).acquire()  # its PID is dead: taken over
    assert json.loads(path.read_text())["pid"] == os.getpid()
    lock.release()


def test_stale_lock_of_a_dead_pid_on_this_host_is_taken_over(tmp_path: Path, caplog):
    path = tmp_path / "emb.parquet.lock"
    dead = _dead_pid()
    assert not process_alive(dead)
    _write_holder(path, dead)
    with caplog.at_level(logging.WARNING, logger="raddino.io.lock"), OutputLock(path):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert f"taking over the lock of process {dead}" in caplog.text


def test_lock_file_naming_a_live_pid_is_respected_without_a_kernel_lock(tmp_path: Path):
    path = tmp_path / "emb.parquet.lock"
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _write_holder(path, sleeper.pid)  # written by hand: the PID alone must keep the lock
        with pytest.raises(LockError, match=f"process {sleeper.pid}"):
            OutputLock(path).acquire()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_lock_of_another_host_is_refused_and_says_which_file_to_delete(tmp_path: Path):
    path = tmp_path / "emb.parquet.lock"
    _write_holder(path, _dead_pid(), host="node-that-is-not-this-one")
    with pytest.raises(LockError) as refused:
        OutputLock(path).acquire()
    assert "node-that-is-not-this-one" in str(refused.value)
    assert f"delete {path}" in str(refused.value)


def test_unreadable_lock_file_is_taken(tmp_path: Path):
    path = tmp_path / "emb.parquet.lock"
    path.write_text("not json")
    with OutputLock(path) as lock:
        assert lock.held


def test_released_when_the_run_fails(tmp_path: Path):
    path = tmp_path / "emb.parquet.lock"
    with pytest.raises(ValueError, match="boom"), OutputLock(path):
        raise ValueError("boom")
    assert not path.exists()


def test_waits_for_a_holder_that_finishes(tmp_path: Path):
    path = tmp_path / "emb.parquet.lock"
    first = OutputLock(path).acquire()
    releaser = threading.Timer(0.3, first.release)
    releaser.start()
    started = time.monotonic()
    second = OutputLock(path).acquire(wait_seconds=10, poll_seconds=0.05)
    assert second.held
    assert 0.2 < time.monotonic() - started < 5
    second.release()
    releaser.join()
    held = OutputLock(path).acquire()
    with pytest.raises(LockError, match="in use"):
        OutputLock(path).acquire(wait_seconds=0.2, poll_seconds=0.05)
    held.release()
