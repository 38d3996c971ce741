"""Progress off a terminal: a plain line every interval or tenth with the rate and the time left."""

from __future__ import annotations

import io

import pytest
from tqdm import tqdm

from raddino.io.progress import PlainProgress, line_interval, progress_bar


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_log_file_gets_one_plain_line_per_tenth_not_one_per_update() -> None:
    """1000 updates used to write up to 1000 bar redraws into a batch job's log."""
    clock, log = FakeClock(), io.StringIO()
    bar = PlainProgress(total=1000, desc="prepare", unit="img", file=log, interval=30.0, clock=clock)
    for _ in range(1000):
        clock.now += 0.1  # 10 img/s, 100 s in all
        bar.update(1)
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 10  # one per tenth (10 s apart: more than a tenth of the interval)
    assert lines[0] == "prepare: 100/1000 img (10%), 10 img/s, 0:01:30 left"
    assert lines[-1] == "prepare: 1000/1000 img (100%), 10 img/s, 0:01:40 elapsed"
    assert "\r" not in log.getvalue()


def test_a_slow_loop_writes_every_interval_and_counts_this_sessions_rate_only() -> None:
    clock, log = FakeClock(), io.StringIO()
    bar = PlainProgress(
        total=100, initial=40, desc="pretrain", unit="step", file=log, interval=30.0, clock=clock
    )
    bar.set_postfix({"loss": 6.93}, refresh=True)
    for _ in range(5):
        clock.now += 20.0  # 0.05 steps/s: a tenth takes 200 s, the interval comes first
        bar.update(1)
    assert log.getvalue().splitlines() == [
        "pretrain: 42/100 step (42%), 0.05 step/s, 0:19:20 left, loss=6.93",
        "pretrain: 44/100 step (44%), 0.05 step/s, 0:18:40 left, loss=6.93",
    ]


def test_iterating_counts_and_an_unknown_total_has_no_percentage() -> None:
    clock, log = FakeClock(), io.StringIO()
    seen = []
    for item in PlainProgress(iter(range(3)), desc="read", unit="file", file=log, interval=1.0, clock=clock):
        clock.now += 1.0
        seen.append(item)
    assert seen == [0, 1, 2]
    assert log.getvalue().splitlines() == [f"read: {n} file, 1 file/s" for n in (1, 2, 3)]


def test_progress_bar_is_a_bar_on_a_terminal_lines_elsewhere_and_nothing_when_disabled() -> None:
    terminal, log = FakeTerminal(), io.StringIO()
    on_terminal = progress_bar(range(3), desc="x", file=terminal)
    assert type(on_terminal) is tqdm
    on_terminal.close()
    off_terminal = progress_bar(range(3), desc="x", file=log, dynamic_ncols=True)
    assert isinstance(off_terminal, PlainProgress)
    assert isinstance(off_terminal, tqdm)  # goes wherever a bar goes
    assert off_terminal.total == 3
    assert list(off_terminal) == [0, 1, 2]
    off_terminal.close()
    assert log.getvalue().splitlines()[-1].startswith("x: 3/3 it (100%)")
    hidden = progress_bar(range(3), file=log, disable=True)
    assert list(hidden) == [0, 1, 2]
    assert hidden.disable


@pytest.mark.parametrize(("value", "seconds"), [("5", 5.0), ("0", 30.0), ("soon", 30.0), (None, 30.0)])
def test_the_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, value, seconds) -> None:
    if value is None:
        monkeypatch.delenv("RADDINO_PROGRESS_SECONDS", raising=False)
    else:
        monkeypatch.setenv("RADDINO_PROGRESS_SECONDS", value)
    assert line_interval() == seconds


def test_a_command_writing_to_a_log_shows_plain_lines(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    """Phantoms with stderr captured (not a terminal): a final plain line, no bar redraws."""
    from raddino.data.phantoms import generate_phantoms

    generate_phantoms(tmp_path / "ph", n=3, size=64, workers=1, masks=False, progress=True)
    lines = capsys.readouterr().err.splitlines()
    progress = [line for line in lines if line.startswith("phantoms: ")]
    assert len(progress) == 1
    assert progress[0].startswith("phantoms: 3/3 img (100%), ")
    assert progress[0].endswith(" elapsed")
    assert not any("\r" in line or "█" in line for line in lines)


def test_every_command_draws_progress_through_the_one_helper() -> None:
    """A direct ``tqdm(...)`` would bring back one log line per update in batch jobs."""
    from pathlib import Path

    package = Path(__file__).resolve().parents[2] / "src" / "raddino"
    direct = [
        str(path.relative_to(package))
        for path in sorted(package.rglob("*.py"))
        if path.name != "progress.py" and "tqdm(" in path.read_text(encoding="utf-8")
    ]
    assert direct == []
