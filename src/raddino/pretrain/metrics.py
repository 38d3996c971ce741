"""Where a run's numbers go: ``RUN/metrics.jsonl`` always, TensorBoard when it is installed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class MetricsLog:
    """Appends one JSON object per logged iteration; mirrors scalars to TensorBoard when importable.

    Args:
        run: The run folder (``metrics.jsonl`` and ``tensorboard/`` go there).
        resume_from: On resume, records of iterations after this one (written after the checkpoint the
            run restarts from) are dropped, so the log reads as one uninterrupted run.
        enabled: False on ranks other than 0.
    """

    def __init__(self, run: Path, resume_from: int | None = None, enabled: bool = True) -> None:
        self.path = Path(run) / "metrics.jsonl"
        self.enabled = enabled
        self._writer: Any = None
        if not enabled:
            return
        if resume_from is not None and self.path.exists():
            kept = [
                line
                for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("iteration", 0) <= resume_from
            ]
            self.path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        elif resume_from is None:
            self.path.unlink(missing_ok=True)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        self._writer = SummaryWriter(log_dir=str(Path(run) / "tensorboard"), purge_step=resume_from)

    def log(self, iteration: int, values: dict[str, float]) -> None:
        """Record the values of one iteration (1-based count of completed iterations)."""
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"iteration": iteration, **values}) + "\n")
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(key, value, iteration)

    def close(self) -> None:
        """Flush TensorBoard."""
        if self._writer is not None:
            self._writer.close()


def read_metrics(run: Path) -> list[dict[str, float]]:
    """The records of ``RUN/metrics.jsonl``, in order."""
    path = Path(run) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
