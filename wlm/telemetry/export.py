"""``wlm telemetry export out.parquet``: a table of the telemetry as one Parquet file.

Two cases:

- the server is not running: the file is opened read-only by this process, and
  DuckDB writes the Parquet file directly;
- the server is running (it holds the file): pass its :class:`TelemetryWriter`.
  Its database forbids file access (``query.lock_down``) except for one
  directory, ``<db>.exports/``, so DuckDB writes there and the finished file is
  then moved to ``out_path``. Run it off the event loop (``asyncio.to_thread``).

Either way the output appears whole or not at all: it is written under a
temporary name and renamed.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Literal

import duckdb

from wlm.telemetry.query import TelemetryUnavailable
from wlm.telemetry.writer import TelemetryWriter, export_dir_for

__all__ = ["export_parquet"]

ExportTable = Literal["requests", "conversations"]
# Conversations keep their own order; requests are exported oldest first.
_SELECT = {
    "requests": "SELECT * EXCLUDE (id_key) FROM requests ORDER BY started_at, id",
    "conversations": "SELECT * EXCLUDE (request_key) FROM conversations ORDER BY started_at",
}


def export_parquet(
    source: Path | TelemetryWriter,
    out_path: Path,
    *,
    table: ExportTable = "requests",
) -> int:
    """Write ``table`` of the telemetry to ``out_path`` as Parquet (zstd); return the row count.

    ``source`` is the path of a telemetry file no server holds, or the running
    writer. Raises ``FileNotFoundError`` for a missing file and
    :class:`~wlm.telemetry.query.TelemetryUnavailable` when the file is held or
    the writer is not open.
    """
    if table not in _SELECT:
        raise ValueError(f"table must be one of {sorted(_SELECT)}, not {table!r}")
    out_path = Path(out_path).resolve()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(source, TelemetryWriter):
        if source.path is None:
            raise TelemetryUnavailable(
                "Parquet export reads the DuckDB file; with PostgreSQL use its own tools"
            )
        staging_dir = export_dir_for(source.path)
        staging_dir.mkdir(parents=True, exist_ok=True)
        cursor = source.cursor()
        try:
            assert isinstance(cursor, duckdb.DuckDBPyConnection)
            return _copy(cursor, table, staging_dir, out_path)
        finally:
            source.release(cursor)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"no telemetry file at {path}")
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        detail = " ".join(str(exc).split())
        if "Conflicting lock" in detail:
            # A running server holds the only lock DuckDB gives out; nothing else can open it.
            raise TelemetryUnavailable(
                f"{path} is in use by a running wlm server: "
                "stop the server first, or use `wlm sql` to query it while it runs"
            ) from exc
        raise TelemetryUnavailable(f"cannot open {path}: {detail}") from exc
    try:
        return _copy(con, table, out_path.parent, out_path)
    finally:
        con.close()


def _copy(con: duckdb.DuckDBPyConnection, table: str, work_dir: Path, out_path: Path) -> int:
    name = f".{out_path.name}.{uuid.uuid4().hex}.tmp"
    written = work_dir / name  # where DuckDB may write
    landing = out_path.parent / name  # next to the output, so the last step is a rename
    try:
        # COPY takes no parameter for its target; the path is ours, quoted here.
        target = str(written).replace("'", "''")
        row = con.execute(
            f"COPY ({_SELECT[table]}) TO '{target}' (FORMAT parquet, COMPRESSION zstd)"
        ).fetchone()
        if written != landing:
            shutil.move(written, landing)
        os.replace(landing, out_path)
    finally:
        written.unlink(missing_ok=True)
        landing.unlink(missing_ok=True)
    return int(row[0]) if row else 0
