"""``wlm telemetry export``: a table as one Parquet file, from a file or from the running writer."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from tests.unit.telemetry.factory import make_conversation, make_record
from wlm.telemetry.export import export_parquet
from wlm.telemetry.writer import TelemetryWriter, export_dir_for


def parquet_rows(path: Path) -> list[tuple]:
    return duckdb.connect().execute(f"SELECT * FROM '{path}'").fetchall()


@pytest.fixture
def filled(tmp_path: Path) -> Path:
    path = tmp_path / "t.duckdb"
    writer = TelemetryWriter(path, log_content=False)
    writer.start()
    for i in range(25):
        record = make_record(i, ago_s=100 - i)
        writer.submit(record, make_conversation(record))
    writer.close()
    return path


def test_export_from_a_file_writes_every_row_oldest_first(filled: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "requests.parquet"
    assert export_parquet(filled, out) == 25
    con = duckdb.connect()
    ids = [r[0] for r in con.execute(f"SELECT id FROM '{out}'").fetchall()]
    assert ids == [f"req-{i:06d}" for i in range(25)]
    columns = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM '{out}'").fetchall()]
    assert "latency_ms" in columns and "id_key" not in columns
    assert not list(out.parent.glob(".*.tmp"))


def test_export_of_conversations_without_content_logging_is_empty(
    filled: Path, tmp_path: Path
) -> None:
    out = tmp_path / "conversations.parquet"
    assert export_parquet(filled, out, table="conversations") == 0
    assert parquet_rows(out) == []


def test_export_through_the_writer_leaves_nothing_in_its_directory(tmp_path: Path) -> None:
    writer = TelemetryWriter(tmp_path / "t.duckdb")
    writer.start()
    for i in range(10):
        writer.submit(make_record(i))
    assert writer.flush(timeout_s=10)
    out = tmp_path / "elsewhere" / "x.parquet"
    try:
        assert export_parquet(writer, out) == 10
        assert export_parquet(writer, out) == 10  # replaces the previous export
    finally:
        writer.close()
    assert len(parquet_rows(out)) == 10
    assert list(export_dir_for(writer.path).iterdir()) == []


def test_export_refuses_a_missing_file_and_an_unknown_table(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        export_parquet(tmp_path / "none.duckdb", tmp_path / "x.parquet")
    with pytest.raises(ValueError, match="table"):
        export_parquet(tmp_path / "none.duckdb", tmp_path / "x.parquet", table="secrets")  # type: ignore[arg-type]
    assert not (tmp_path / "x.parquet").exists()
