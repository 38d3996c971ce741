"""A training run's folder: the merged config, the checkpoints and the pointer to the newest one.

``RUN/checkpoints/step_XXXXXXX.pt`` (``XXXXXXX`` = steps completed) are written atomically through
:mod:`raddino.io.state_file` (tensors and plain values only, read back with ``weights_only=True``, so a
planted file is refused, never run); ``RUN/checkpoints/latest.txt`` names the newest complete one, and
checkpoints beyond the newest ``keep`` are removed. Temporary files left by a process killed while saving
are removed when the run starts again.

A task that kept its own checkpoints before it ran on the engine names their layout
(:class:`LegacyLayout`): while a run has no checkpoint of the engine's, its newest file of the earlier
layout is the one to resume from, read as safely and turned into the engine's payload, so runs started
by an earlier raddino go on exactly.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raddino.config import save_config
from raddino.io.atomic import atomic_write_text
from raddino.io.state_file import StateFileError, load_state, save_state

CHECKPOINT_FORMAT = "raddino.training"
_NAME = re.compile(r"^step_(\d+)\.pt$")
POINTER = "latest.txt"


@dataclass(frozen=True)
class LegacyLayout:
    """Checkpoints a task wrote before it ran on the engine, in ``RUN/checkpoints`` beside the engine's.

    Attributes:
        pattern: Their file names, the step as its first group (``iteration_XXXXXXX.pt``).
        pointer: The file in ``RUN/checkpoints`` naming the newest of them (``last.txt``).
        upgrade: ``(payload, path) -> payload`` in the engine's format (``format``, ``step``,
            ``optimization``, ``task``, …) for a file without a ``format`` entry; raises
            :class:`~raddino.io.state_file.StateFileError` (one line) when the file is not one of them.
    """

    pattern: re.Pattern[str]
    pointer: str
    upgrade: Callable[[dict[str, Any], Path], dict[str, Any]]


class RunFolder:
    """The files of one run.

    Args:
        path: The run folder.
        what: What its checkpoints are called in messages (``report-training checkpoint``).
        restart_hint: What the user can do when a checkpoint cannot be used (``rerun with --overwrite``).
        legacy: The layout of checkpoints written before the task ran on the engine, if it had one.
    """

    def __init__(
        self,
        path: str | Path,
        what: str = "training checkpoint",
        restart_hint: str = "",
        legacy: LegacyLayout | None = None,
    ) -> None:
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.what = what
        self.restart_hint = restart_hint
        self.legacy = legacy

    def save_config(self, config: Any, name: str = "config.yaml") -> Path:
        """Write the merged config beside the run (YAML, atomically)."""
        return save_config(config, self.path / name)

    def _found(self, pattern: re.Pattern[str] = _NAME) -> list[tuple[int, Path]]:
        if not self.checkpoints.is_dir():
            return []
        return sorted(
            (int(match.group(1)), path)
            for path in self.checkpoints.iterdir()
            if (match := pattern.match(path.name))
        )

    def _newest(self, pattern: re.Pattern[str], pointer_name: str) -> Path | None:
        pointer = self.checkpoints / pointer_name
        if pointer.is_file():
            candidate = self.checkpoints / pointer.read_text(encoding="utf-8").strip()
            if pattern.match(candidate.name) and candidate.is_file():
                return candidate
        found = self._found(pattern)
        return found[-1][1] if found else None

    def latest(self) -> Path | None:
        """The newest complete checkpoint: the one ``latest.txt`` names, else the highest step found;
        without any, the newest of the :class:`LegacyLayout` (its pointer's, else the highest step)."""
        newest = self._newest(_NAME, POINTER)
        if newest is None and self.legacy is not None:
            newest = self._newest(self.legacy.pattern, self.legacy.pointer)
        return newest

    def is_legacy(self, path: Path) -> bool:
        """Whether ``path`` is named as the :class:`LegacyLayout`'s checkpoints are."""
        return self.legacy is not None and bool(self.legacy.pattern.match(Path(path).name))

    def checkpoint_path(self, step: int) -> Path:
        """``RUN/checkpoints/step_XXXXXXX.pt`` of the checkpoint after ``step`` steps."""
        return self.checkpoints / f"step_{step:07d}.pt"

    def save_checkpoint(self, step: int, payload: Mapping[str, Any], keep: int = 1) -> Path:
        """Write ``step_XXXXXXX.pt``, point ``latest.txt`` at it, and remove all but the newest ``keep``.

        Raises:
            StateFileError: the file could not be written (disk full); names it. The previous checkpoint
                and the pointer are left as they were.
        """
        path = self.checkpoint_path(step)
        save_state({"format": CHECKPOINT_FORMAT, "step": step, **payload}, path)
        try:
            atomic_write_text(self.checkpoints / POINTER, path.name + "\n")
        except OSError as error:
            raise StateFileError(f"{self.checkpoints / POINTER}: cannot write: {error}") from error
        for _, old in self._found()[: -max(keep, 1)]:
            old.unlink(missing_ok=True)
        return path

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        """Read a checkpoint safely (one of the :class:`LegacyLayout`'s is upgraded to the engine's).

        Raises:
            StateFileError: missing, corrupt, refused as unsafe, or not a checkpoint of this engine; one
                line naming the file and what to do.
        """
        path = Path(path)
        try:
            state = load_state(path, self.what, self.restart_hint)
        except StateFileError as error:  # truncated or corrupt: say what to do, too
            if self.restart_hint and self.restart_hint not in str(error):
                raise StateFileError(f"{error}; {self.restart_hint}") from None
            raise
        if "format" not in state and self.legacy is not None:
            state = self.legacy.upgrade(state, path)
        if state.get("format") != CHECKPOINT_FORMAT or not isinstance(state.get("step"), int):
            hint = f"; {self.restart_hint}" if self.restart_hint else ""
            raise StateFileError(f"{path}: not a {self.what} of this raddino version{hint}")
        return state

    def remove_stale_temporaries(self, names: Iterable[str] = ()) -> list[Path]:
        """Delete temporary files that a kill during an atomic write left behind.

        Args:
            names: Files of the run folder itself (``metrics.jsonl``) whose temporaries to remove too;
                everything temporary in ``checkpoints/`` goes.
        """
        stale: list[Path] = []
        if self.checkpoints.is_dir():
            stale += [p for p in self.checkpoints.iterdir() if p.name.startswith(".") and p.suffix == ".tmp"]
        for name in names:
            stale += list(self.path.glob(f".{name}.*.tmp"))
        for path in stale:
            path.unlink(missing_ok=True)
        return stale

    def clear(self, names: Iterable[str] = ()) -> None:
        """Remove the checkpoints, the logs and ``names`` (files or folders of the run folder)."""
        for name in ("checkpoints", "metrics.jsonl", "tensorboard", "tracking.json", *names):
            target = self.path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
