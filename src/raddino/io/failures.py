"""Per-item failure records for long runs: one bad file is written down, never fatal.

Each command that walks many inputs keeps a :class:`FailureLog`; failures are appended to an errors CSV
(``path,reason`` plus optional columns) as they happen, so nothing is lost if the run is interrupted,
and the command's summary reports how many failed.
"""

from __future__ import annotations

import csv
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

ERROR_COLUMNS = ("path", "stage", "reason")


@dataclass
class FailureLog:
    """An append-only errors CSV with columns ``path, stage, reason``.

    Args:
        path: The CSV file. Created with a header on the first failure; kept across reruns so a resumed
            run adds to it (``reset()`` starts afresh).
    """

    path: Path
    count: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def reset(self) -> None:
        """Remove an errors file left by an earlier run."""
        self.path.unlink(missing_ok=True)
        self.count = 0

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
