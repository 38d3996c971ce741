"""The progress line: steps/s, the images/s of tasks whose step size is known, and the time left."""

from __future__ import annotations

import re
import time

from raddino.training.progress import Progress


def test_the_line_shows_images_per_second_as_steps_per_second_times_the_step_size() -> None:
    progress = Progress(total=10, initial=2, description="pretrain", bar=False, items_per_step=16)
    progress.update(4, {"train/loss": 1.5})
    progress.started = time.perf_counter() - 4.0  # 2 steps of this session in 4 s
    line = progress.line()
    assert re.fullmatch(r"step 4/10, 0\.5 steps/s \(8 img/s\), 0:00:12 left", line), line
    progress.close()


def test_without_a_step_size_only_steps_per_second_are_shown() -> None:
    progress = Progress(total=3, initial=0, description="segment", bar=False)
    assert "img/s" not in progress.line()
    assert progress.line().startswith("step 0/3, 0 steps/s, ? left")
    progress.close()
