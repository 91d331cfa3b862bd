"""How far a pull has come: bytes, speed and time left, readable from another thread.

The download thread writes (:meth:`Progress.add`, :meth:`Progress.begin_file`); the
server's pages and API, or the terminal bar, read :meth:`Progress.snapshot`. Speed is
measured over the last few seconds, so a resumed download does not count the bytes it
found on disk as fast ones.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from attrs import frozen

__all__ = ["Progress", "ProgressSnapshot", "format_bar", "format_bytes", "format_duration"]

_WINDOW_S = 4.0


@frozen
class ProgressSnapshot:
    phase: str  # resolving, downloading, verifying, done
    file: str | None
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int | None
    resumed_bytes: int
    speed_bps: float
    elapsed_s: float

    @property
    def fraction(self) -> float | None:
        if not self.bytes_total:
            return None
        return min(1.0, self.bytes_done / self.bytes_total)

    @property
    def eta_s(self) -> float | None:
        if self.bytes_total is None or self.speed_bps <= 0:
            return None
        return max(0.0, (self.bytes_total - self.bytes_done) / self.speed_bps)


class Progress:
    """Counters for one pull (several files add up to one total)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._now = time.monotonic
        self._started = self._now()
        self._phase = "resolving"
        self._file: str | None = None
        self._files_done = 0
        self._files_total = 0
        self._done_before = 0  # bytes of the files already finished
        self._file_done = 0
        self._total: int | None = None
        self._resumed = 0
        self._samples: deque[tuple[float, int]] = deque()

    def plan(self, files_total: int, bytes_total: int | None) -> None:
        with self._lock:
            self._files_total, self._total = files_total, bytes_total

    def phase(self, phase: str) -> None:
        with self._lock:
            self._phase = phase

    def begin_file(self, name: str, already: int) -> None:
        """A file starts (again) with ``already`` bytes of it on disk."""
        with self._lock:
            self._phase = "downloading"
            if self._file != name:
                self._resumed += already
            self._file = name
            self._file_done = already
            self._samples.clear()
            self._samples.append((self._now(), self._done_before + already))

    def add(self, n: int) -> None:
        with self._lock:
            self._file_done += n
            now = self._now()
            self._samples.append((now, self._done_before + self._file_done))
            while len(self._samples) > 2 and now - self._samples[0][0] > _WINDOW_S:
                self._samples.popleft()

    def end_file(self, size: int) -> None:
        with self._lock:
            self._done_before += size
            self._file_done = 0
            self._files_done += 1

    def snapshot(self) -> ProgressSnapshot:
        with self._lock:
            done = self._done_before + self._file_done
            speed = 0.0
            if len(self._samples) >= 2:
                (t0, b0), (t1, b1) = self._samples[0], self._samples[-1]
                if t1 > t0:
                    speed = (b1 - b0) / (t1 - t0)
            return ProgressSnapshot(
                phase=self._phase,
                file=self._file,
                files_done=self._files_done,
                files_total=self._files_total,
                bytes_done=done,
                bytes_total=self._total,
                resumed_bytes=self._resumed,
                speed_bps=speed,
                elapsed_s=self._now() - self._started,
            )


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds + 0.5)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def format_bar(snapshot: ProgressSnapshot, width: int = 24) -> str:
    """One line: ``[#######.....]  45%  320.1 MB / 720.0 MB  15.2 MB/s  ETA 00:27``."""
    fraction = snapshot.fraction
    filled = int(width * (fraction or 0.0))
    bar = "#" * filled + "." * (width - filled)
    percent = f"{fraction * 100:3.0f}%" if fraction is not None else "  ?%"
    total = format_bytes(snapshot.bytes_total) if snapshot.bytes_total is not None else "?"
    line = (
        f"[{bar}] {percent}  {format_bytes(snapshot.bytes_done)} / {total}  "
        f"{format_bytes(snapshot.speed_bps)}/s  ETA {format_duration(snapshot.eta_s)}"
    )
    if snapshot.files_total > 1:
        line += (
            f"  (file {min(snapshot.files_done + 1, snapshot.files_total)}/{snapshot.files_total})"
        )
    return line
