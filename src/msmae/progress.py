"""Progress that reads well where it lands.

On a terminal: a tqdm bar, redrawn in place. Anywhere else (``make demo > log 2>&1``, a cluster job's output
file, a pipe): plain lines, at most one every ``MSMAE_PROGRESS_INTERVAL`` seconds (default 30), and a final
line when the work ends, with no carriage returns. Every progress display of msmae goes through
:func:`progress_bar`.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, Iterable

INTERVAL_ENV = "MSMAE_PROGRESS_INTERVAL"
LOG_INTERVAL_S = 30.0


def log_interval() -> float:
    """Seconds between progress lines in a log file: ``MSMAE_PROGRESS_INTERVAL`` when set, else 30."""
    try:
        return max(0.0, float(os.environ.get(INTERVAL_ENV, LOG_INTERVAL_S)))
    except ValueError:
        return LOG_INTERVAL_S


def progress_bar(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "", unit: str = "it",
                 initial: float = 0, disable: bool = False, **tqdm_options: Any):
    """A tqdm bar on a terminal, :class:`LogProgress` lines elsewhere (the tqdm methods msmae uses: ``update``,
    ``set_postfix``, ``set_postfix_str``, ``refresh``, ``close``, iteration, ``with``)."""
    from tqdm import tqdm

    if disable or _is_terminal(sys.stderr):
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable, **tqdm_options)
    return LogProgress(iterable, total=total, desc=desc, unit=unit, initial=initial)


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # replaced or closed stream
        return False


class LogProgress:
    """Progress as plain lines on stderr: ``desc: 120/300 steps (40%), 1:02 elapsed, 1.9 steps/s, loss=0.31``,
    at most one per :func:`log_interval`, and one last line on :meth:`close`."""

    def __init__(self, iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
                 unit: str = "it", initial: float = 0) -> None:
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit, self.n = total, desc, unit, initial
        self.interval = log_interval()
        self.start = self.last = time.monotonic()
        self.start_n = initial
        self.postfix = ""
        self.closed = False

    def __iter__(self):
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(stopped=exc_type is not None)  # a failure is not reported as "done"

    def update(self, n: float = 1) -> None:
        self.n += n
        self.refresh()

    def set_postfix(self, ordered_dict: dict | None = None, refresh: bool = True, **values: Any) -> None:
        items = {**(ordered_dict or {}), **values}
        self.postfix = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "", refresh: bool = True) -> None:
        self.postfix = str(s)

    def refresh(self) -> None:
        """A line when the last one is at least the interval old (a terminal bar redraws; a log file waits)."""
        now = time.monotonic()
        if not self.closed and now - self.last >= self.interval:
            self.last = now
            self._write(now)

    def close(self, stopped: bool = False) -> None:
        if not self.closed:
            self.closed = True
            self._write(time.monotonic(), end="stopped, " if stopped else "done, ")

    def _write(self, now: float, end: str = "") -> None:
        elapsed = now - self.start
        units = self.unit + ("" if (self.total or self.n) == 1 else "s")  # 1/4 clips, 1 clip, 0/1 clip
        count = f"{self.n:g}/{self.total:g} {units}" if self.total else f"{self.n:g} {units}"
        if self.total:
            count += f" ({100 * self.n / self.total:.0f}%)"
        rate = (self.n - self.start_n) / elapsed if elapsed > 0 else 0.0
        parts = [count, f"{_clock(elapsed)} elapsed", f"{rate:.3g} {self.unit}/s"] + ([self.postfix] if self.postfix
                                                                                      else [])
        sys.stderr.write(f"{self.desc or 'progress'}: {end}{', '.join(parts)}\n")
        sys.stderr.flush()


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
