"""One progress display for every long loop: a tqdm bar on a terminal, a plain line now and then elsewhere.

tqdm redraws its bar on every update; sent to a file or a pipe (a batch job's log, ``| tee``), each redraw
becomes one more line. tqdm has no mode that writes a plain line per interval, so when the stream is not a
terminal (nor a notebook, where tqdm draws a widget) :func:`progress_bar` returns a :class:`PlainProgress`:
a tqdm subclass, so it goes wherever a bar does, that writes

    prepare: 120/400 img (30%), 3.2 img/s, 0:01:27 left

every ``RADDINO_PROGRESS_SECONDS`` seconds (30 by default), at each further tenth of the total (at most one
line per tenth of that interval), and once at the end. Every command's progress goes through this module.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, TypeVar

from tqdm import tqdm
from tqdm.auto import tqdm as auto_tqdm

T = TypeVar("T")

INTERVAL_ENV = "RADDINO_PROGRESS_SECONDS"
"""Environment variable: seconds between plain progress lines (default 30)."""
DEFAULT_INTERVAL = 30.0
_IN_NOTEBOOK = any(base.__module__ == "tqdm.notebook" for base in auto_tqdm.__mro__)


def is_terminal(stream: IO[str] | Any) -> bool:
    """Whether ``stream`` is an interactive terminal (a bar can redraw itself in place)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if callable(isatty) else False
    except (ValueError, OSError):  # a closed stream
        return False


def line_interval() -> float:
    """Seconds between plain lines: ``RADDINO_PROGRESS_SECONDS`` when set to a positive number, else 30."""
    try:
        seconds = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL
    return seconds if seconds > 0 else DEFAULT_INTERVAL


def _duration(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


class PlainProgress(tqdm):
    """tqdm's interface, drawn as one plain line every ``interval`` seconds or tenth of the total.

    Args:
        iterable: What to walk (its length is the total unless ``total`` is given).
        total: Expected number of updates (None: unknown, no percentage or time left).
        desc: Shown at the start of each line.
        unit: What one update counts (``img``, ``step``).
        initial: Updates done before this session (a resumed run); rates count this session only.
        file: Where lines go (standard error by default).
        leave: Write a last line when closed.
        interval: Seconds between lines (default: :func:`line_interval`).
        clock: Monotonic seconds (tests pass a fake one).
        **_ignored: tqdm display options that mean nothing without a bar (``dynamic_ncols``, ...).
    """

    def __init__(
        self,
        iterable: Iterable[Any] | None = None,
        *,
        total: float | None = None,
        desc: str | None = None,
        unit: str = "it",
        initial: float = 0,
        file: IO[str] | None = None,
        leave: bool | None = True,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        **_ignored: Any,
    ) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        super().__init__(iterable, total=total, initial=initial, leave=leave, disable=True)
        self.desc, self.unit, self.postfix = desc or "", unit, ""
        self._stream = file if file is not None else sys.stderr
        self._interval = line_interval() if interval is None else interval
        self._clock = clock
        self._started = self._last_time = clock()
        self._initial = self._last_n = initial
        self._closed = False

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable:
            yield item
            self.update(1)

    def update(self, n: float | None = 1) -> bool | None:
        """Count ``n`` more updates; write a line when the interval or another tenth has passed."""
        self.n += 1 if n is None else n
        now = self._clock()
        since = now - self._last_time
        total = self.total
        tenth = total is not None and total > 0 and int(10 * self.n / total) > int(10 * self._last_n / total)
        if since >= self._interval or (tenth and since >= self._interval / 10):
            self._write(now)
        return None

    def set_postfix(self, ordered_dict: Any = None, refresh: bool | None = True, **kwargs: Any) -> None:
        """Keep the numbers to show at the end of the next line (tqdm's formatting)."""
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_description(self, desc: str | None = None, refresh: bool | None = True) -> None:
        self.desc = desc or ""

    def line(self, now: float | None = None) -> str:
        """``desc: 120/400 img (30%), 3.2 img/s, 0:01:27 left[, postfix]``."""
        now = self._clock() if now is None else now
        elapsed = max(now - self._started, 1e-9)
        rate = (self.n - self._initial) / elapsed
        total = self.total
        if not total:
            parts = [f"{self.n:g} {self.unit}", f"{rate:.3g} {self.unit}/s"]
        else:
            parts = [
                f"{self.n:g}/{total:g} {self.unit} ({100 * self.n / total:.0f}%)",
                f"{rate:.3g} {self.unit}/s",
            ]
            if self.n >= total:
                parts.append(f"{_duration(elapsed)} elapsed")
            else:
                parts.append(f"{_duration((total - self.n) / rate)} left" if rate > 0 else "? left")
        if self.postfix:
            parts.append(str(self.postfix))
        return f"{self.desc}: " * bool(self.desc) + ", ".join(parts)

    def _write(self, now: float) -> None:
        self._last_time, self._last_n = now, self.n
        try:
            self._stream.write(self.line(now) + "\n")
            self._stream.flush()
        except (ValueError, OSError):  # the stream was closed under us: progress is not worth a crash
            pass

    def close(self) -> None:
        """Write the last line (with ``leave``) once."""
        if self._closed:
            return
        self._closed = True
        if self.leave and self.n != self._last_n:
            self._write(self._clock())


def progress_bar(
    iterable: Iterable[T] | None = None,
    *,
    total: float | None = None,
    desc: str | None = None,
    unit: str = "it",
    initial: float = 0,
    disable: bool | None = False,
    leave: bool | None = True,
    file: IO[str] | None = None,
    **options: Any,
) -> tqdm:
    """A tqdm bar on a terminal or in a notebook, else a :class:`PlainProgress`; nothing when ``disable``.

    Takes tqdm's arguments (``options`` such as ``dynamic_ncols`` go to the bar). ``disable=None`` (tqdm's
    "no bar off a terminal") shows plain lines there instead, as any other value but ``True`` does.
    """
    stream = file if file is not None else sys.stderr
    arguments: dict[str, Any] = dict(total=total, desc=desc, unit=unit, initial=initial, leave=leave)
    if disable:
        return tqdm(iterable, disable=True, **arguments)
    if _IN_NOTEBOOK:
        return auto_tqdm(iterable, file=file, **arguments, **options)
    if is_terminal(stream):
        return tqdm(iterable, file=file, **arguments, **options)
    return PlainProgress(iterable, file=stream, **arguments)
