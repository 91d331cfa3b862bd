"""A bounded buffer of an engine's log lines with live subscribers.

The buffer keeps the last ``capacity`` lines (older ones fall off). A subscriber gets
every line appended after it subscribed through its own bounded queue; a subscriber
that falls too far behind loses lines rather than slowing the engine.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from collections.abc import AsyncIterator, Callable

__all__ = ["LogBuffer", "engine_reason"]

_MAX_LINE = 4000
# llama.cpp's log lines start with "0.00.006.029 E " (time, level).
_LOG_PREFIX = re.compile(r"^\d+\.\d+\.\d+\.\d+ (?P<level>[A-Z]) +")
_ERROR_WORD = re.compile(r"\b(error|failed|fatal|cannot|unable)\b", re.IGNORECASE)
_LAUNCHER = "wlm launcher:"


class LogBuffer:
    """The last ``capacity`` lines of one engine's stdout and stderr."""

    def __init__(
        self,
        capacity: int = 500,
        subscriber_backlog: int = 1000,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self._lines: deque[str] = deque(maxlen=capacity)
        self._redact = redact  # engine output is shown on pages and the API
        self._subscribers: set[asyncio.Queue[str | None]] = set()
        self._backlog = subscriber_backlog

    def append(self, line: str) -> None:
        """Add one line (trailing newline stripped, very long lines cut) and fan it out."""
        line = line.rstrip("\r\n")
        if self._redact is not None:
            line = self._redact(line)
        if len(line) > _MAX_LINE:
            line = line[:_MAX_LINE] + " …"
        self._lines.append(line)
        for queue in self._subscribers:
            try:
                queue.put_nowait(line)
            except asyncio.QueueFull:
                pass  # a slow reader misses lines; the engine never waits for it

    def lines(self) -> list[str]:
        """A copy of the buffered lines, oldest first."""
        return list(self._lines)

    def tail(self, count: int) -> list[str]:
        """The last ``count`` lines."""
        return list(self._lines)[-count:]

    async def follow(self, backlog: bool = True) -> AsyncIterator[str]:
        """Yield the buffered lines (when ``backlog``), then each new line as it arrives.

        Runs until the consumer stops iterating (or is cancelled), or :meth:`close`.
        """
        queue: asyncio.Queue[str | None] = asyncio.Queue(self._backlog)
        self._subscribers.add(queue)
        try:
            if backlog:
                for kept in list(self._lines):
                    yield kept
            while (line := await queue.get()) is not None:
                yield line
        finally:
            self._subscribers.discard(queue)

    def close(self) -> None:
        """End every subscriber's :meth:`follow`."""
        for queue in self._subscribers:
            try:
                queue.put_nowait(None)
            except asyncio.QueueFull:
                queue.get_nowait()
                queue.put_nowait(None)


def engine_reason(lines: list[str], last_line_fallback: bool = True) -> str | None:
    """The most telling error line of a failed engine start, without llama.cpp's log prefix.

    llama.cpp logs ``error loading model: <why>`` before a cascade of "failed to load"
    lines; that first specific error is what a user needs to see. Without an error
    line, the last line is the best guess (unless ``last_line_fallback`` is false).
    """
    for line in lines:
        _, found, reason = line.rpartition("error loading model: ")
        if found and reason.strip():
            return reason.strip()
    for line in lines:
        match = _LOG_PREFIX.match(line)
        if match and match["level"] == "E":
            return line[match.end() :].strip()
    for line in lines:
        if line.startswith(_LAUNCHER):
            return line.removeprefix(_LAUNCHER).strip()
    for line in lines:
        if _ERROR_WORD.search(line):
            return _LOG_PREFIX.sub("", line).strip()
    if last_line_fallback:
        for line in reversed(lines):
            if line.strip():
                return _LOG_PREFIX.sub("", line).strip()
    return None
