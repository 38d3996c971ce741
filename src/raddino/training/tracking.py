"""Experiment tracking beside ``metrics.jsonl``: MLflow or Weights & Biases, fed by the engine's metrics log.

The tracker sees exactly what :class:`~raddino.training.metrics.MetricsLog` writes: every record's scalars
at its iteration (the last value of each is the run's final metric), and the run's config as parameters
(MLflow: dotted keys, ``optim.base_lr``; W&B: the nested config). ``RUN/tracking.json`` keeps the
backend, the tracking URI and the run id, so a resumed run goes on in the same tracked run. Before the
first step the tracker compares the run's history with what the backend already holds: steps it lacks
are sent (a run that turns tracking on when it resumes gets its whole history), and steps it holds are not
sent again. Steps logged after the checkpoint by a killed session stay as that session sent them; the
engine resumes exactly, so they are the values the resumed session computes again.

MLflow's default store is ``./mlruns`` in the working directory (MLflow's own convention, so
``mlflow ui`` started there lists every run), written as a local file store; any other tracking URI
(``http://…``, ``sqlite:///mlflow.db``, a folder) is used as given.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import logging
import os
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from raddino.io.atomic import atomic_write_text

logger = logging.getLogger(__name__)

TrackingBackend = Literal["none", "mlflow", "wandb"]
STATE_FILE = "tracking.json"
_PARAM_LENGTH = 6000  # MLflow's limit on a parameter value
_EXTRAS = {"mlflow": ("mlflow", "mlflow"), "wandb": ("wandb", "wandb")}  # backend: (module, extra)


class TrackingError(ValueError):
    """The tracking backend cannot be used (not installed, refused the URI or the run); one line."""


@dataclass
class TrackingConfig:
    """Where a training run is tracked besides ``metrics.jsonl`` and TensorBoard."""

    backend: TrackingBackend = "none"
    """Also log the scalars, config and final metrics to MLflow or W&B (extras raddino[mlflow] /
    raddino[wandb]); none: metrics.jsonl and TensorBoard only."""
    uri: str = ""
    """MLflow tracking URI (a server, sqlite:///mlflow.db or a folder); empty: ./mlruns in the working
    directory. Unused by W&B (set WANDB_BASE_URL for a server of your own)."""
    experiment: str = "raddino"
    """MLflow experiment or W&B project."""
    run_name: str = ""
    """Name of the tracked run; empty: the run folder's name."""
    offline: bool = False
    """W&B: write the run under RUN/wandb only, without network (upload later with wandb sync)."""


def config_tree(config: Any) -> dict[str, Any]:
    """A config (a dataclass instance or a mapping) as nested plain values, W&B's form."""
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return dataclasses.asdict(config)
    return dict(config or {})


def config_params(config: Any) -> dict[str, str]:
    """A config (dataclass or mapping) as flat ``section.field`` → text parameters, MLflow's form."""
    tree = config_tree(config)
    flat: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            flat[prefix] = (value if isinstance(value, str) else json.dumps(value))[:_PARAM_LENGTH]

    for key, value in tree.items():
        walk(str(key), value)
    return flat


class Tracker:
    """A tracked run; subclasses send to one backend. Every method is called on rank 0 only."""

    def start(self, params: Mapping[str, str], config: Any, history: Sequence[Mapping[str, Any]]) -> None:
        """Log the config and the records the backend lacks (``history``: the run's records so far)."""

    def log(self, iteration: int, values: Mapping[str, float]) -> None:
        """Log one record's scalars at ``iteration`` (steps the backend already holds are skipped)."""

    def finish(self, status: str) -> None:
        """End the session's part of the run: ``FINISHED``, ``FAILED`` or ``KILLED``."""


def _saved(run: Path) -> dict[str, str]:
    try:
        state = json.loads((run / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return state if isinstance(state, dict) else {}


def _require(backend: str) -> None:
    module, extra = _EXTRAS[backend]
    if importlib.util.find_spec(module) is None:
        raise TrackingError(
            f"tracking.backend={backend}: {module} is not installed; pip install 'raddino[{extra}]'"
        )


def save_state(run: Path, backend: str, run_id: str, **extra: str) -> None:
    """Write ``RUN/tracking.json`` (atomically): the backend, the tracked run's id and where it lives."""
    state = {"backend": backend, "run_id": run_id, **extra}
    atomic_write_text(Path(run) / STATE_FILE, json.dumps(state) + "\n")


def new_run_id() -> str:
    """A fresh run id (W&B's ids are chosen by the client; MLflow's by the store)."""
    return uuid.uuid4().hex[:16]


def timestamp_ms() -> int:
    return int(time.time() * 1000)


def allow_file_store(uri: str) -> None:
    """MLflow 3 refuses local file stores unless ``MLFLOW_ALLOW_FILE_STORE`` is set; a folder is what the
    user asked for here, so it is allowed (a value the user set is kept)."""
    if "://" not in uri or uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


def _open_uri(tracking: TrackingConfig, saved: Mapping[str, str]) -> str:
    """The tracking URI: the given one (a folder as an absolute ``file:`` URI), else the one the run was
    tracked in, else ``./mlruns``."""
    uri = tracking.uri or (saved.get("uri", "") if saved.get("backend") == "mlflow" else "")
    if not uri:
        return (Path.cwd() / "mlruns").resolve().as_uri()
    if "://" not in uri and not uri.startswith("file:"):
        return Path(uri).expanduser().resolve().as_uri()
    return uri


class MlflowTracker(Tracker):
    """An MLflow run: parameters from the config, metrics at the engine's steps, the run's status.

    Args:
        tracking: Where (``uri``, ``experiment``, ``run_name``).
        run: The run folder (``tracking.json``).
        name: The tracked run's name.
        saved: ``tracking.json`` of an earlier session; its run is continued when the URI is the same.
    """

    def __init__(self, tracking: TrackingConfig, run: Path, name: str, saved: Mapping[str, str]) -> None:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        self.uri = _open_uri(tracking, saved)
        allow_file_store(self.uri)
        self.held: dict[str, int] = {}
        self._failed = False
        same = saved.get("backend") == "mlflow" and saved.get("uri") == self.uri
        reuse = saved.get("run_id") if same else None
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            self.resumed = reuse is not None and self._exists(reuse)
            if self.resumed:
                self.run_id = str(reuse)
                self.client.update_run(self.run_id, status="RUNNING")
            else:
                found = self.client.get_experiment_by_name(tracking.experiment)
                experiment = found.experiment_id if found else None
                experiment = experiment or self.client.create_experiment(tracking.experiment)
                tags = {"raddino.run_folder": str(run.resolve())}
                self.run_id = self.client.create_run(experiment, run_name=name, tags=tags).info.run_id
        except MlflowException as error:
            raise TrackingError(f"tracking.uri={self.uri}: {_one_line(error)}") from None
        save_state(run, "mlflow", self.run_id, uri=self.uri)
        logger.info("MLflow run %s in %s (experiment %s)", self.run_id, self.uri, tracking.experiment)

    def _exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_run(run_id).info.lifecycle_stage == "active"
        except MlflowException:
            return False

    def start(self, params: Mapping[str, str], config: Any, history: Sequence[Mapping[str, Any]]) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self._start(params, history)
        except MlflowException as error:
            raise TrackingError(f"tracking.uri={self.uri}: {_one_line(error)}") from None

    def _start(self, params: Mapping[str, str], history: Sequence[Mapping[str, Any]]) -> None:
        from mlflow.entities import Param

        if self.resumed:
            data = self.client.get_run(self.run_id).data
            for key in data.metrics:
                self.held[key] = max(m.step for m in self.client.get_metric_history(self.run_id, key))
            changed = sorted(k for k, v in params.items() if k in data.params and data.params[k] != v)
            if changed:  # MLflow parameters cannot change; the run folder's config has the new values
                logger.warning("MLflow keeps the first values of %s (changed on resume)", ", ".join(changed))
            params = {k: v for k, v in params.items() if k not in data.params}
        items = [Param(key, value) for key, value in params.items()]
        for first in range(0, len(items), 100):  # MLflow takes at most 100 parameters a batch
            self.client.log_batch(self.run_id, params=items[first : first + 100])
        for record in history:
            self.log(int(record["iteration"]), record)

    def log(self, iteration: int, values: Mapping[str, Any]) -> None:
        from mlflow.entities import Metric

        if self._failed:
            return
        now = timestamp_ms()
        metrics = [
            Metric(key, float(value), now, iteration)
            for key, value in values.items()
            if _is_scalar(value) and key != "iteration" and iteration > self.held.get(key, -1)
        ]
        try:
            for first in range(0, len(metrics), 1000):  # and at most 1000 metrics
                self.client.log_batch(self.run_id, metrics=metrics[first : first + 1000])
        except Exception as error:  # a tracking server down must not stop training: the JSONL has it all
            self._failed = True
            logger.warning("MLflow: stopped logging at iteration %d: %s", iteration, _one_line(error))

    def finish(self, status: str) -> None:
        if not self._failed:
            self.client.set_terminated(self.run_id, status)


class WandbTracker(Tracker):
    """A W&B run (``wandb.init(id=…, resume="allow")``): the nested config, metrics at the engine's steps.

    Args:
        tracking: ``experiment`` (the project), ``run_name``, ``offline``.
        run: The run folder (``tracking.json``; W&B's files in ``RUN/wandb``).
        name: The tracked run's name.
        saved: ``tracking.json`` of an earlier session; its run id is reused for the same project.
    """

    def __init__(self, tracking: TrackingConfig, run: Path, name: str, saved: Mapping[str, str]) -> None:
        self.tracking, self.folder, self.name = tracking, run, name
        same = saved.get("backend") == "wandb" and saved.get("project") == tracking.experiment
        self.run_id = saved["run_id"] if same and saved.get("run_id") else new_run_id()
        save_state(run, "wandb", self.run_id, project=tracking.experiment)
        self.run: Any = None
        self.first = 0

    def start(self, params: Mapping[str, str], config: Any, history: Sequence[Mapping[str, Any]]) -> None:
        import wandb

        tree = config_tree(config)
        try:
            self.run = wandb.init(
                project=self.tracking.experiment,
                name=self.name,
                id=self.run_id,
                resume="allow",
                dir=str(self.folder),
                config=tree,
                mode="offline" if self.tracking.offline else None,
            )
        except Exception as error:  # wandb raises its own error types, or OSError / network errors
            raise TrackingError(f"tracking.backend=wandb: {_one_line(error)}") from None
        self.first = int(getattr(self.run, "step", 0) or 0)  # W&B's next step: after the steps it holds
        for record in history:
            self.log(int(record["iteration"]), record)

    def log(self, iteration: int, values: Mapping[str, Any]) -> None:
        if self.run is None or iteration < self.first:
            return
        scalars = {k: float(v) for k, v in values.items() if _is_scalar(v) and k != "iteration"}
        self.run.log(scalars, step=iteration)

    def finish(self, status: str) -> None:
        if self.run is not None:
            self.run.finish(exit_code=0 if status == "FINISHED" else 1)
            self.run = None


def _is_scalar(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())[:300] or type(error).__name__


def open_tracker(tracking: TrackingConfig | None, run: Path) -> Tracker | None:
    """The tracker of ``tracking`` for the run folder ``run`` (None when ``backend`` is ``none``).

    Raises:
        TrackingError: the backend is not installed, or refused the store or the run; one line.
    """
    if tracking is None or tracking.backend == "none":
        return None
    _require(tracking.backend)
    run = Path(run)
    run.mkdir(parents=True, exist_ok=True)
    name = tracking.run_name or run.resolve().name
    tracker_type = MlflowTracker if tracking.backend == "mlflow" else WandbTracker
    return tracker_type(tracking, run, name, _saved(run))


TRACKING_OPTIONS = {"tracking.backend": "tracking", "tracking.uri": "tracking_uri"}
"""The tracking fields every training command shows as options (``--tracking mlflow``, ``--tracking-uri``)."""
