"""A small progress bar on stderr (no dependency): redrawn in place on a terminal, one line per
tenth of the work otherwise (logs, CI)."""
from __future__ import annotations

import sys
import time
from typing import TextIO


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """``update(done, note)`` as work completes; ``close()`` ends the line."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None,
                 enabled: bool = True, width: int = 24):
        self.total, self.label, self.width = max(total, 1), label, width
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._last_tenth = -1
        self.done = 0

    def line(self, note: str = "") -> str:
        frac = min(self.done / self.total, 1.0)
        bar = "#" * int(frac * self.width) + "." * (self.width - int(frac * self.width))
        elapsed = time.perf_counter() - self.start
        eta = f", ETA {_duration(elapsed / frac - elapsed)}" if 0 < frac < 1 else ""
        return (f"{self.label} [{bar}] {self.done}/{self.total} {_duration(elapsed)}{eta}"
                + (f"  {note}" if note else ""))

    def update(self, done: int, note: str = "") -> None:
        self.done = done
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            if now - self._last_draw > 0.1 or done >= self.total:
                self.stream.write("\r\033[K" + self.line(note))
                self.stream.flush()
                self._last_draw = now
            return
        tenth = int(10 * min(done / self.total, 1.0))
        if tenth != self._last_tenth:
            self._last_tenth = tenth
            self.stream.write(self.line(note) + "\n")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
