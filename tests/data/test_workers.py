"""Worker processes exit when the command that started them dies (pidfd, or polling where there is none)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from raddino.data.workers import worker_pool

WORKER = """
import os, sys, time
if sys.argv[2] == "poll":
    del os.pidfd_open  # as on macOS or a kernel older than 5.3
from raddino.data.workers import exit_with_parent
exit_with_parent(int(sys.argv[1]))
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX process handling")
@pytest.mark.parametrize("watch", ["pidfd", "poll"])
def test_a_worker_exits_soon_after_the_command_it_watches(watch: str) -> None:
    if watch == "pidfd" and not hasattr(os, "pidfd_open"):
        pytest.skip("no pidfd_open here")
    # The command is not the worker's parent, so only the watch (not the parent-death signal) can end it.
    command = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    worker = subprocess.Popen(
        [sys.executable, "-c", WORKER, str(command.pid), watch], stdout=subprocess.PIPE, text=True
    )
    try:
        assert worker.stdout is not None
        assert worker.stdout.readline() == "ready\n"
        time.sleep(0.2)
        assert worker.poll() is None  # alive while the command is
        command.kill()
        command.wait()
        started = time.monotonic()
        assert worker.wait(timeout=10) == 1
        assert time.monotonic() - started < 3
    finally:
        for process in (command, worker):
            if process.poll() is None:
                process.kill()
                process.wait()


def test_pool_workers_run_the_initializer_after_being_tied_to_this_process() -> None:
    with worker_pool(1, initializer=_mark) as pool:
        assert pool.submit(_marked).result() == "marked"


_state: dict[str, str] = {}


def _mark() -> None:
    _state["mark"] = "marked"


def _marked() -> str:
    return _state.get("mark", "")
