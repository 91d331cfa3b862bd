"""``wlm sql`` and ``wlm telemetry export``: filled in with the telemetry store."""

from __future__ import annotations

import argparse

__all__ = ["add_telemetry_commands"]


def add_telemetry_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    return None
