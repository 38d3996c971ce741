"""One run per output: a lock file that names its holder and is taken over when the holder has died.

A long command that writes one output (``embed`` today) holds an :class:`OutputLock` for as long as it
writes; a second run on the same output is refused with a one-line :class:`LockError` that says who
holds it, instead of doing the same work a second time beside it.

The lock file (``emb.parquet.lock``) holds the holder's PID, host, start time and command as JSON. Two
mechanisms decide whether it is held:

* the kernel's ``flock`` on the file, taken without waiting: the kernel drops it when the holder dies
  however it dies (``kill -9`` included), so holding is exclusive and free of races between two runs
  starting at once (on NFS the kernel forwards it to the server where the mount allows);
* the PID and host written in it: a lock of a process that is still alive on this host is never taken
  over, one of a dead process on this host is (with a warning), and one written on another host is
  refused, since whether its process still runs cannot be checked from here; the message says which
  file to delete if it does not.

Usage::

    with OutputLock(store.lock_path, what="embeddings output"):
        ...  # write the output
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import socket
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

try:
    import fcntl
except ImportError:  # not on Windows: fall back to the PID check alone
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

# flock errors that mean "this file system cannot lock", not "someone else holds it".
_NO_LOCKING = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class LockError(RuntimeError):
    """The output is in use by another run, or its lock file cannot be written; one line, naming it."""


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock, as written in the lock file."""

    pid: int
    host: str
    started: str = ""
    command: str = ""

    def describe(self) -> str:
        since = f", started {self.started}" if self.started else ""
        return f"process {self.pid} on {self.host}{since}"


def this_host() -> str:
    """The host name written into lock files and compared with theirs."""
    return socket.gethostname()


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process on this host (a zombie has already exited)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    try:
        # /proc/PID/stat: "pid (comm) state ..."; comm may hold spaces and parentheses.
        state = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace").rsplit(")", 1)[1]
    except (OSError, IndexError):
        return True
    return state.split()[0] not in ("Z", "X")


def _read_holder(descriptor: int) -> LockHolder | None:
    """The holder written in an open lock file, or None when it is empty or not ours."""
    try:
        text = os.pread(descriptor, 65536, 0).decode("utf-8")
        values: Any = json.loads(text) if text.strip() else None
        if not isinstance(values, dict):
            return None
        return LockHolder(
            pid=int(values["pid"]),
            host=str(values["host"]),
            started=str(values.get("started", "")),
            command=str(values.get("command", "")),
        )
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None


def _kernel_lock(descriptor: int) -> bool | None:
    """Try ``flock`` without waiting: True taken, False held by another, None not supported here."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as error:
        if error.errno in _NO_LOCKING:
            return None
        raise
    return True


def _same_file(descriptor: int, path: Path) -> bool:
    """Whether ``path`` still names the open file (a holder releasing it unlinks it first)."""
    try:
        return os.path.samestat(os.fstat(descriptor), os.stat(path))
    except FileNotFoundError:
        return False


class OutputLock:
    """Exclusive use of one output by one process; a context manager, released on exit and on error.

    Args:
        path: The lock file (created with its folder; removed on release).
        what: What it protects, for messages (``"embeddings output emb.parquet"``).
    """

    def __init__(self, path: str | Path, what: str = "output") -> None:
        self.path = Path(path)
        self.what = what
        self._descriptor: int | None = None

    @property
    def held(self) -> bool:
        return self._descriptor is not None

    def acquire(self, wait_seconds: float = 0.0, poll_seconds: float = 1.0) -> OutputLock:
        """Take the lock, waiting up to ``wait_seconds`` for a live holder to finish.

        Raises:
            LockError: a live process (or one on another host) holds it after the wait, or the lock
                file cannot be written; the message names the file and the holder.
        """
        if self.held:
            return self
        deadline = time.monotonic() + max(0.0, wait_seconds)
        announced = False
        while True:
            try:
                self._try_once()
                return self
            except _Held as held:
                if time.monotonic() >= deadline:
                    raise LockError(held.message) from None
                if not announced:
                    logger.info("%s; waiting up to %.0f s for it to finish", held.message, wait_seconds)
                    announced = True
                time.sleep(poll_seconds)

    def release(self) -> None:
        """Give the lock up (remove the file first, so a waiting run never locks a deleted file)."""
        descriptor, self._descriptor = self._descriptor, None
        if descriptor is None:
            return
        try:
            if _same_file(descriptor, self.path):
                self.path.unlink(missing_ok=True)
        finally:
            os.close(descriptor)  # drops the kernel lock

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.release()

    # ------------------------------------------------------------------------------------------ internals
    def _try_once(self) -> None:
        for _ in range(5):  # the file can be replaced between open and flock by a holder releasing it
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            except OSError as error:
                reason = error.strerror or error
                raise LockError(f"{self.path}: cannot create the lock file: {reason}") from None
            try:
                if self._take(descriptor):
                    self._descriptor = descriptor
                    return
            except BaseException:
                os.close(descriptor)
                raise
            os.close(descriptor)
        raise _Held(f"{self.path}: the lock file keeps changing; another run is starting on {self.what}")

    def _take(self, descriptor: int) -> bool:
        """Lock the open file and write ourselves in; False when it was unlinked meanwhile (retry)."""
        kernel = _kernel_lock(descriptor)
        holder = _read_holder(descriptor)
        if kernel is False:
            raise _Held(self._refusal(holder))
        if not _same_file(descriptor, self.path):
            return False
        if holder is not None:
            if holder.host != this_host():
                raise _Held(
                    self._refusal(holder)
                    + f" (its process cannot be checked from {this_host()}; delete {self.path} if that "
                    "run is no longer running)"
                )
            ours = holder.pid == os.getpid()
            # Our own PID with the kernel lock free: a lock of this process that was never released.
            if (ours and kernel is None) or (not ours and process_alive(holder.pid)):
                raise _Held(self._refusal(holder))
            logger.warning(
                "%s: taking over the lock of %s, which is no longer running", self.path, holder.describe()
            )
        record = {
            "pid": os.getpid(),
            "host": this_host(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)[:500],
        }
        try:
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, (json.dumps(record) + "\n").encode("utf-8"), 0)
            os.fsync(descriptor)
        except OSError as error:
            with contextlib.suppress(OSError):
                self.path.unlink()
            reason = error.strerror or error
            raise LockError(f"{self.path}: cannot write the lock file: {reason}") from None
        return True

    def _refusal(self, holder: LockHolder | None) -> str:
        who = holder.describe() if holder is not None else "another process"
        return (
            f"{self.path}: {self.what} is in use by {who}; wait for that run to finish or choose another "
            "output"
        )


class _Held(Exception):
    """Internal: the lock is held right now (``acquire`` may wait and try again)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
