"""Log lines a hostile peer can cause, bounded: a flood must not flood the journal."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable


class RateLimitedLog:
    """At most *burst* lines per *window* seconds (WARNING and ERROR lines share the budget);
    the rest are counted and summed up in one line when logging resumes (a fuzzing client
    must not flood the journal)."""

    def __init__(
        self, logger: logging.Logger, burst: int = 10, window: float = 60.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._log, self._burst, self._window, self._clock = logger, burst, window, clock
        self._started = -window
        self._count = 0
        self.suppressed = 0

    def warning(self, fmt: str, *args: Any) -> None:
        self._emit(logging.WARNING, fmt, args)

    def error(self, fmt: str, *args: Any) -> None:
        self._emit(logging.ERROR, fmt, args)

    def _emit(self, level: int, fmt: str, args: Any) -> None:
        now = self._clock()
        if now - self._started >= self._window:
            if self.suppressed:
                self._log.warning(
                    "%d more such lines in the last %.0f s were not logged", self.suppressed, self._window
                )
            self._started, self._count, self.suppressed = now, 0, 0
        if self._count < self._burst:
            self._count += 1
            self._log.log(level, fmt, *args)
        else:
            self.suppressed += 1
