"""Early stopping by a validation probe: checkpoints scored, the best teacher kept, patience stops the run,
and a resumed run carries the history over."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pretrain_helpers import make_config, make_phantoms

from raddino.config import ConfigError
from raddino.pretrain.train import pretrain
from raddino.pretrain.validation import ValidationProbe, best_so_far, patience_spent

LABELS = "validation.labels=[no_finding,cardiomegaly,pleural_effusion]"


def _history(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_best_and_patience_from_a_history() -> None:
    history = [
        {"step": 2, "val/probe_auprc": 0.5},
        {"step": 4, "val/probe_auprc": 0.7},
        {"step": 6, "val/probe_auprc": 0.7},  # a tie does not beat the best: the earlier one stays
        {"step": 8, "val/probe_auprc": float("nan")},  # no label could be scored: never the best
    ]
    assert best_so_far(history)["step"] == 4
    assert patience_spent(history, 2)
    assert not patience_spent(history, 3)
    assert not patience_spent(history, None)


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("validation.every=0", "validation.every"),
        ("validation.fit_fraction=1.0", "validation.fit_fraction"),
        ("validation.patience=0", "validation.patience"),
    ],
)
def test_bad_validation_settings_name_the_key(tmp_path: Path, override: str, key: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(key)):
        make_config(tmp_path / "m.csv", override, LABELS)
    with pytest.raises(ConfigError, match=r"validation\.labels"):
        make_config(tmp_path / "m.csv", "validation.every=2")


def test_checkpoints_are_scored_and_the_best_teacher_is_kept(tmp_path: Path) -> None:
    manifest = make_phantoms(tmp_path / "phantoms", n=40)
    config = make_config(
        manifest, "validation.every=2", "validation.split=train", LABELS, "train.checkpoint_period=100"
    )
    run = tmp_path / "run"
    result = pretrain(config, run, progress=False)
    history = _history(run / "validation.jsonl")
    assert [record["step"] for record in history] == [2, 4, 6, 8]  # and each had its checkpoint
    best = best_so_far(history)
    assert best is not None
    assert history[-1]["best_step"] == best["step"]
    assert (run / "export" / "best" / "model.safetensors").is_file()
    assert result.iterations == 8
    # rerun: nothing more to do, the history and the best stay
    again = pretrain(config, run, progress=False)
    assert again.iterations == 8
    assert _history(run / "validation.jsonl") == history


def test_patience_stops_the_run_and_a_resumed_run_stays_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.9])  # the 5th is never reached: patience 2 ends the run at 4
    monkeypatch.setattr(ValidationProbe, "probe", lambda self, teacher: next(scores))
    manifest = make_phantoms(tmp_path / "phantoms", n=12)
    config = make_config(
        manifest, "validation.every=1", "validation.patience=2", LABELS, "train.checkpoint_period=100"
    )
    run = tmp_path / "run"
    result = pretrain(config, run, progress=False)
    assert result.iterations == 4
    history = _history(run / "validation.jsonl")
    assert [(r["step"], r["best_step"]) for r in history] == [(1, 1), (2, 2), (3, 2), (4, 2)]
    assert (run / "checkpoints" / "step_0000004.pt").is_file()  # the stop writes its checkpoint
    best = json.loads((run / "export" / "best" / "config.json").read_text())  # step 2's teacher, kept
    assert best["hidden_size"] > 0
    # a rerun stays stopped: no step is trained, the history is kept
    again = pretrain(config, run, progress=False)
    assert again.iterations == 4
    assert _history(run / "validation.jsonl") == history
