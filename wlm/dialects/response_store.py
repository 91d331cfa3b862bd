"""Responses wlm answered by translation, kept for ``previous_response_id`` and
``GET /v1/responses/{id}``: in memory, bounded, one per gateway."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from attrs import frozen

__all__ = ["ResponseStore", "StoredResponse"]


@frozen
class StoredResponse:
    """A response object and the input items that led to it (history included)."""

    response: dict[str, Any]
    inputs: tuple[dict[str, Any], ...]

    def history(self) -> list[dict[str, Any]]:
        """The conversation up to and including this response, as Responses input items."""
        return [*self.inputs, *self.response.get("output", ())]


class ResponseStore:
    """The last ``capacity`` stored responses; off when content logging is off."""

    def __init__(self, *, enabled: bool, capacity: int = 2000) -> None:
        self.enabled = enabled
        self._capacity = capacity
        self._items: OrderedDict[str, StoredResponse] = OrderedDict()

    def put(self, response: dict[str, Any], inputs: list[dict[str, Any]]) -> None:
        response_id = response.get("id")
        if not self.enabled or not isinstance(response_id, str):
            return
        self._items[response_id] = StoredResponse(response, tuple(inputs))
        self._items.move_to_end(response_id)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def get(self, response_id: str) -> StoredResponse | None:
        return self._items.get(response_id)
