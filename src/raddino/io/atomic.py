"""Atomic writes: write to a temporary file (or folder) beside the target, then rename over the target.

A reader never sees a half-written output, and an interrupted command leaves either the old output or
nothing, so a rerun can trust whatever it finds. Outputs get the permissions the user's umask gives any
new file (a teammate on a shared cluster can read an export), not the private ones ``mkstemp`` and
``mkdtemp`` create. A failed system call (disk full, quota, permissions) is re-raised naming the output
that could not be written, never a hidden temporary or nothing at all.
"""

from __future__ import annotations

import contextlib
import os
import shutil
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
def naming_os_errors(target: str | Path, *stand_ins: str | Path) -> Iterator[None]:
    """Re-raise a system-call error that names no file, or names a stand-in, as the same error on ``target``.

    ``write()`` and ``fsync()`` on a full disk raise ``OSError(ENOSPC)`` without a file name; inside this
    block it becomes ``[Errno 28] No space left on device: 'target'``, of the same class. Errors that already
    name another file, and ``OSError``s without an errno (a library's own), pass through unchanged.

    Args:
        target: The output to name.
        stand_ins: Paths that stand for ``target`` (its temporary file or folder).
    """
    try:
        yield
    except OSError as error:
        if error.errno is None:
            raise
        named = Path(target) if error.filename is None else _as_target(error.filename, target, stand_ins)
        if named is None:
            raise
        raise _on_target(error, named) from error


def _on_target(error: OSError, target: str | Path) -> OSError:
    """The same system-call error (same errno, hence same class: ``PermissionError``...) on ``target``."""
    if error.errno is None:
        return error
    return OSError(error.errno, error.strerror or os.strerror(error.errno), os.fspath(target))


def _as_target(filename: object, target: str | Path, stand_ins: tuple[str | Path, ...]) -> Path | None:
    """``filename`` as the output it stands for: a stand-in is ``target``, a file in one is under it."""
    if not isinstance(filename, (str, os.PathLike)):
        return None
    path = Path(os.fspath(filename))
    for stand_in in map(Path, stand_ins):
        if path == stand_in:
            return Path(target)
        if stand_in in path.parents:
            return Path(target) / path.relative_to(stand_in)
    return None


@contextlib.contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success it is renamed to ``target``.

    Use for writers that need a file name (``safetensors.torch.save_file``, ``pyarrow.parquet``,
    ``PIL.Image.save``). On error the temporary file is removed and ``target`` is untouched.

    Raises:
        OSError: the write or the rename failed; the error names ``target`` (see ``naming_os_errors``).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as error:  # it names a random temporary; the output is what cannot be written
        raise _on_target(error, target) from error
    os.close(handle)
    temporary = Path(name)
    try:
        with naming_os_errors(target, temporary):
            yield temporary
            # mkstemp makes the file private (0600), and so do some writers that replace it (safetensors):
            # an output should get the permissions any new file gets.
            os.chmod(temporary, 0o666 & ~_umask())
            os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_directory(target: str | Path, *, merge: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder beside ``target``; on success its contents become ``target``.

    Before the move, the staging folder and everything in it get the permissions the umask gives new
    folders (``0o777 & ~umask``) and files (``0o666 & ~umask``), whatever created them.

    Args:
        target: The output folder.
        merge: ``False``: an existing ``target`` is swapped out whole (old contents removed). ``True``:
            each entry of the staging folder replaces the entry of the same name in an existing
            ``target``, and other entries there are kept (a model folder that also holds a DINO head).

    Raises:
        OSError: a write or the move failed; the error names ``target``. On error the staging folder is
            removed and ``target`` is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    except OSError as error:
        raise _on_target(error, target) from error
    try:
        with naming_os_errors(target, staging):
            yield staging
            _open_permissions(staging)
            if merge and target.is_dir():
                for entry in sorted(staging.iterdir()):
                    destination = target / entry.name
                    if destination.is_dir() and not destination.is_symlink():
                        shutil.rmtree(destination)
                    os.replace(entry, destination)
            elif target.is_dir() and not target.is_symlink():
                _swap_in(staging, target)
            else:
                os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _swap_in(staging: Path, target: Path) -> None:
    """Replace the folder ``target`` by ``staging``; the old folder is put back if the move fails."""
    retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
    try:
        os.replace(target, retired / target.name)
        try:
            os.replace(staging, target)
        except BaseException:
            os.replace(retired / target.name, target)
            raise
    finally:
        shutil.rmtree(retired, ignore_errors=True)


def _open_permissions(folder: Path) -> None:
    """Give ``folder`` and everything under it the umask's permissions for new folders and files."""
    umask = _umask()
    os.chmod(folder, 0o777 & ~umask)
    for root, folders, files in os.walk(folder):
        for name in folders:
            os.chmod(os.path.join(root, name), 0o777 & ~umask)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o666 & ~umask)


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
