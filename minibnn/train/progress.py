"""A one-line progress display with rate and ETA, for long loops (training epochs, benchmarks).

On a terminal the line is redrawn in place at most a few times a second; when the output is a
file or a pipe (CI, logs) only the closing line of each loop is printed, so logs stay short.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress", "format_seconds"]


def format_seconds(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class Progress:
    """Progress("epoch 3/8", total=63).update(k, "loss 0.41") ... .close("summary")."""

    def __init__(self, label: str, total: int, stream: TextIO | None = None, interval: float = 0.25):
        self.label, self.total = label, max(int(total), 1)
        self.stream = stream if stream is not None else sys.stderr
        self.live = bool(getattr(self.stream, "isatty", lambda: False)())
        self.interval = interval
        self.start = self.last_draw = time.perf_counter()

    def update(self, done: int, note: str = "") -> None:
        now = time.perf_counter()
        if not self.live or (now - self.last_draw < self.interval and done < self.total):
            return
        self.last_draw = now
        elapsed = now - self.start
        eta = elapsed / done * (self.total - done) if done else 0.0
        width = 24
        filled = int(width * done / self.total)
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {done}/{self.total} {note}  "
                          f"{format_seconds(elapsed)} elapsed, ETA {format_seconds(eta)}  ")
        self.stream.flush()

    def close(self, summary: str = "") -> None:
        clear = "\r\033[K" if self.live else ""
        self.stream.write(f"{clear}{self.label}: {summary}\n")
        self.stream.flush()
