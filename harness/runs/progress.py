"""What a run shows while it goes: phases on their own lines, one live status line."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """One status line while a run goes: phase, elapsed, live throughput and errors."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self._last_line = 0.0
        self._open = False  # a live line is on screen, waiting for its newline

    def phase(self, text: str) -> None:
        if not self.quiet:
            self._end_line()
            print(text, file=self.stream, flush=True)

    def live(self, text: str) -> None:
        if self.quiet:
            return
        if self.tty:
            print("\r\033[K" + text, end="", file=self.stream, flush=True)
            self._open = True
        elif time.monotonic() - self._last_line >= 5:
            print(text, file=self.stream, flush=True)
            self._last_line = time.monotonic()

    def end_line(self) -> None:
        """End a live line still open on the terminal, so the next line starts clean."""
        self._end_line()

    def _end_line(self) -> None:
        if self._open:
            print(file=self.stream, flush=True)
            self._open = False
