"""Experiment tracking through the engine's metrics log: MLflow's local file store holds the JSONL's values,
once per step, in one run that a resumed session continues; W&B gets the same; a missing extra is named."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from engine_tasks import EngineCase, Killed, kill_after
from typer.testing import CliRunner

from raddino.training import MetricsLog, read_metrics
from raddino.training.tracking import TrackingConfig, TrackingError, open_tracker

mlflow_client = pytest.importorskip("mlflow.tracking")


def _store(root: Path) -> Any:
    return mlflow_client.MlflowClient(tracking_uri=root.resolve().as_uri())


def _jsonl_history(records: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    history: dict[str, list[tuple[int, float]]] = {}
    for record in records:
        for key, value in record.items():
            if key != "iteration":
                history.setdefault(key, []).append((int(record["iteration"]), float(value)))
    return history


def _mlflow_history(client: Any, run_id: str) -> dict[str, list[tuple[int, float]]]:
    keys = client.get_run(run_id).data.metrics
    return {key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key)) for key in keys}


def _only_run(client: Any) -> Any:
    experiment = client.get_experiment_by_name("raddino")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1, [run.info.run_id for run in runs]
    return runs[0]


TRACKED_TASKS = ("segmentation", "report", "pretrain", "finetune")
"""Every task on the engine has a ``tracking`` section passed to the engine."""


@pytest.mark.parametrize("task", TRACKED_TASKS)
def test_mlflow_holds_the_jsonl_values_once_per_step_after_a_kill_and_resume(
    task: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    engine_case: EngineCase = request.getfixturevalue(f"{task}_engine_case")
    out, store = tmp_path / "out", tmp_path / "mlruns"
    tracking = TrackingConfig(backend="mlflow", uri=str(store))
    with pytest.raises(Killed):
        engine_case.train(out, [kill_after(engine_case.kill_at)], False, tracking)
    folder = engine_case.run_folder(out)
    first_id = json.loads((folder / "tracking.json").read_text())["run_id"]
    client = _store(store)
    assert client.get_run(first_id).info.status == "FAILED"

    engine_case.train(out, [], False, tracking)
    run = _only_run(client)  # the resumed session went on in the same run
    assert run.info.run_id == first_id
    assert run.info.status == "FINISHED"
    records = read_metrics(folder)
    history = _mlflow_history(client, first_id)
    assert history == _jsonl_history(records)  # every value, each step once
    assert [step for step, _ in history["train/loss"]] == list(range(1, len(history["train/loss"]) + 1))
    assert len(history["train/loss"]) > engine_case.kill_at
    final = {key: values[-1][1] for key, values in _jsonl_history(records).items()}
    assert run.data.metrics == final  # the run's final metrics are the last logged values
    assert run.data.params  # the config, as dotted keys
    assert all("." in key or key.isidentifier() for key in run.data.params)


def test_tracking_turned_on_when_resuming_gets_the_whole_history(
    pretrain_engine_case: EngineCase, tmp_path: Path
) -> None:
    out, store = tmp_path / "out", tmp_path / "store"
    with pytest.raises(Killed):
        pretrain_engine_case.train(out, [kill_after(pretrain_engine_case.kill_at)], False)
    tracking = TrackingConfig(backend="mlflow", uri=str(store), experiment="raddino", run_name="cxr")
    pretrain_engine_case.train(out, [], False, tracking)
    client = _store(store)
    run = _only_run(client)
    assert run.info.run_name == "cxr"
    assert _mlflow_history(client, run.info.run_id) == _jsonl_history(read_metrics(out))
    assert run.data.params["optim.base_lr"] == "0.001" or float(run.data.params["optim.base_lr"]) > 0
    assert run.data.params["tracking.backend"] == "mlflow"
    assert run.data.tags["raddino.run_folder"] == str(out.resolve())


def test_a_log_reopened_at_its_checkpoint_sends_nothing_twice(tmp_path: Path) -> None:
    store = tmp_path / "mlruns"
    tracking = TrackingConfig(backend="mlflow", uri=str(store))
    log = MetricsLog(tmp_path / "run", tracking=tracking, config={"optim": {"lr": 0.1}})
    for step in range(1, 7):
        log.log(step, {"train/loss": 10.0 - step})
    log.close("KILLED")  # killed after step 6; the checkpoint was at step 4
    log = MetricsLog(tmp_path / "run", resume_from=4, tracking=tracking, config={"optim": {"lr": 0.1}})
    for step in range(5, 9):
        log.log(step, {"train/loss": 10.0 - step})
        if step == 8:
            log.log(step, {"val/loss": 3.5})
    log.close()
    client = _store(store)
    run = _only_run(client)
    assert _mlflow_history(client, run.info.run_id) == {
        "train/loss": [(step, 10.0 - step) for step in range(1, 9)],
        "val/loss": [(8, 3.5)],
    }
    assert run.data.params == {"optim.lr": "0.1"}


def test_overwrite_starts_a_new_tracked_run(tmp_path: Path) -> None:
    from raddino.training import RunFolder

    store, folder = tmp_path / "mlruns", tmp_path / "run"
    tracking = TrackingConfig(backend="mlflow", uri=str(store))
    MetricsLog(folder, tracking=tracking).close()
    first = json.loads((folder / "tracking.json").read_text())["run_id"]
    RunFolder(folder).clear()
    assert not (folder / "tracking.json").exists()
    MetricsLog(folder, tracking=tracking).close()
    assert json.loads((folder / "tracking.json").read_text())["run_id"] != first


def test_default_store_is_mlruns_in_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    log = MetricsLog(tmp_path / "run", tracking=TrackingConfig(backend="mlflow"))
    log.log(1, {"train/loss": 2.0})
    log.close()
    saved = json.loads((tmp_path / "run" / "tracking.json").read_text())
    assert saved["uri"] == (tmp_path / "mlruns").resolve().as_uri()
    monkeypatch.chdir(tmp_path / "run")  # resumed from elsewhere: the saved store, the same run
    log = MetricsLog(tmp_path / "run", resume_from=1, tracking=TrackingConfig(backend="mlflow"))
    log.log(2, {"train/loss": 1.0})
    log.close()
    client = _store(tmp_path / "mlruns")
    assert _mlflow_history(client, _only_run(client).info.run_id) == {"train/loss": [(1, 2.0), (2, 1.0)]}


def test_a_missing_extra_is_one_line_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "wandb", None)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    with pytest.raises(
        TrackingError,
        match=r"^tracking\.backend=wandb: wandb is not installed; pip install 'raddino\[wandb\]'$",
    ):
        open_tracker(TrackingConfig(backend="wandb"), tmp_path / "run")


def test_the_pretrain_command_takes_tracking_options(
    pretrain_engine_case: EngineCase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from raddino.cli import app

    out, store = tmp_path / "out", tmp_path / "tracked"
    args = [*pretrain_engine_case.cli(out), "--set", "train.max_iterations=2"]
    result = CliRunner().invoke(app, [*args, "--tracking", "mlflow", "--tracking-uri", str(store)])
    assert result.exit_code == 0, result.output
    client = _store(store)
    assert _mlflow_history(client, _only_run(client).info.run_id) == _jsonl_history(read_metrics(out))

    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a)
    )
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "w"), "--tracking", "wandb"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert result.stderr.strip().splitlines()[-1] == (
        "error: tracking.backend=wandb: wandb is not installed; pip install 'raddino[wandb]'"
    )


class _FakeWandbRun:
    def __init__(self, calls: dict[str, Any], step: int) -> None:
        self.calls, self.step = calls, step

    def log(self, values: dict[str, float], step: int) -> None:
        self.calls["logged"].append((step, dict(values)))

    def finish(self, exit_code: int = 0) -> None:
        self.calls["finished"].append(exit_code)


def test_wandb_gets_the_same_records_and_resumes_its_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: dict[str, Any] = {"init": [], "logged": [], "finished": []}

    def init(**options: Any) -> _FakeWandbRun:
        calls["init"].append(options)
        held = max((step for step, _ in calls["logged"]), default=0)  # W&B's next step after a resume
        return _FakeWandbRun(calls, held + 1 if held else 0)

    fake = types.ModuleType("wandb")
    fake.init = init  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "wandb", fake)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: object() if name == "wandb" else real(name, *a)
    )
    tracking = TrackingConfig(backend="wandb", experiment="cxr", offline=True)
    run = tmp_path / "run"
    log = MetricsLog(run, tracking=tracking, config={"optim": {"lr": 0.1}})
    for step in (1, 2, 3):
        log.log(step, {"train/loss": 5.0 - step})
    log.close("KILLED")
    log = MetricsLog(run, resume_from=2, tracking=tracking, config={"optim": {"lr": 0.1}})
    log.log(3, {"train/loss": 2.0})
    log.log(4, {"train/loss": 1.0})
    log.close()
    first, second = calls["init"]
    assert first["id"] == second["id"]
    assert (first["resume"], first["mode"], first["project"], first["dir"]) == (
        "allow",
        "offline",
        "cxr",
        str(run),
    )
    assert first["config"] == {"optim": {"lr": 0.1}}
    assert calls["logged"] == [(step, {"train/loss": 5.0 - step}) for step in (1, 2, 3, 4)]
    assert calls["finished"] == [1, 0]
