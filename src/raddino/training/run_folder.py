"""A training run's folder: the merged config, the checkpoints and the pointer to the newest one.

``RUN/checkpoints/step_XXXXXXX.pt`` (``XXXXXXX`` = steps completed) are written atomically through
:mod:`raddino.io.state_file` (tensors and plain values only, read back with ``weights_only=True``, so a
planted file is refused, never run); ``RUN/checkpoints/latest.txt`` names the newest complete one, and
checkpoints beyond the newest ``keep`` are removed. Temporary files left by a process killed while saving
are removed when the run starts again.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from raddino.config import save_config
from raddino.io.atomic import atomic_write_text
from raddino.io.state_file import StateFileError, load_state, save_state

CHECKPOINT_FORMAT = "raddino.training"
_NAME = re.compile(r"^step_(\d+)\.pt$")
POINTER = "latest.txt"


class RunFolder:
    """The files of one run.

    Args:
        path: The run folder.
        what: What its checkpoints are called in messages (``report-training checkpoint``).
        restart_hint: What the user can do when a checkpoint cannot be used (``rerun with --overwrite``).
    """

    def __init__(self, path: str | Path, what: str = "training checkpoint", restart_hint: str = "") -> None:
        self.path = Path(path)
        self.checkpoints = self.path / "checkpoints"
        self.what = what
        self.restart_hint = restart_hint

    def save_config(self, config: Any, name: str = "config.yaml") -> Path:
        """Write the merged config beside the run (YAML, atomically)."""
        return save_config(config, self.path / name)

    def _found(self) -> list[tuple[int, Path]]:
        if not self.checkpoints.is_dir():
            return []
        return sorted(
            (int(match.group(1)), path)
            for path in self.checkpoints.iterdir()
            if (match := _NAME.match(path.name))
        )

    def latest(self) -> Path | None:
        """The newest complete checkpoint: the one ``latest.txt`` names, else the highest step found."""
        pointer = self.checkpoints / POINTER
        if pointer.is_file():
            candidate = self.checkpoints / pointer.read_text(encoding="utf-8").strip()
            if _NAME.match(candidate.name) and candidate.is_file():
                return candidate
        found = self._found()
        return found[-1][1] if found else None

    def save_checkpoint(self, step: int, payload: Mapping[str, Any], keep: int = 1) -> Path:
        """Write ``step_XXXXXXX.pt``, point ``latest.txt`` at it, and remove all but the newest ``keep``.

        Raises:
            StateFileError: the file could not be written (disk full); names it. The previous checkpoint
                and the pointer are left as they were.
        """
        path = self.checkpoints / f"step_{step:07d}.pt"
        save_state({"format": CHECKPOINT_FORMAT, "step": step, **payload}, path)
        try:
            atomic_write_text(self.checkpoints / POINTER, path.name + "\n")
        except OSError as error:
            raise StateFileError(f"{self.checkpoints / POINTER}: cannot write: {error}") from error
        for _, old in self._found()[: -max(keep, 1)]:
            old.unlink(missing_ok=True)
        return path

    def load_checkpoint(self, path: Path) -> dict[str, Any]:
        """Read a checkpoint safely.

        Raises:
            StateFileError: missing, corrupt, refused as unsafe, or not a checkpoint of this engine; one
                line naming the file and what to do.
        """
        try:
            state = load_state(path, self.what, self.restart_hint)
        except StateFileError as error:  # truncated or corrupt: say what to do, too
            if self.restart_hint and self.restart_hint not in str(error):
                raise StateFileError(f"{error}; {self.restart_hint}") from None
            raise
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
        for name in ("checkpoints", "metrics.jsonl", "tensorboard", *names):
            target = self.path / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            else:
                target.unlink(missing_ok=True)
