"""Per-item failure records for long runs: one bad file is written down, never fatal.

Each command that walks many inputs keeps a :class:`FailureLog`; failures are appended to an errors CSV
(``path,reason`` plus optional columns) as they happen, so nothing is lost if the run is interrupted,
and the command's summary reports how many failed. A command that lists the CSV among its outputs calls
``reset()`` (a fresh list) or ``begin()`` (a resumed one) first, so the file exists, header only, when
nothing fails.
"""

from __future__ import annotations

import csv
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from raddino.io.atomic import atomic_write_text

ERROR_COLUMNS = ("path", "stage", "reason")


@dataclass
class FailureLog:
    """An append-only errors CSV with columns ``path, stage, reason``.

    Args:
        path: The CSV file. Created with a header by ``reset()`` / ``begin()`` or on the first failure;
            kept across reruns so a resumed run adds to it (``reset()`` starts afresh).
    """

    path: Path
    count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def reset(self) -> None:
        """Start afresh: the failures of an earlier run are dropped, the file holds the header only."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, ",".join(ERROR_COLUMNS) + "\n")
            self.count = 0

    def begin(self) -> None:
        """Create the file with its header unless it exists (a resumed run keeps the earlier failures)."""
        with self._lock:
            if self.path.exists() and self.path.stat().st_size > 0:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, ",".join(ERROR_COLUMNS) + "\n")

    def record(self, path: str | Path, reason: str, stage: str = "read") -> None:
        """Append one failure and flush it to disk at once."""
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new_file = not self.path.exists() or self.path.stat().st_size == 0
            with open(self.path, "a", newline="", encoding="utf-8") as handle:
                writer = csv.writer(handle)
                if new_file:
                    writer.writerow(ERROR_COLUMNS)
                writer.writerow([str(path), stage, " ".join(str(reason).split())])
                handle.flush()
                os.fsync(handle.fileno())
            self.count += 1

    def read(self) -> list[dict[str, str]]:
        """All failures recorded in the file so far (including earlier runs)."""
        if not self.path.exists():
            return []
        with open(self.path, newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))
