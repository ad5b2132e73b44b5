"""A progress bar for long commands: drawn on a terminal, silent in scripts.

It writes to stderr only when stderr is a terminal, so piped output and
`--json` results stay clean and CI logs get no carriage-return noise.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")
BAR_WIDTH = 30
# Redraw at most this often: a bar must not cost more than the work it shows.
REDRAW_SECONDS = 0.1


class Progress:
    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = max(total, 0)
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty()
        self.done = 0
        self._drawn_at = 0.0

    def advance(self, steps: int = 1, note: str = "") -> None:
        self.done += steps
        now = time.monotonic()
        if self.enabled and (now - self._drawn_at >= REDRAW_SECONDS or self.done >= self.total):
            self._drawn_at = now
            self._draw(note)

    def _draw(self, note: str) -> None:
        share = self.done / self.total if self.total else 1.0
        filled = int(BAR_WIDTH * min(share, 1.0))
        bar = "#" * filled + "-" * (BAR_WIDTH - filled)
        text = f"\r{self.label} [{bar}] {self.done}/{self.total} {note[:40]:<40}"
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self._draw("")
            self.stream.write("\n")
            self.stream.flush()


def tracked(
    items: Iterable[T], total: int, label: str, stream: TextIO | None = None
) -> Iterator[T]:
    """Yield ``items`` while drawing a bar of ``total`` steps."""
    bar = Progress(total, label, stream)
    try:
        for item in items:
            yield item
            bar.advance()
    finally:
        bar.close()
