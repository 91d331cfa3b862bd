"""Every accepted row on local disk until PostgreSQL has it: the journal (and spool).

With ``WLM_TELEMETRY_URL`` the request path appends each request's rows (its
``requests`` row, its conversation, its attempts) to a segment file in
``$WLM_DATA_DIR/telemetry-spool/`` as one JSON line, with one ``write()`` to a file
opened ``O_APPEND``, before ``submit`` returns. The writer's thread reads the lines
back in order, writes them to PostgreSQL, and deletes a segment once every line in
it is committed. So the rows of a process that dies (SIGKILL, the OOM killer) are in
the kernel's page cache already, and its next start replays them; rows already
written count once (the store inserts by ``id`` with ``ON CONFLICT DO NOTHING``).
Only a crash of the machine itself can lose the last seconds (no ``fsync``).

While PostgreSQL is away the lines simply wait here (nothing in memory), up to
``max_bytes`` not yet committed; past that :meth:`Journal.append` refuses.

Two sides, two threads, no lock: :meth:`Journal.append` (the request path) is the
only one to create segments and write to them; the reader (:meth:`~Journal.read`,
:meth:`~Journal.commit`, :meth:`~Journal.rewind`) is the only one to delete them. A
segment's ``size`` counts only complete lines, so the reader never sees half of one.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any, BinaryIO

import msgspec

__all__ = ["Journal", "JournalBusy", "JournalItem"]

log = logging.getLogger(__name__)

_SUFFIX = ".journal"
_READ_CHUNK = 1 << 20
# One request's rows in the schema's column order: requests, conversations (or None),
# attempts. Timestamps come back as ISO text, which both stores take.
JournalItem = tuple[list[Any], list[Any] | None, list[list[Any]]]


class JournalBusy(Exception):
    """Another process holds the journal directory (two servers on one WLM_DATA_DIR)."""


class _Segment:
    """One file; ``size`` (complete lines) and ``sealed`` are set by the appender only."""

    __slots__ = ("path", "sealed", "size")

    def __init__(self, path: Path, size: int = 0, sealed: bool = False) -> None:
        self.path = path
        self.size = size
        self.sealed = sealed


class Journal:
    """Segment files of JSON lines, oldest first; see the module docstring."""

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = 1 << 20) -> None:
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._encoder = msgspec.json.Encoder()
        self._decoder = msgspec.json.Decoder()
        self._segments: deque[_Segment] = deque()
        self._lock_fd: int | None = None
        # The appender's side.
        self._fd: int | None = None
        self._current: _Segment | None = None
        self._next = 0
        self._appended = 0  # bytes, leftovers included
        self.appended_lines = 0
        # The reader's side: reading at segments[_ri] offset _roff; committed up to
        # segments[0] offset _coff.
        self._ri = 0
        self._roff = 0
        self._coff = 0
        self._read = 0  # bytes read, committed or not
        self._committed = 0  # bytes
        self.committed_lines = 0
        self._read_lines = 0
        self._file: BinaryIO | None = None
        self._file_segment: _Segment | None = None
        self.bad_lines = 0  # unreadable lines skipped (a machine crash's torn tail)

    def open(self) -> None:
        """Take the directory (:class:`JournalBusy` if another process has it) and
        pick up the segments an earlier run left, to be read first."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise JournalBusy(f"{self.directory} is in use by another process") from None
        self._lock_fd = fd
        found = []
        for path in self.directory.glob(f"*{_SUFFIX}"):
            if path.stem.isdigit():
                found.append(path)
            else:  # not one of ours (a copy, an editor's): left alone
                log.warning("telemetry: ignoring %s in the journal directory", path.name)
        found.sort(key=lambda p: int(p.stem))
        for path in found:
            data = path.read_bytes()
            self._segments.append(_Segment(path, len(data), sealed=True))
            self._appended += len(data)
            self.appended_lines += data.count(b"\n")
        if found:
            self._next = int(found[-1].stem) + 1
            log.info(
                "telemetry: replaying %d journal segment(s) (%d bytes) left in %s",
                len(found),
                self._appended,
                self.directory,
            )

    # -- the appender (request path) ---------------------------------------------------

    def append(
        self,
        request: Sequence[Any],
        conversation: Sequence[Any] | None,
        attempts: Sequence[Sequence[Any]],
    ) -> bool:
        """One request's rows as one line; False when ``max_bytes`` are waiting.
        An OSError (the disk) leaves no half line behind for the reader."""
        line = self._encoder.encode((request, conversation, attempts)) + b"\n"
        if self.pending_bytes + len(line) > self.max_bytes:
            return False
        segment = self._current
        if segment is None or segment.size >= self._segment_bytes:
            segment = self._rotate()
        assert self._fd is not None
        try:
            written = os.write(self._fd, line)
            if written != len(line):
                # The part that got out is in the file: count it, or the reader, which
                # reads (and skips) it, would be ahead of what was appended and call
                # itself caught up with lines unread.
                segment.size += written
                self._appended += written
                raise OSError(f"short write to {segment.path} ({written} of {len(line)} bytes)")
        except OSError:
            # Whatever part got out is a torn tail the reader skips; new lines go to a
            # new segment.
            self._seal()
            raise
        segment.size += written
        self._appended += written
        self.appended_lines += 1
        return True

    def _rotate(self) -> _Segment:
        self._seal()
        path = self.directory / f"{self._next:012d}{_SUFFIX}"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
        self._next += 1
        segment = _Segment(path)
        self._current = segment
        self._segments.append(segment)
        return segment

    def _seal(self) -> None:
        if self._current is not None:
            self._current.sealed = True
            self._current = None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # -- the reader (the writer's thread) -----------------------------------------------

    @property
    def pending_bytes(self) -> int:
        """Bytes appended (or left by an earlier run) and not yet committed."""
        return max(0, self._appended - self._committed)

    @property
    def pending_lines(self) -> int:
        return max(0, self.appended_lines - self.committed_lines)

    def read(self, max_lines: int) -> list[JournalItem]:
        """The next lines after the read position, at most ``max_lines``, oldest first."""
        items: list[JournalItem] = []
        while len(items) < max_lines and self._ri < len(self._segments):
            segment = self._segments[self._ri]
            sealed = segment.sealed  # before size: once sealed, size is final
            size = segment.size
            if sealed:
                size = max(size, self._file_size(segment))
            if self._roff < size:
                self._read_lines_of(segment, size, max_lines - len(items), items)
            if len(items) >= max_lines or (not sealed and self._roff >= size):
                break
            if sealed and self._roff >= size:
                self._ri += 1
                self._roff = 0
        return items

    def _file_size(self, segment: _Segment) -> int:
        try:
            return segment.path.stat().st_size
        except FileNotFoundError:
            return 0

    def _read_lines_of(
        self, segment: _Segment, size: int, wanted: int, into: list[JournalItem]
    ) -> None:
        if self._file_segment is not segment:
            self._close_file()
            try:
                self._file = open(segment.path, "rb")  # noqa: SIM115 (kept across reads)
            except FileNotFoundError:
                log.error("telemetry: journal segment %s vanished", segment.path)
                self._skip(size - self._roff)
                return
            self._file_segment = segment
        assert self._file is not None
        self._file.seek(self._roff)
        data = self._file.read(min(size - self._roff, _READ_CHUNK))
        if b"\n" not in data:  # a line longer than a chunk (a long conversation)
            data += self._file.read(size - self._roff - len(data))
        start = 0
        target = len(into) + wanted
        while len(into) < target:
            end = data.find(b"\n", start)
            if end < 0:
                break
            line = data[start : end + 1]
            start = end + 1
            try:
                request, conversation, attempts = self._decoder.decode(line)
            except (msgspec.DecodeError, ValueError, TypeError):
                self.bad_lines += 1
                continue
            into.append((request, conversation, attempts))
        self._read_lines += data.count(b"\n", 0, start)
        if start == 0 and len(data) == size - self._roff and segment.sealed:
            start = len(data)  # a sealed segment's torn tail: no newline will come
            self.bad_lines += 1
        self._skip(start)

    def _skip(self, n: int) -> None:
        self._roff += n
        self._read += n

    def _close_file(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = None
        self._file_segment = None

    def commit(self) -> None:
        """What was read so far is in the database: delete the segments behind it."""
        self._committed = self._read
        self.committed_lines = self._read_lines
        for _ in range(self._ri):
            self._drop(self._segments.popleft())
        self._ri = 0
        self._coff = self._roff

    def rewind(self) -> None:
        """What was read since the last commit is not in the database: read it again."""
        self._ri = 0
        self._roff = self._coff
        self._read = self._committed
        self._read_lines = self.committed_lines
        self._close_file()

    def _drop(self, segment: _Segment) -> None:
        if self._file_segment is segment:
            self._close_file()
        segment.path.unlink(missing_ok=True)

    @property
    def caught_up(self) -> bool:
        """Nothing appended is left unread (committed or not)."""
        return self._read >= self._appended

    def close(self) -> None:
        """Stop appending; delete the last segments when all their rows are committed.
        Call after the reader stopped."""
        self._seal()
        self._close_file()
        if self.pending_bytes == 0:
            while self._segments:
                self._drop(self._segments.popleft())
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
