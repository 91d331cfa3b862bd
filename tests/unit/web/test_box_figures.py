"""The box's charts from plain rows of box_timeseries."""

from __future__ import annotations

import datetime as dt
from typing import Any

from wlm.web.box_figures import EMPTY, box_figures
from wlm.web.figures import Window

GIB = 1024**3
NOW = dt.datetime(2026, 12, 5, 12, 0)
WINDOW = Window.around(NOW - dt.timedelta(hours=1), NOW, dt.timedelta(minutes=2))


def row(minutes_ago: int, host: str, kind: str, device: str, **values: Any) -> dict[str, Any]:
    bucket = WINDOW.end - dt.timedelta(minutes=2 + minutes_ago)
    return {
        "bucket": bucket,
        "host": host,
        "kind": kind,
        "device": device,
        "util_avg_percent": values.get("util"),
        "mem_used_avg_bytes": values.get("mem"),
        "slots_busy_max": values.get("slots"),
    }


def test_one_host_draws_a_line_per_device_memory_in_gib() -> None:
    rows = [
        row(4, "box1", "cpu", "cpu", util=20.0, mem=6 * GIB),
        row(2, "box1", "cpu", "cpu", util=40.0, mem=8 * GIB),
        row(2, "box1", "gpu", "gpu 0", util=90.0, mem=20 * GIB),
        row(2, "box1", "engine", "qwen", mem=GIB // 2, slots=3),
    ]
    use, memory, slots = box_figures(rows, WINDOW)
    assert 'data-series="cpu"' in use.svg and 'data-series="gpu 0"' in use.svg
    assert 'data-series="qwen"' not in use.svg  # an engine has no CPU figure of its own
    assert ("box1" not in str(use.svg)) and ("box1" not in str(memory.svg))
    assert [r[1:] for r in memory.numbers.rows] == [
        ("cpu", "6 GiB"),
        ("cpu", "8 GiB"),
        ("gpu 0", "20 GiB"),
        ("qwen", "0.5 GiB"),
    ]
    assert 'data-series="qwen"' in slots.svg and EMPTY not in slots.svg


def test_several_hosts_name_theirs_and_no_samples_say_so() -> None:
    rows = [row(2, "a", "cpu", "cpu", util=1.0), row(2, "b", "cpu", "cpu", util=2.0)]
    use = box_figures(rows, WINDOW)[0]
    assert 'data-series="a cpu"' in use.svg and 'data-series="b cpu"' in use.svg
    for figure in box_figures([], WINDOW):
        assert EMPTY in figure.svg
