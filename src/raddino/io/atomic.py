"""Atomic file writes: write to a temporary file in the target's folder, then rename over the target.

A reader never sees a half-written output, and an interrupted command leaves either the old file or
nothing, so a rerun can trust whatever it finds.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


def _umask() -> int:
    """The process umask. Linux reports it in /proc; elsewhere it is read by setting and restoring it."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is renamed to ``target``.

    Use for writers that need a file name (``safetensors.torch.save_file``, ``pyarrow.parquet``,
    ``PIL.Image.save``). On error the temporary file is removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    temporary = Path(name)
    # mkstemp makes the file private (0600); an output should get the permissions any new file gets.
    os.chmod(temporary, 0o666 & ~_umask())
    try:
        yield temporary
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_open(target: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary file for writing that replaces ``target`` when the block ends without error."""
    binary = "b" in mode
    with (
        atomic_path(target) as temporary,
        open(  # the file must close before the rename
            temporary, mode, encoding=None if binary else encoding, newline=None if binary else ""
        ) as handle,
    ):
        yield handle
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_text(target: str | Path, text: str) -> Path:
    """Write ``text`` to ``target`` atomically; returns ``target`` as a Path."""
    with atomic_open(target, "w") as handle:
        handle.write(text)
    return Path(target)


def atomic_write_bytes(target: str | Path, payload: bytes) -> Path:
    """Write ``payload`` to ``target`` atomically; returns ``target`` as a Path."""
    with atomic_open(target, "wb") as handle:
        handle.write(payload)
    return Path(target)
