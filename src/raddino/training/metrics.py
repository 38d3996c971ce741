"""Where a run's numbers go: ``RUN/metrics.jsonl`` always, TensorBoard when it is installed, MLflow or W&B
when the run asks for them (:mod:`raddino.training.tracking`), and CSV views derived from the JSONL.

Keys are namespaced (``train/loss``, ``train/learning_rate``, ``val/loss``). On resume the records after
the checkpoint's step are dropped before anything is appended, and every CSV view is rewritten from the
records kept, so no log ever holds a step twice, whatever point a crash interrupted. A tracker gets the
same records: those kept that its run lacks when the log opens, then every one logged.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from raddino.io.atomic import atomic_write_text
from raddino.training.tracking import Tracker, TrackingConfig, config_params, open_tracker


@dataclass(frozen=True)
class CsvColumn:
    """One column of a CSV view: its header, the record key it shows, and a format (``.6f``, ``d``)."""

    header: str
    key: str
    format: str = ""


@dataclass(frozen=True)
class CsvView:
    """A CSV file of the records that hold ``columns[...].key`` for every column (``step`` ← ``iteration``).

    Attributes:
        name: File name inside the run folder (``train_log.csv``).
        columns: The columns, in order.
    """

    name: str
    columns: Sequence[CsvColumn]

    def header(self) -> str:
        return _csv_line([column.header for column in self.columns])

    def row(self, record: Mapping[str, Any]) -> str | None:
        """The CSV line of ``record``, or None when the record lacks one of the columns."""
        if any(column.key not in record for column in self.columns):
            return None
        return _csv_line([format(record[column.key], column.format) for column in self.columns])


EPOCH_LOGS = (
    CsvView(
        "train_log.csv",
        [
            CsvColumn("step", "iteration", "d"),
            CsvColumn("epoch", "train/epoch", "d"),
            CsvColumn("loss", "train/loss", ".6f"),
            CsvColumn("learning_rate", "train/learning_rate", ".3e"),
        ],
    ),
    CsvView(
        "val_log.csv",
        [
            CsvColumn("step", "iteration", "d"),
            CsvColumn("epoch", "val/epoch", "d"),
            CsvColumn("val_loss", "val/loss", ".6f"),
            CsvColumn("best", "val/best", "d"),
        ],
    ),
)
"""The CSV views of a task trained by epochs and validated by its loss (segmentation heads, report
generation, fine-tuning): ``train_log.csv`` per step, ``val_log.csv`` per validation."""


def _csv_line(cells: Sequence[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer).writerow(cells)
    return buffer.getvalue()


class MetricsLog:
    """Appends one JSON object per logged call; mirrors scalars to TensorBoard when importable and to the
    tracker ``tracking`` names.

    Args:
        run: The run folder (``metrics.jsonl``, ``tensorboard/`` and the CSV views go there).
        resume_from: On resume, records of iterations after this one (written after the checkpoint the
            run restarts from) are dropped, so the log reads as one uninterrupted run; None starts a new
            log.
        enabled: False on ranks other than 0.
        views: CSV files derived from the records.
        tracking: MLflow or W&B besides (None or backend ``none``: neither).
        config: The run's config (a dataclass), logged to the tracker as its parameters.

    Raises:
        TrackingError: the tracker cannot be used (not installed, its store refused); one line.
    """

    def __init__(
        self,
        run: Path,
        resume_from: int | None = None,
        enabled: bool = True,
        views: Sequence[CsvView] = (),
        tracking: TrackingConfig | None = None,
        config: Any = None,
    ) -> None:
        self.run = Path(run)
        self.path = self.run / "metrics.jsonl"
        self.enabled = enabled
        self.views = list(views)
        self._writer: Any = None
        self._tracker: Tracker | None = None
        if not enabled:
            return
        self.run.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume_from is not None:
            kept = [record for record in read_metrics(self.run) if record.get("iteration", 0) <= resume_from]
        atomic_write_text(self.path, "".join(json.dumps(record) + "\n" for record in kept))
        for view in self.views:
            lines = (view.row(record) for record in kept)
            atomic_write_text(self.run / view.name, view.header() + "".join(line for line in lines if line))
        tracker = open_tracker(tracking, self.run)
        if tracker is not None:
            tracker.start(config_params(config), config, kept)
            self._tracker = tracker
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return
        # Events at steps >= purge_step are hidden by TensorBoard's reader: those after the checkpoint.
        purge = None if resume_from is None else resume_from + 1
        self._writer = SummaryWriter(log_dir=str(self.run / "tensorboard"), purge_step=purge)

    def log(self, iteration: int, values: Mapping[str, float]) -> None:
        """Record the values of one iteration (1-based count of completed iterations)."""
        if not self.enabled:
            return
        record = {"iteration": iteration, **values}
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        for view in self.views:
            line = view.row(record)
            if line:
                with open(self.run / view.name, "a", encoding="utf-8", newline="") as handle:
                    handle.write(line)
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(key, value, iteration)
        if self._tracker is not None:
            self._tracker.log(iteration, values)

    def close(self, status: str = "FINISHED") -> None:
        """Flush TensorBoard; end the tracked run's session with ``status`` (``FAILED`` after an error)."""
        if self._tracker is not None:
            self._tracker.finish(status)
            self._tracker = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_metrics(run: Path) -> list[dict[str, float]]:
    """The records of ``RUN/metrics.jsonl``, in order (a line cut short by a kill is skipped)."""
    path = Path(run) / "metrics.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
