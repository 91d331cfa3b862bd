"""The one writer of the telemetry file: a bounded queue drained by one thread.

The request path calls :meth:`TelemetryWriter.submit`, which appends to a deque
and returns: no lock, no I/O, no await (a fraction of a microsecond). One thread
takes the records in batches (as soon as ``batch_size`` wait, and whatever is
there at least every ``flush_interval_s``; up to 8 batches' worth at once when
behind) and writes each in one transaction, rollups included
(:func:`schema.write_batch`: DuckDB's appender into a staging table, then SQL).
That sustains 25-30k rows/s on 2 vCPUs, where ``executemany`` of a prepared
INSERT manages a few hundred.

When DuckDB fails (disk full, read-only directory, a file that is not a
database), the batch is kept, the failure is logged and retried with backoff,
and ``submit`` keeps accepting until ``queue_max`` records wait; after that it
drops and counts. Nothing that was accepted is lost by a graceful
:meth:`~TelemetryWriter.close` while the file is writable.

The writer's connection is the only read-write one in the process. Readers use
cursors of it (:meth:`~TelemetryWriter.cursor`, :meth:`~TelemetryWriter.read`,
:meth:`~TelemetryWriter.query`), on a small thread pool, never on the event loop.

Where the rows go is a :class:`~wlm.telemetry.store.TelemetryStore`: the DuckDB
file (:mod:`~wlm.telemetry.store_duckdb`) by default, or a PostgreSQL database
shared by replicas (:mod:`~wlm.telemetry.store_postgres`, ``WLM_TELEMETRY_URL``),
where COPY into staging tables takes the appender's place. With PostgreSQL,
``submit`` also writes each record to the journal on local disk
(:mod:`~wlm.telemetry.journal`, a few microseconds) and the thread reads it from
there, so a killed process loses none and an outage keeps none in memory.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import operator
import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from attrs import frozen

from wlm.config import Settings
from wlm.telemetry import schema
from wlm.telemetry.journal import Journal, JournalBusy, JournalItem
from wlm.telemetry.query import Cursor, QueryResult, TelemetryUnavailable, execute_limited
from wlm.telemetry.records import (
    AttemptRecord,
    BoxSampleRecord,
    ConversationRecord,
    EngineEventRecord,
    RequestRecord,
)
from wlm.telemetry.store import TelemetryStore
from wlm.telemetry.store_duckdb import DuckDBStore, export_dir_for
from wlm.telemetry.store_postgres import PostgresStore

__all__ = ["TelemetryWriter", "WriterStats", "export_dir_for"]  # export_dir_for: store_duckdb

log = logging.getLogger(__name__)

T = TypeVar("T")
_Item = tuple[RequestRecord, ConversationRecord | None, Sequence[AttemptRecord]]
# A batch as rows in the schema's column order: requests, conversations, attempts.
_Rows = tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]
_STARTED_AT = schema.REQUEST_COLUMNS.index("started_at")

_DROP_LOG_EVERY_S = 10.0
_HOUSEKEEPING_EVERY_S = 3600.0
# Behind by more than a batch: write up to this many batches' worth per transaction,
# which spreads each transaction's fixed cost (~25 ms) over more rows.
_BACKLOG_BATCHES = 8
_COMPACT_EVERY_S = 60.0
_request_row = operator.attrgetter(*schema.REQUEST_COLUMNS)
_conversation_row = operator.attrgetter(*schema.CONVERSATION_COLUMNS[:-1])
_attempt_row = operator.attrgetter(*schema.ATTEMPT_COLUMNS)
_box_row = operator.attrgetter(*schema.BOX_COLUMNS)
_event_row = operator.attrgetter(*schema.EVENT_COLUMNS)
# Box samples waiting to be written: a few rows every few seconds, so this is hours of
# them; past it (the database away that long) the oldest go first.
_BOX_QUEUE_MAX = 20_000


@frozen
class WriterStats:
    """A snapshot of the writer, for /health and the settings page."""

    queued: int  # accepted, not yet written
    written: int  # request rows written since start
    dropped: int  # refused by submit (queue full or closed) or rejected by DuckDB
    last_error: str | None  # the most recent failure, one line, no secrets
    healthy: bool  # the file is open and the last write succeeded
    spooled_bytes: int = 0  # rows waiting on disk for the database to come back (or to be replayed)
    spool_full: bool = False  # the journal refused rows (WLM_SPOOL_MAX_MB): they were dropped


class TelemetryWriter:
    """Owns the telemetry file: one read-write connection, one writer thread.

    Usage (the app's lifespan)::

        writer = TelemetryWriter(settings.telemetry_file, log_content=settings.log_content,
                                 retention_days=settings.retention_days)
        writer.start()
        ...
        writer.submit(record, conversation)      # on the request path, never blocks
        result = await writer.query("SELECT count(*) FROM requests")
        ...
        writer.close()                           # flushes everything, stops the thread
    """

    def __init__(
        self,
        path: Path | TelemetryStore,
        *,
        log_content: bool = True,
        retention_days: int | None = None,
        batch_size: int = 5000,
        flush_interval_s: float = 0.25,
        busy_interval_s: float = 1.0,
        queue_max: int = 100_000,
        retry_max_s: float = 5.0,
        read_threads: int = 2,
        memory_limit: str | None = None,
        threads: int | None = None,
        spool_dir: Path | None = None,
        spool_max_bytes: int = 256 * 1024 * 1024,
    ) -> None:
        # A path is the DuckDB file; anything else is a store (store_postgres.PostgresStore).
        self.path: Path | None = path if isinstance(path, Path) else None
        self.log_content = log_content
        self.retention_days = retention_days
        self._batch_size = max(1, batch_size)
        self._flush_interval_s = flush_interval_s
        # Each batch costs a fixed ~10 ms of DuckDB work besides its rows (a 1,000-row
        # batch costs 26 us a row, a 5,000-row one 17 us: docs/performance.md). Under
        # load, waiting longer between batches makes them bigger and cheaper; at a light
        # load rows still land within flush_interval_s.
        self._busy_interval_s = max(busy_interval_s, flush_interval_s)
        self._busy_rows = max(1, min(batch_size, 1000))
        self._last_batch = 0
        self._queue_max = queue_max
        self._retry_max_s = retry_max_s
        self._read_threads = read_threads
        # DuckDB's own default is 80% of RAM, taken from any llama.cpp beside it.
        self._duckdb_config: dict[str, str | bool | int | float | list[str]] = (
            {"memory_limit": memory_limit} if memory_limit else {}
        )
        # DuckDB's own default is a thread per core, and a batch's INSERTs spread over them
        # cost 15% more CPU than on one thread (docs/performance.md), taken from the event
        # loop and the engines on the same cores.
        self._duckdb_config["threads"] = threads or default_threads()
        self._store: TelemetryStore = (
            DuckDBStore(path, self._duckdb_config) if isinstance(path, Path) else path
        )

        self._queue: deque[_Item] = deque()
        self._box: deque[BoxSampleRecord] = deque()
        self._events: deque[EngineEventRecord] = deque(maxlen=_BOX_QUEUE_MAX)
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._close_deadline = 0.0
        # Guards the connection swap and cursor creation (readers vs the writer thread).
        self._con_lock = threading.Lock()
        self._con = False  # the store is open
        self._read_pool: _DaemonPool | None = None
        # Notified after every batch; flush() waits on it.
        self._progress = threading.Condition()
        self._inflight = 0
        self._pending: list[_Item] = []  # a batch that failed for lack of a database
        # PostgreSQL only: every accepted row goes to disk before submit returns, and
        # the thread reads it back from there (journal.py); the queue above then holds
        # only what the journal could not take (its disk failed).
        self._journal = Journal(spool_dir, spool_max_bytes) if spool_dir is not None else None
        self._spool_full = False
        # A backlog on disk (the database was away, or an earlier run left one): shown
        # as spooled until the thread has read to the journal's end.
        self._catching_up = False
        self._last_journal_error = float("-inf")

        self._written = 0
        self._dropped = 0
        self._drop_lock = threading.Lock()
        self._last_drop_log = float("-inf")
        self._last_error: str | None = None
        self._healthy = False
        self._failures = 0
        self._next_housekeeping = 0.0
        self._next_compact = 0.0
        self._dirty_since: dt.datetime | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> TelemetryWriter:
        """The writer ``settings`` ask for: into the PostgreSQL database of
        ``WLM_TELEMETRY_URL`` when set, else into the DuckDB file."""
        target: Path | TelemetryStore = settings.telemetry_file
        if settings.telemetry_url:
            target = PostgresStore(settings.telemetry_url)
        return cls(
            target,
            log_content=settings.log_content,
            retention_days=settings.retention_days,
            memory_limit=settings.telemetry_memory_limit,
            threads=settings.telemetry_threads,
            spool_dir=settings.data_dir / "telemetry-spool" if settings.telemetry_url else None,
            spool_max_bytes=settings.spool_max_mb * 1024 * 1024,
        )

    @property
    def durable(self) -> bool:
        """True while accepted rows go to the journal on disk before :meth:`submit`
        returns (PostgreSQL; should that disk fail, they wait in memory meanwhile)."""
        return self._journal is not None

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> None:
        """Open the file (creating its directory), migrate it, start the writer thread.

        A failure to open is logged and retried by the thread; serving goes on
        and :meth:`stats` reports it.
        """
        if self._thread is not None:
            raise RuntimeError("TelemetryWriter.start() called twice")
        self._read_pool = _DaemonPool(self._read_threads, "wlm-telemetry-read")
        if self._journal is not None:
            try:
                self._journal.open()
                self._catching_up = self._journal.pending_bytes > 0
            except (JournalBusy, OSError) as exc:
                log.error(
                    "telemetry: no journal (%s): rows wait in memory, and a kill loses "
                    "the last ones",
                    _one_line(exc),
                )
                self._journal = None
        self._open()
        self._thread = threading.Thread(target=self._run, name="wlm-telemetry-writer", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float = 10.0) -> None:
        """Write everything accepted so far, then stop the thread and close the file.

        Waits at most ``timeout_s``; what could not be written by then (the file
        is failing) is logged as lost, or, with a spool, left in it for the next
        start. Later ``submit`` calls return False.
        """
        if self._closed:
            return
        self._closed = True
        self._close_deadline = time.monotonic() + timeout_s
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            if self._thread.is_alive():
                log.error("telemetry writer did not stop within %.1f s", timeout_s)
        if self._read_pool is not None:
            # A read blocked on a frozen server must not block the stop: wait for the
            # readers until the deadline only (their threads are daemons).
            self._read_pool.shutdown(wait=False, cancel_futures=True)
            self._read_pool.join(max(0.0, self._close_deadline - time.monotonic()))
        lost = len(self._queue) + len(self._pending)
        if lost:
            log.error("telemetry: %d records could not be written before close", lost)
        if self._thread is None or not self._thread.is_alive():
            self._disconnect()
            if self._journal is not None:
                waiting = self._journal.pending_lines
                if waiting:
                    log.warning(
                        "telemetry: %d records wait in %s for the next start",
                        waiting,
                        self._journal.directory,
                    )
                self._journal.close()

    async def aclose(self, timeout_s: float = 10.0) -> None:
        """:meth:`close` off the event loop (for the app's lifespan)."""
        await asyncio.to_thread(self.close, timeout_s)

    # -- the request path ------------------------------------------------------

    def submit(
        self,
        record: RequestRecord,
        conversation: ConversationRecord | None = None,
        attempts: Sequence[AttemptRecord] = (),
    ) -> bool:
        """Queue one request's records; never blocks. False (and counted) when full or closed.

        With a journal (PostgreSQL), the records are on disk when this returns: one
        ``write()`` of one line, a few microseconds (docs/performance.md).
        """
        journal = self._journal
        if journal is not None and not self._closed:
            try:
                kept = journal.append(
                    _request_row(record),
                    (*_conversation_row(conversation), record.started_at)
                    if conversation is not None and self.log_content
                    else None,
                    [_attempt_row(a) for a in attempts],
                )
            except OSError as exc:  # the local disk failed: keep them in memory
                self._journal_failed(exc)
            else:
                return self._journaled(kept, journal)
        queue = self._queue
        if len(queue) >= self._queue_max or self._closed:
            self._count_drop(1)
            return False
        queue.append((record, conversation, attempts))
        if len(queue) == self._batch_size:
            self._wake.set()
        return True

    def _journaled(self, kept: bool, journal: Journal) -> bool:
        if not kept:
            if not self._spool_full:
                self._spool_full = True
                log.error(
                    "telemetry: the spool in %s is full (WLM_SPOOL_MAX_MB): rows are "
                    "being DROPPED until %s has taken what waits",
                    journal.directory,
                    self._store.name,
                )
            self._count_drop(1, reason="spool full")
            return False
        self._spool_full = False
        if journal.appended_lines % self._batch_size == 0:
            self._wake.set()
        return True

    def _journal_failed(self, exc: OSError) -> None:
        now = time.monotonic()
        if now - self._last_journal_error >= _DROP_LOG_EVERY_S:
            self._last_journal_error = now
            log.error(
                "telemetry: cannot write the journal (%s): rows wait in memory until "
                "written, and a kill would lose them",
                _one_line(exc),
            )

    def submit_box(self, rows: Sequence[BoxSampleRecord]) -> bool:
        """Queue one sample's rows of the box (``box_samples``); never blocks. They are
        written by the same thread, in their own transaction, within a flush interval;
        False when closed. Not spooled: while the database is away the newest
        ``_BOX_QUEUE_MAX`` rows wait in memory."""
        if self._closed:
            self._count_drop(len(rows))
            return False
        box = self._box
        box.extend(rows)
        excess = len(box) - _BOX_QUEUE_MAX
        if excess > 0:
            for _ in range(excess):
                box.popleft()
            self._count_drop(excess, reason="box samples waited too long")
        return True

    def submit_event(self, record: EngineEventRecord) -> bool:
        """Queue one local engine event (``engine_events``: a crash); never blocks.
        Written by the same thread like box samples, in their own transaction; False
        when closed."""
        if self._closed:
            self._count_drop(1)
            return False
        self._events.append(record)
        self._wake.set()
        return True

    def stats(self) -> WriterStats:
        """Counts and health, cheap enough for every /health call."""
        return WriterStats(
            queued=len(self._queue)
            + len(self._pending)
            + self._inflight
            + (self._journal.pending_lines if self._journal is not None else 0),
            written=self._written,
            dropped=self._dropped,
            last_error=self._last_error,
            healthy=self._healthy,
            spooled_bytes=self._spooled_bytes(),
            spool_full=self._spool_full,
        )

    def _spooled_bytes(self) -> int:
        journal = self._journal
        if journal is None or (self._healthy and not self._catching_up):
            return 0  # the journal's last fraction of a second is no backlog
        return journal.pending_bytes

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Block until everything submitted so far is written; False on timeout.

        For tests and shutdown paths; do not call it on the event loop.
        """
        self._wake.set()
        with self._progress:
            return self._progress.wait_for(
                lambda: (
                    not self._queue
                    and not self._box
                    and not self._events
                    and not self._pending
                    and not self._inflight
                    and (self._journal is None or self._journal.pending_bytes == 0)
                ),
                timeout_s,
            )

    # -- readers -----------------------------------------------------------------

    @property
    def store(self) -> TelemetryStore:
        return self._store

    def cursor(self) -> Cursor:
        """A new cursor on the file (a session of another store), for one thread at a
        time; give it back with :meth:`release` (a DuckDB cursor may just be closed).

        Raises :class:`TelemetryUnavailable` when the store is not open.
        """
        with self._con_lock:
            if not self._con:
                raise TelemetryUnavailable(self._last_error or "telemetry is not open")
            return self._store.reader()

    def release(self, cur: Cursor) -> None:
        """Give back a :meth:`cursor`."""
        with self._con_lock:  # cursors of one parent are made and closed one at a time
            self._store.release(cur)

    async def read(self, fn: Callable[[Cursor], T]) -> T:
        """Run ``fn(cursor)`` on the reader pool with a fresh cursor, closed afterwards."""
        if self._read_pool is None or self._closed:
            raise TelemetryUnavailable("telemetry is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_pool, self._with_cursor, fn)

    async def query(
        self,
        sql: str,
        params: Sequence[Any] | dict[str, Any] | None = None,
        *,
        max_rows: int = 10_000,
        timeout_s: float = 10.0,
    ) -> QueryResult:
        """Run wlm's own SQL (never a user's: see ``query.run_user_sql``) with limits."""
        return await self.read(
            partial(execute_limited, sql=sql, params=params, max_rows=max_rows, timeout_s=timeout_s)
        )

    def _with_cursor(self, fn: Callable[[Cursor], T]) -> T:
        cur = self.cursor()
        try:
            return fn(cur)
        finally:
            self.release(cur)

    # -- the writer thread -----------------------------------------------------------

    def _run(self) -> None:
        journal = self._journal
        while True:
            if not self._con and not self._open():
                if self._stopping.is_set():
                    self._drop_box_at_stop()
                # Stopping with nothing to write: no reason to keep retrying the file.
                # With a journal the rows wait on disk for the next start.
                if self._give_up() or (self._stopping.is_set() and not self._has_work()):
                    break
                self._backoff()
                continue
            self._maintain()
            if not self._con:
                continue
            if journal is not None and not journal.caught_up:
                if not self._write_journal(journal):
                    if self._give_up():
                        break
                    self._backoff()
                    continue
                if journal.pending_lines >= self._batch_size:
                    continue
            if self._pending or self._queue:
                if not self._write_next():
                    if self._give_up():
                        break
                    self._backoff()
                continue_now = len(self._queue) >= self._batch_size
                if continue_now or self._pending:
                    continue
            if self._events and not self._write_events():
                if self._give_up():
                    break
                self._backoff()
                continue
            if self._box and not self._write_box():
                if self._stopping.is_set():
                    self._drop_box_at_stop()
                    continue
                self._backoff()
                continue
            if (
                self._stopping.is_set()
                and not self._queue
                and not self._pending
                and (journal is None or journal.caught_up)
            ):
                break
            busy = self._last_batch >= self._busy_rows
            self._wake.wait(self._busy_interval_s if busy else self._flush_interval_s)
            self._wake.clear()
        self._notify()

    def _drop_box_at_stop(self) -> None:
        """Samples of the box are not worth holding a stop for (a request's row is): when
        the database fails at stop they are dropped, and counted."""
        if self._box:
            self._count_drop(len(self._box), reason="box samples at stop")
            self._box.clear()

    def _has_work(self) -> bool:
        if self._journal is not None:  # box samples and events are not journaled
            return bool(self._queue or self._pending)
        return bool(self._queue or self._pending or self._box or self._events)

    def _give_up(self) -> bool:
        return self._stopping.is_set() and time.monotonic() >= self._close_deadline

    def _backoff(self) -> None:
        delay = min(self._retry_max_s, 0.05 * 2 ** min(self._failures, 16))
        if self._stopping.is_set():
            delay = min(delay, max(0.0, self._close_deadline - time.monotonic()))
        self._wake.wait(delay)
        self._wake.clear()

    def _write_next(self) -> bool:
        """Write the pending batch or the next one from the queue; False if DuckDB failed."""
        with self._progress:
            if self._pending:
                batch, self._pending = self._pending, []
            else:
                n = min(self._batch_size * _BACKLOG_BATCHES, len(self._queue))
                batch = [self._queue.popleft() for _ in range(n)]
            self._inflight = len(batch)
            self._last_batch = len(batch)
        try:
            written = self._write_all(batch)
        except _WriteFailed as failed:
            with self._progress:
                self._pending = list(failed.remaining)
                self._inflight = 0
                self._written += failed.written
            self._fail(f"writing {len(failed.remaining)} records failed: {failed.reason}")
            self._disconnect()
            return False
        self._succeeded(written)
        return True

    def _write_all(self, batch: Sequence[_Item]) -> int:
        """Write a batch; if DuckDB refuses a value, write record by record and drop the bad."""
        data_errors = self._store.data_errors
        try:
            self._write_batch(batch)
            return len(batch)
        except data_errors as exc:
            cause = _one_line(exc)
        except Exception as exc:
            raise _WriteFailed(batch, 0, _one_line(exc)) from exc
        written = bad = 0
        try:
            for i, item in enumerate(batch):
                try:
                    self._write_batch([item])
                    written += 1
                except data_errors:
                    bad += 1
                except Exception as exc:
                    raise _WriteFailed(batch[i:], written, _one_line(exc)) from exc
        finally:
            self._count_drop(bad, reason=f"rejected by the database: {cause}")
        return written

    def _write_box(self) -> bool:
        """Write the waiting box samples; False (kept for the retry) if the database failed."""
        return self._write_waiting(
            self._box, self._store.write_box_samples, _box_row, "box samples"
        )

    def _write_events(self) -> bool:
        """Write the waiting engine events; False (kept for the retry) if the database failed."""
        return self._write_waiting(
            self._events, self._store.write_engine_events, _event_row, "engine events"
        )

    def _write_waiting(
        self,
        waiting: deque[T],
        write: Callable[[list[tuple[Any, ...]]], None],
        row: Callable[[T], tuple[Any, ...]],
        what: str,
    ) -> bool:
        """Write all of ``waiting`` in one call: rows the database rejects are dropped
        (counted); if it failed, they go back to the front of ``waiting``, and False."""
        taken = [waiting.popleft() for _ in range(len(waiting))]
        try:
            write([row(r) for r in taken])
        except self._store.data_errors as exc:
            self._count_drop(len(taken), reason=f"rejected by the database: {_one_line(exc)}")
        except Exception as exc:
            waiting.extendleft(reversed(taken))
            self._fail(f"writing {len(taken)} {what} failed: {_one_line(exc)}")
            self._disconnect()
            return False
        self._notify()
        return True

    def _rows(self, batch: Sequence[_Item]) -> _Rows:
        rows = [_request_row(record) for record, _, _ in batch]
        conversations = (
            [(*_conversation_row(c), r.started_at) for r, c, _ in batch if c is not None]
            if self.log_content
            else []
        )
        attempts = [_attempt_row(a) for _, _, tries in batch for a in tries]
        return rows, conversations, attempts

    def _write_batch(self, batch: Sequence[_Item]) -> None:
        self._write_rows(self._rows(batch))

    def _write_rows(self, rows: _Rows) -> None:
        self._store.write_batch(*rows)
        hour = _oldest_hour([row[_STARTED_AT] for row in rows[0]])
        self._dirty_since = hour if self._dirty_since is None else min(self._dirty_since, hour)

    # -- the journal (PostgreSQL) --------------------------------------------------------

    def _write_journal(self, journal: Journal) -> bool:
        """Write the journal's next lines in one transaction; False when the database
        failed (they stay on disk and are read again after the backoff)."""
        limit = self._batch_size * _BACKLOG_BATCHES
        try:
            items = journal.read(limit)
        except OSError as exc:  # the local disk: retry, the database is not at fault
            self._fail(f"reading the journal in {journal.directory} failed: {_one_line(exc)}")
            return False
        if journal.bad_lines:
            self._count_drop(journal.bad_lines, reason="unreadable in the journal")
            journal.bad_lines = 0
        self._last_batch = len(items)
        written = 0
        if items:
            rows = _journal_rows(items)
            try:
                try:
                    self._write_rows(rows)
                    written = len(items)
                except self._store.data_errors as exc:
                    written = self._replay_row_by_row(rows, _one_line(exc))
            except Exception as exc:
                journal.rewind()
                self._fail(f"writing {len(items)} records failed: {_one_line(exc)}")
                self._disconnect()
                return False
        journal.commit()
        if len(items) < limit:
            self._catching_up = False
        self._succeeded(written)
        return True

    def _replay_row_by_row(self, rows: _Rows, cause: str) -> int:
        """A journaled batch the database refused: each request alone, the bad ones dropped."""
        requests, conversations, attempts = rows
        written = bad = 0
        for row in requests:
            rid = row[0]
            one = (
                [row],
                [c for c in conversations if c[0] == rid],
                [a for a in attempts if a[0] == rid],
            )
            try:
                self._write_rows(one)
                written += 1
            except self._store.data_errors:
                bad += 1
        self._count_drop(bad, reason=f"rejected by the database: {cause}")
        return written

    def _succeeded(self, n: int) -> None:
        with self._progress:
            self._inflight = 0
            self._written += n
            self._failures = 0
            self._healthy = True
            self._progress.notify_all()

    def _notify(self) -> None:
        with self._progress:
            self._progress.notify_all()

    def _fail(self, message: str) -> None:
        self._failures += 1
        self._healthy = False
        self._catching_up = True
        self._last_error = message[:500]
        # Log the first failure and then every 10th, so an outage does not flood the log.
        if self._failures == 1 or self._failures % 10 == 0:
            log.error("telemetry: %s (attempt %d, will retry)", self._last_error, self._failures)
        self._notify()

    # -- the connection --------------------------------------------------------------

    def _open(self) -> bool:
        """Open, lock down and migrate the store; False (logged) when that fails."""
        store = self._store
        try:
            before = store.open()
            if before == 0:
                log.info("telemetry: created %s (schema %d)", store.name, schema.SCHEMA_VERSION)
            elif before != schema.SCHEMA_VERSION:
                log.info(
                    "telemetry: %s migrated from schema %d to %d",
                    store.name,
                    before,
                    schema.SCHEMA_VERSION,
                )
            store.housekeeping(self.retention_days, _utc_now())
        except Exception as exc:
            store.close()
            self._fail(f"cannot open {store.name}: {_one_line(exc)}")
            return False
        with self._con_lock:
            self._con = True
        self._healthy = True
        self._failures = 0
        self._next_housekeeping = time.monotonic() + _HOUSEKEEPING_EVERY_S
        return True

    def _disconnect(self) -> None:
        with self._con_lock:
            self._con = False
            self._store.close()

    def _maintain(self) -> None:
        """Housekeeping (on open, then hourly) and rollup compaction (every minute)."""
        if not self._con:
            return
        now = time.monotonic()
        try:
            if now >= self._next_housekeeping:
                self._next_housekeeping = now + _HOUSEKEEPING_EVERY_S
                self._store.housekeeping(self.retention_days, _utc_now())
            if self._dirty_since is not None and now >= self._next_compact:
                self._next_compact = now + _COMPACT_EVERY_S
                self._compact()
        except Exception as exc:
            self._fail(f"maintenance failed: {_one_line(exc)}")
            self._disconnect()

    def _compact(self) -> None:
        since, self._dirty_since = self._dirty_since, None
        assert self._con and since is not None
        try:
            self._store.compact(since)
        except BaseException:
            # Still uncompacted (the sums stay right, only the row count grows): retry later.
            self._dirty_since = (
                since if self._dirty_since is None else min(since, self._dirty_since)
            )
            raise

    def _count_drop(self, n: int, reason: str = "queue full") -> None:
        if n <= 0:
            return
        with self._drop_lock:
            self._dropped += n
            now = time.monotonic()
            if now - self._last_drop_log < _DROP_LOG_EVERY_S:
                return
            self._last_drop_log = now
            total = self._dropped
        log.warning(
            "telemetry: dropped %d record(s) (%s; %d dropped since start, %d queued)",
            n,
            reason if not self._closed else "writer closed",
            total,
            len(self._queue),
        )


class _WriteFailed(Exception):
    """DuckDB failed for a reason other than the data; ``remaining`` must be retried."""

    def __init__(self, remaining: Sequence[_Item], written: int, reason: str) -> None:
        super().__init__(reason)
        self.remaining = remaining
        self.written = written
        self.reason = reason


def default_threads() -> int:
    """DuckDB threads when none are configured: half the CPUs, at least one."""
    return max(1, (os.cpu_count() or 2) // 2)


def _oldest_hour(times: Sequence[dt.datetime | str]) -> dt.datetime:
    """The UTC hour (naive, like the stored timestamps) of the earliest of ``times``.

    A batch's times are all aware UTC datetimes (from memory) or all ISO text of UTC
    times (from the journal), which sorts as the times do (to the second, finer than
    the hour needs): the earliest is found without converting each one.
    """
    try:
        oldest = _naive_utc(_as_datetime(min(times)))
    except TypeError:  # naive and aware mixed (written by hand): compare them converted
        oldest = min(_naive_utc(_as_datetime(t)) for t in times)
    return oldest.replace(minute=0, second=0, microsecond=0)


def _journal_rows(items: Sequence[JournalItem]) -> _Rows:
    """The journal's lines as a batch: requests, conversations, attempts."""
    return (
        [tuple(request) for request, _, _ in items],
        [tuple(c) for _, c, _ in items if c is not None],
        [tuple(a) for _, _, tries in items for a in tries],
    )


def _as_datetime(value: dt.datetime | str) -> dt.datetime:
    """A timestamp back from the journal (kept there as ISO text)."""
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)


def _naive_utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value
    return value.astimezone(dt.UTC).replace(tzinfo=None)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}"[:500]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class _DaemonPool(Executor):
    """A thread pool whose threads are daemons: one stuck in a read on a frozen
    database neither blocks :meth:`TelemetryWriter.close` past its deadline nor the
    interpreter's exit (``ThreadPoolExecutor`` joins its threads at exit)."""

    def __init__(self, workers: int, name: str) -> None:
        self._work: queue.SimpleQueue[tuple[Future[Any], Callable[[], Any]] | None] = (
            queue.SimpleQueue()
        )
        self._shutdown = False
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}_{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            self._work.put((future, partial(fn, *args, **kwargs)))
        return future

    def _serve(self) -> None:
        while True:
            item = self._work.get()
            if item is None:
                return
            future, call = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = call()
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            if not self._shutdown:
                self._shutdown = True
                if cancel_futures:
                    while True:
                        try:
                            item = self._work.get_nowait()
                        except queue.Empty:
                            break
                        if item is not None:
                            item[0].cancel()
                for _ in self._threads:
                    self._work.put(None)
        if wait:
            self.join(None)

    def join(self, timeout_s: float | None) -> bool:
        """Wait for the threads (at most ``timeout_s`` in all); True when all ended."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)
