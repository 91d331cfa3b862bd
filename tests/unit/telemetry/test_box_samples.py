"""Box samples in the telemetry file: written by the writer, read by box_timeseries."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from tests.unit.telemetry.factory import make_box_rows
from wlm.telemetry.analytics import run_named
from wlm.telemetry.writer import TelemetryWriter

GIB = 1024**3


async def test_samples_land_in_box_samples_and_box_timeseries_buckets_them(
    tmp_path: Path,
) -> None:
    writer = TelemetryWriter(tmp_path / "t.duckdb")
    writer.start()
    try:
        for ago_s in (40, 20):
            assert writer.submit_box(make_box_rows(ago_s=ago_s))
        assert writer.flush(timeout_s=10)
        stored = await writer.query("SELECT kind, count(*) FROM box_samples GROUP BY 1 ORDER BY 1")
        assert stored.rows == (("cpu", 2), ("engine", 2), ("gpu", 2))
        found = await run_named(writer, "box_timeseries", hours=1, bucket_minutes=60)
        rows = [dict(zip(found.columns, r, strict=True)) for r in found.rows]
        # both samples within the last hour; a bucket boundary may fall between them
        per_device: dict[str, int] = {}
        for row in rows:
            per_device[row["device"]] = per_device.get(row["device"], 0) + row["samples"]
            assert isinstance(row["bucket"], dt.datetime)
        assert per_device == {"cpu": 2, "gpu 0": 2, "qwen3-0.6b": 2}
        cpu = next(r for r in rows if r["device"] == "cpu")
        assert (cpu["util_avg_percent"], cpu["mem_total_bytes"]) == (42.5, 16 * GIB)
        gpu = next(r for r in rows if r["device"] == "gpu 0")
        assert (gpu["name"], gpu["util_max_percent"], gpu["mem_used_max_bytes"]) == (
            "NVIDIA RTX 4090",
            97.0,
            20 * GIB,
        )
        engine = next(r for r in rows if r["device"] == "qwen3-0.6b")
        assert (engine["slots_busy_max"], engine["util_avg_percent"]) == (2, None)
    finally:
        await writer.aclose()


async def test_box_samples_past_retention_are_deleted(tmp_path: Path) -> None:
    writer = TelemetryWriter(tmp_path / "t.duckdb", retention_days=1)
    writer.start()
    try:
        assert writer.submit_box(make_box_rows(ago_s=3 * 86400))
        assert writer.submit_box(make_box_rows(ago_s=5))
        assert writer.flush(timeout_s=10)
        store = writer.store
        await writer.read(
            lambda _: store.housekeeping(1, dt.datetime.now(dt.UTC).replace(tzinfo=None))
        )
        left = await writer.query("SELECT count(*) FROM box_samples")
        assert left.rows == ((3,),)
    finally:
        await writer.aclose()


async def test_a_closed_writer_refuses_box_samples(tmp_path: Path) -> None:
    writer = TelemetryWriter(tmp_path / "t.duckdb")
    writer.start()
    await writer.aclose()
    assert not writer.submit_box(make_box_rows())
    assert writer.stats().dropped == 3
