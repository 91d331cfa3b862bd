"""The journal (wlm/telemetry/journal.py): lines come back in order, a segment goes
only once all its lines are committed, what a dead process left is read first at the
next open, a torn last line is skipped, a full journal refuses, and a writer whose
journal's disk fails keeps the rows in memory instead of losing them."""

from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path

import pytest

from tests.unit.telemetry.factory import make_record
from wlm.telemetry.journal import Journal, JournalBusy
from wlm.telemetry.writer import TelemetryWriter


def request(i: int) -> list[object]:
    return [f"req-{i:06d}", "2026-12-05T03:00:00", i % 2 == 0, 1.5]


def ids(items: list[tuple[list[object], object, object]]) -> list[object]:
    return [item[0][0] for item in items]


def segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.journal"))


def test_lines_come_back_in_order_and_segments_go_once_committed(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    journal.open()
    for i in range(10):
        assert journal.append(request(i), [f"req-{i:06d}", "{}", "hi"], [[f"req-{i:06d}", 1]])
    assert len(segments(tmp_path)) > 2
    first = journal.read(4)
    assert ids(first) == [f"req-{i:06d}" for i in range(4)]
    assert first[0][1] == ["req-000000", "{}", "hi"] and first[0][2] == [["req-000000", 1]]
    journal.rewind()  # the database failed: the same lines again
    assert ids(journal.read(4)) == ids(first)
    journal.commit()
    rest = journal.read(100)
    assert ids(rest) == [f"req-{i:06d}" for i in range(4, 10)]
    assert journal.pending_bytes > 0 and journal.caught_up
    journal.commit()
    assert journal.pending_bytes == 0 and journal.pending_lines == 0
    assert len(segments(tmp_path)) == 1  # the one still being appended to
    journal.close()
    assert segments(tmp_path) == []


def test_what_a_dead_process_left_is_read_first_then_deleted(tmp_path: Path) -> None:
    dead = Journal(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    dead.open()
    for i in range(6):
        dead.append(request(i), None, [])
    dead.commit()  # nothing read: nothing committed
    # It dies without close(): its lock goes with its process (here: its descriptor).
    assert dead._lock_fd is not None
    os.close(dead._lock_fd)
    with (segments(tmp_path)[-1]).open("ab") as f:
        f.write(b'[["req-torn", "2026-')  # a machine crash's torn last line

    again = Journal(tmp_path, max_bytes=1 << 20, segment_bytes=200)
    again.open()
    assert again.pending_lines == 6
    again.append(request(6), None, [])
    assert ids(again.read(100)) == [f"req-{i:06d}" for i in range(7)]
    assert again.bad_lines == 1
    again.commit()
    assert len(segments(tmp_path)) == 1  # the new run's own segment
    again.close()
    assert segments(tmp_path) == []


def test_a_second_process_on_the_same_directory_is_refused(tmp_path: Path) -> None:
    first = Journal(tmp_path, max_bytes=1 << 20)
    first.open()
    with pytest.raises(JournalBusy):
        Journal(tmp_path, max_bytes=1 << 20).open()
    first.close()
    Journal(tmp_path, max_bytes=1 << 20).open()


def test_a_full_journal_refuses_until_lines_are_committed(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=300, segment_bytes=100)
    journal.open()
    accepted = 0
    while journal.append(request(accepted), None, []):
        accepted += 1
    assert 0 < accepted < 20 and journal.pending_bytes <= 300
    assert len(journal.read(100)) == accepted
    journal.commit()
    assert journal.append(request(99), None, [])


def test_a_line_longer_than_a_read_chunk(tmp_path: Path) -> None:
    journal = Journal(tmp_path, max_bytes=64 << 20)
    journal.open()
    big = "x" * (3 << 20)
    journal.append(request(1), ["req-000001", big, None], [])
    journal.append(request(2), None, [])
    items = journal.read(10)
    assert ids(items) == ["req-000001", "req-000002"]
    assert items[0][1] == ["req-000001", big, None]


async def test_a_journal_whose_disk_fails_keeps_the_rows_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    writer = TelemetryWriter(tmp_path / "t.duckdb", spool_dir=tmp_path / "spool")
    writer.start()
    try:
        journal = writer._journal
        assert journal is not None
        assert writer.submit(make_record(1))  # journaled

        def disk_full(*_: object) -> bool:
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(journal, "append", disk_full)
        assert all(writer.submit(make_record(i)) for i in range(2, 12))
        assert await asyncio.to_thread(writer.flush, 10)
        result = await writer.query("SELECT count(*), count(DISTINCT id) FROM requests")
        assert list(result.rows) == [(11, 11)]
        assert writer.stats().dropped == 0
        assert any("cannot write the journal" in r.getMessage() for r in caplog.records)
    finally:
        await writer.aclose()


def test_a_short_write_does_not_hide_the_lines_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk that takes only part of a line: the torn part is skipped, and the lines
    appended after it are still pending and unread, so a stop keeps their segment."""
    journal = Journal(tmp_path, max_bytes=1 << 20)
    journal.open()
    assert journal.append(request(0), None, [])
    real_write = os.write

    def short_write(fd: int, data: bytes) -> int:  # all but the newline got out
        return real_write(fd, bytes(data)[:-1])

    monkeypatch.setattr("wlm.telemetry.journal.os.write", short_write)
    with pytest.raises(OSError, match="short write"):
        journal.append(request(1), ["req-000001", "{}", "x" * 4000], [])
    monkeypatch.setattr("wlm.telemetry.journal.os.write", real_write)
    assert ids(journal.read(10)) == ["req-000000"]  # and the torn line, skipped
    journal.commit()
    assert journal.append(request(2), None, [])
    assert journal.append(request(3), None, [])
    assert not journal.caught_up and journal.pending_bytes > 0 and journal.pending_lines == 2
    journal.close()  # a stop before the reader got to them
    again = Journal(tmp_path, max_bytes=1 << 20)
    again.open()
    assert ids(again.read(10)) == ["req-000002", "req-000003"]
    again.close()


def test_a_stray_file_in_the_directory_does_not_stop_the_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = Journal(tmp_path, max_bytes=1 << 20)
    dead.open()
    dead.append(request(0), None, [])
    assert dead._lock_fd is not None
    os.close(dead._lock_fd)  # it dies: its lock goes with it
    (tmp_path / "foo.journal").write_bytes(b"not ours\n")
    journal = Journal(tmp_path, max_bytes=1 << 20)
    journal.open()
    assert ids(journal.read(10)) == ["req-000000"]
    assert any("foo.journal" in r.getMessage() for r in caplog.records)
    journal.close()
    assert (tmp_path / "foo.journal").exists()


async def test_a_writer_is_durable_only_with_a_journal(tmp_path: Path) -> None:
    """What decides whether the proxy submits a row before an answer's last part."""
    journaled = TelemetryWriter(tmp_path / "a.duckdb", spool_dir=tmp_path / "spool")
    in_memory = TelemetryWriter(tmp_path / "b.duckdb")
    busy = TelemetryWriter(tmp_path / "c.duckdb", spool_dir=tmp_path / "spool")
    for writer in (journaled, in_memory, busy):
        writer.start()
    try:
        # The second writer on one spool gets no journal: its rows wait in memory.
        assert (journaled.durable, in_memory.durable, busy.durable) == (True, False, False)
    finally:
        for writer in (journaled, in_memory, busy):
            await writer.aclose()
