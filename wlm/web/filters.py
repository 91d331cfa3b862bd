"""Jinja filters: numbers, sizes, durations and times as a person reads them.

Each takes ``None`` (an unknown figure) and shows an en dash, never a made-up 0.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

__all__ = ["FILTERS"]

_DASH = "–"


def number(value: Any, digits: int = 0) -> str:
    """``12345`` -> ``12,345``; ``digits`` decimals for floats."""
    if value is None:
        return _DASH
    if isinstance(value, float) and digits == 0 and value != int(value):
        digits = 1 if abs(value) < 100 else 0
    return f"{value:,.{digits}f}"


def percent(value: Any) -> str:
    """A 0..1 ratio as a percentage."""
    if value is None:
        return _DASH
    return f"{value * 100:.1f}%"


def ms(value: Any) -> str:
    """Milliseconds: ``850 ms``, ``1.24 s``, ``2 min 5 s``."""
    if value is None:
        return _DASH
    value = float(value)
    if value < 1000:
        return f"{value:.0f} ms"
    if value < 60_000:
        return f"{value / 1000:.2f} s"
    minutes, seconds = divmod(value / 1000, 60)
    return f"{minutes:.0f} min {seconds:.0f} s"


def seconds(value: Any) -> str:
    """An uptime: ``42 s``, ``5 min``, ``3 h 12 min``, ``2 d 4 h``."""
    if value is None:
        return _DASH
    value = int(value)
    if value < 60:
        return f"{value} s"
    if value < 3600:
        return f"{value // 60} min {value % 60} s"
    if value < 86400:
        return f"{value // 3600} h {value % 3600 // 60} min"
    return f"{value // 86400} d {value % 86400 // 3600} h"


def size(value: Any) -> str:
    """Bytes in binary units: ``512 B``, ``3.4 MiB``, ``7.1 GiB``."""
    if value is None:
        return _DASH
    value = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - the loop returns at GiB


def params(value: Any) -> str:
    """A parameter count: ``124M``, ``7.2B``."""
    if value is None:
        return _DASH
    value = float(value)
    for threshold, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if value >= threshold:
            return f"{value / threshold:.1f}{suffix}".replace(".0", "")
    return f"{value:.0f}"


def _as_utc(value: Any) -> dt.datetime | None:
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return None
    if not isinstance(value, dt.datetime):
        return None
    # Telemetry timestamps are naive UTC.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def when(value: Any) -> str:
    """A timestamp as ``2025-01-31 14:05:09 UTC``."""
    moment = _as_utc(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC") if moment else _DASH


def clock(value: Any) -> str:
    """A timestamp's time of day, ``14:05:09``."""
    moment = _as_utc(value)
    return moment.strftime("%H:%M:%S") if moment else _DASH


def show(value: Any) -> str:
    """A setting or field as its ``.env`` spelling: ``true``/``false``, a dash for None."""
    if value is None:
        return _DASH
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value) or _DASH
    return str(value)


def pretty_json(value: Any) -> str:
    """JSON text (or a value) indented for reading; text that is not JSON is left as is."""
    if value is None:
        return ""
    if isinstance(value, str):
        text = value
        try:
            value = json.loads(text)
        except ValueError:
            return text
    return json.dumps(value, indent=2, ensure_ascii=False)


FILTERS: dict[str, Callable[..., str]] = {
    "number": number,
    "percent": percent,
    "ms": ms,
    "seconds": seconds,
    "size": size,
    "params": params,
    "when": when,
    "clock": clock,
    "pretty_json": pretty_json,
    "show": show,
}
