"""Faults during training as the commands report them: one line, the run's last good state kept."""

from __future__ import annotations

from pathlib import Path

from engine_tasks import EngineCase, csv_rows
from typer.testing import CliRunner

from raddino.cli import app


def test_an_exploding_loss_ends_report_training_with_one_line_naming_the_step(
    report_engine_case: EngineCase, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [*report_engine_case.cli(out), "--lr", "1e30"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    line = result.stderr.strip().replace("\r", "\n").splitlines()[-1]
    assert line.startswith("error: step 3: loss term 'loss' is nan; stopping before the optimiser step")
    assert line.endswith("lower learning_rate or raise warmup_ratio)")
    # step 1 warms up at lr 0, step 2 at 1e30 ruins the weights; kept: the checkpoint after step 2, the
    # last step whose loss was finite
    assert (out / "checkpoints" / "latest.txt").read_text().strip() == "step_0000002.pt"
    assert [row["step"] for row in csv_rows(out / "train_log.csv")] == ["1", "2"]
