"""Progress of a run: a tqdm bar with steps/s (and images/s where a step's size is known) and the time
left on a terminal, a plain line with the same numbers every 30 s off one (:mod:`raddino.io.progress`),
or, with the bar turned off, a log line every minute."""

from __future__ import annotations

import datetime
import logging
import time
from collections.abc import Mapping

from raddino.io.progress import progress_bar

logger = logging.getLogger(__name__)


class Progress:
    """Counts the steps of one session of a run (a resumed session starts at its checkpoint's step).

    Args:
        total: Steps of the whole run.
        initial: Steps already done when this session starts.
        description: Shown before the bar and in log lines.
        bar: Show progress (a bar on a terminal, plain lines elsewhere); otherwise log every
            ``log_seconds``.
        log_seconds: Seconds between log lines without a bar (0: never).
        items_per_step: Items (images) one step consumes over all processes; their rate is shown too
            (0: steps/s only).
        item_name: What an item is called in the rate (``img`` → ``img/s``).
    """

    def __init__(
        self,
        total: int,
        initial: int,
        description: str,
        bar: bool = True,
        log_seconds: float = 60.0,
        items_per_step: int = 0,
        item_name: str = "img",
    ) -> None:
        self.total, self.initial, self.step = total, initial, initial
        self.description = description
        self.items_per_step, self.item_name = items_per_step, item_name
        self.started = self.last_line = time.perf_counter()
        self.log_seconds = 0.0 if bar else log_seconds
        self.bar = progress_bar(
            total=total,
            initial=initial,
            desc=description,
            unit="step",
            disable=not bar,
            dynamic_ncols=True,
            leave=False,  # the engine logs the session's steps/s when it ends
        )

    def rate(self) -> float:
        """Steps per second in this session."""
        return (self.step - self.initial) / max(time.perf_counter() - self.started, 1e-9)

    def eta_seconds(self) -> float:
        """Seconds left at this session's rate (inf before the first step)."""
        rate = self.rate()
        return (self.total - self.step) / rate if rate > 0 else float("inf")

    def update(self, step: int, shown: Mapping[str, float]) -> None:
        """Advance to ``step`` (1-based, completed) and show ``shown`` beside the bar."""
        self.bar.update(step - self.step)
        self.step = step
        postfix = {key.split("/")[-1]: f"{value:.4g}" for key, value in shown.items()}
        if self.items_per_step:
            postfix[f"{self.item_name}/s"] = f"{self.rate() * self.items_per_step:.1f}"
        self.bar.set_postfix(postfix, refresh=False)
        now = time.perf_counter()
        if self.log_seconds and now - self.last_line >= self.log_seconds:
            self.last_line = now
            logger.info("%s: %s", self.description, self.line())

    def line(self) -> str:
        """``step 120/400, 3.2 steps/s, 0:01:27 left`` (``3.2 steps/s (205 img/s)`` with items)."""
        eta = self.eta_seconds()
        left = str(datetime.timedelta(seconds=round(eta))) if eta != float("inf") else "?"
        rate = f"{self.rate():.3g} steps/s"
        if self.items_per_step:
            rate += f" ({self.rate() * self.items_per_step:.3g} {self.item_name}/s)"
        return f"step {self.step}/{self.total}, {rate}, {left} left"

    def close(self) -> None:
        self.bar.close()
