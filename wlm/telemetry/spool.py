"""Rows that wait on local disk while the shared database is unreachable.

With ``WLM_TELEMETRY_URL`` the writer cannot keep an outage's rows in memory for
long, nor lose them when the process stops. When PostgreSQL cannot be reached it
moves its batches here instead: one file per batch, in ``$WLM_DATA_DIR/telemetry-spool/``,
named by a counter so that the oldest comes first, written to a temp name and
renamed (a half-written file is never read). When the database is back the writer
replays the files oldest first, each in one transaction, and deletes a file only
after its transaction committed. A file replayed twice (the process stopped
between the commit and the delete) counts once: the store inserts by ``id`` with
``ON CONFLICT DO NOTHING`` and feeds the rollups only from rows that were new.

The spool holds at most ``max_bytes``; a batch that does not fit is refused (the
writer counts it as dropped and says so loudly: log, ``/health``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["Spool", "SpooledBatch"]

_SUFFIX = ".batch"
# requests, conversations, attempts: the rows of one batch in the schema's column order.
SpooledBatch = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]


class Spool:
    """A directory of batch files, oldest first; used by the writer's thread only."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._encoder = msgspec.msgpack.Encoder()
        self._decoder = msgspec.msgpack.Decoder()
        self._files: list[Path] = []
        self._bytes = 0
        self._next = 0
        self._scanned = False

    def _scan(self) -> None:
        """Pick up what an earlier run left (its rows are replayed like new ones)."""
        if self._scanned:
            return
        self._scanned = True
        if not self.directory.is_dir():
            return
        for leftover in self.directory.glob("*.tmp"):
            leftover.unlink(missing_ok=True)
        self._files = sorted(self.directory.glob(f"*{_SUFFIX}"))
        self._bytes = sum(p.stat().st_size for p in self._files)
        if self._files:
            self._next = int(self._files[-1].stem) + 1

    @property
    def empty(self) -> bool:
        self._scan()
        return not self._files

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def files(self) -> int:
        self._scan()
        return len(self._files)

    def add(
        self,
        requests: Sequence[tuple[Any, ...]],
        conversations: Sequence[tuple[Any, ...]],
        attempts: Sequence[tuple[Any, ...]],
    ) -> bool:
        """Append one batch as the newest file; False when it would pass ``max_bytes``."""
        self._scan()
        data = self._encoder.encode((list(requests), list(conversations), list(attempts)))
        if self._bytes + len(data) > self.max_bytes:
            return False
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{self._next:012d}{_SUFFIX}"
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.rename(path)
        self._next += 1
        self._files.append(path)
        self._bytes += len(data)
        return True

    def oldest(self) -> SpooledBatch | None:
        """The oldest batch (still in the spool until :meth:`done`), or None."""
        self._scan()
        if not self._files:
            return None
        raw = self._decoder.decode(self._files[0].read_bytes())
        requests, conversations, attempts = raw
        return (
            [tuple(r) for r in requests],
            [tuple(c) for c in conversations],
            [tuple(a) for a in attempts],
        )

    def done(self) -> None:
        """Forget the oldest batch: its transaction committed."""
        path = self._files.pop(0)
        try:
            self._bytes -= path.stat().st_size
        except FileNotFoundError:
            pass
        path.unlink(missing_ok=True)
        if not self._files:
            self._bytes = 0
