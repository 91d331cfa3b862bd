"""The box's resources over time on ``/analytics``: rows of ``box_timeseries`` in,
figures out (CPU and GPU use, memory in use, the local engines' busy slots).

Like :mod:`wlm.web.figures`, nothing here reads the telemetry: the page runs the
query and hands the rows over.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from wlm.web.charts import Series, time_lines
from wlm.web.figures import Figure, Numbers, Window, bucket_line, series_classes
from wlm.web.scales import format_value

__all__ = ["box_figures"]

EMPTY = "No samples in this window (WLM_STATS_EVERY_S)"
GIB = 1024**3  # memory is drawn in GiB, as the pages write sizes


def _series(row: Mapping[str, Any], hosts: int) -> str:
    """A device's line: ``cpu``, ``gpu 0``, a model id; with its host when several
    replicas write to one database."""
    device = str(row["device"])
    return f"{row['host']} {device}" if hosts > 1 else device


def _lines(
    rows: Sequence[Mapping[str, Any]],
    name_of: Callable[[Mapping[str, Any]], str],
    column: str,
    bucket: dt.timedelta,
    scale: float,
) -> dict[str, list[tuple[dt.datetime, float | None]]]:
    """A line per device of ``column`` (divided by ``scale``), a point mid-bucket; a
    missing bucket breaks it."""
    found: dict[str, list[tuple[dt.datetime, float]]] = defaultdict(list)
    for row in rows:
        if row.get(column) is not None:
            found[name_of(row)].append((row["bucket"], float(row[column]) / scale))
    return {name: bucket_line(points, bucket) for name, points in sorted(found.items())}


def _figure(
    figure_id: str,
    title: str,
    rows: Sequence[Mapping[str, Any]],
    kinds: tuple[str, ...],
    column: str,
    unit: str,
    window: Window,
    hosts: int,
    note: str,
) -> Figure:
    chosen = [r for r in rows if r["kind"] in kinds]
    scale = GIB if unit == "GiB" else 1.0
    lines = _lines(chosen, lambda r: _series(r, hosts), column, window.bucket, scale)
    classes = series_classes(list(lines))
    svg = time_lines(
        figure_id,
        [Series(name, classes[name], points) for name, points in lines.items()],
        window.start,
        window.end,
        unit=unit,
        now=window.now,
        empty=EMPTY,
        whole=unit == "",
    )
    table = tuple(
        (
            f"{r['bucket']:%Y-%m-%d %H:%M}",
            _series(r, hosts),
            "–" if r[column] is None else format_value(float(r[column]) / scale, unit),
        )
        for r in chosen
    )
    return Figure(
        id=figure_id,
        title=title,
        svg=svg,
        numbers=Numbers(("bucket (UTC)", "device", title.lower()), table),
        query="box_timeseries",
        legend=tuple((classes[n], n) for n in lines),
        note=note,
    )


def box_figures(rows: Sequence[Mapping[str, Any]], window: Window) -> list[Figure]:
    """CPU and GPU use, memory in use (RAM, each GPU's, each engine's RSS) and the
    engines' busiest slots, per bucket."""
    hosts = len({r["host"] for r in rows})
    return [
        _figure(
            "box-use",
            "CPU and GPU use",
            rows,
            ("cpu", "gpu"),
            "util_avg_percent",
            "%",
            window,
            hosts,
            "average per bucket; cpu is all cores together",
        ),
        _figure(
            "box-memory",
            "Memory in use",
            rows,
            ("cpu", "gpu", "engine"),
            "mem_used_avg_bytes",
            "GiB",
            window,
            hosts,
            "cpu: the box's RAM; gpu: its memory; a model: its engine's resident memory",
        ),
        _figure(
            "box-slots",
            "Local engines, slots busy",
            rows,
            ("engine",),
            "slots_busy_max",
            "",
            window,
            hosts,
            "the most requests on an engine's slots at a sample",
        ),
    ]
