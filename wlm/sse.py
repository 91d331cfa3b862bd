"""Incremental Server-Sent Events parsing and writing.

:class:`SSEParser` takes bytes as they arrive (any split, CR, LF or CRLF line ends,
comments, multi-line ``data:``) and returns whole events. Each :class:`SSEEvent`
keeps its raw block so a proxy can forward exactly one event per write without
re-encoding it; fields are parsed only when asked for.
"""

from __future__ import annotations

__all__ = ["SSEEvent", "SSEParser", "encode_comment", "encode_event", "plain_data"]

_BOM = b"\xef\xbb\xbf"


class _Fields:
    """An event's parsed fields."""

    __slots__ = ("comments", "data", "event", "id", "retry")

    def __init__(self) -> None:
        self.event: str | None = None
        self.data: str | None = None
        self.id: str | None = None
        self.retry: int | None = None
        self.comments: list[str] = []


def plain_data(raw: bytes) -> bytes | None:
    """The payload of an event block of one ``data:`` line, after at most an ``event:``
    line (how OpenAI, Anthropic and llama.cpp frame every event); None for any other
    shape, which :class:`SSEEvent` parses line by line."""
    start = 0
    if raw.startswith(b"event:"):
        start = raw.find(b"\n") + 1
        if start == 0:
            return None
    if raw.startswith(b"data:", start) and raw.find(b"\n", start) == len(raw) - 2:
        return raw[start + 6 : -2] if raw[start + 5] == 0x20 else raw[start + 5 : -2]
    return None


class SSEEvent:
    """One event block. ``raw`` ends with the blank line; fields parse lazily."""

    __slots__ = ("_fields", "raw")

    def __init__(self, raw: bytes) -> None:
        self.raw = raw
        self._fields: _Fields | None = None  # parsed on first use: most events never are

    def _parse(self) -> _Fields:
        fields = _Fields()
        data_lines: list[str] | None = None
        for line in self.raw.split(b"\n"):
            if not line:
                continue
            if line[0] == 0x3A:  # ":" starts a comment
                fields.comments.append(line[1:].lstrip(b" ").decode("utf-8", "replace"))
                continue
            name, colon, value = line.partition(b":")
            if colon and value[:1] == b" ":
                value = value[1:]
            text = value.decode("utf-8", "replace")
            if name == b"data":
                if data_lines is None:
                    data_lines = []
                data_lines.append(text)
            elif name == b"event":
                fields.event = text
            elif name == b"id":
                if "\x00" not in text:
                    fields.id = text
            elif name == b"retry" and text.isdigit():
                fields.retry = int(text)
        if data_lines is not None:
            fields.data = "\n".join(data_lines)
        self._fields = fields
        return fields

    def data_bytes(self) -> bytes | None:
        """The data of the event as bytes (None for a block of comments only); a plain
        ``data: <payload>`` event, the common case, needs no line parsing."""
        payload = plain_data(self.raw)
        if payload is not None:
            return payload
        data = self.data
        return None if data is None else data.encode()

    @property
    def event(self) -> str | None:
        """The ``event:`` name, or None (the SSE default, "message")."""
        return (self._fields or self._parse()).event

    @property
    def data(self) -> str | None:
        """The joined ``data:`` lines, or None for a block of comments only."""
        return (self._fields or self._parse()).data

    @property
    def id(self) -> str | None:
        return (self._fields or self._parse()).id

    @property
    def retry(self) -> int | None:
        return (self._fields or self._parse()).retry

    @property
    def comments(self) -> list[str]:
        return (self._fields or self._parse()).comments

    def __repr__(self) -> str:
        return f"SSEEvent(event={self.event!r}, data={self.data!r})"


class SSEParser:
    """Feed bytes in, get complete events out; ``pending`` holds an unfinished block."""

    __slots__ = ("_buffer", "_started")

    def __init__(self) -> None:
        self._buffer = b""
        self._started = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Return every event completed by ``chunk``, in order."""
        return [SSEEvent(block) for block in self.blocks(chunk)]

    def blocks(self, chunk: bytes) -> list[bytes]:
        """Like :meth:`feed`, as raw event blocks (each ending with its blank line)."""
        buffer = self._buffer + chunk if self._buffer else chunk
        if not self._started and buffer:
            if len(buffer) < len(_BOM) and _BOM.startswith(buffer):
                self._buffer = buffer
                return []
            if buffer.startswith(_BOM):
                buffer = buffer[len(_BOM) :]
            self._started = True
        held = b""
        if b"\r" in buffer:
            # A CR at the very end may be the first half of a CRLF split across reads.
            if buffer.endswith(b"\r"):
                buffer, held = buffer[:-1], b"\r"
            buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        find = buffer.find
        end = find(b"\n\n")
        if end < 0:
            self._buffer = buffer + held
            return []
        if end == len(buffer) - 2 and buffer[0] != 0x0A and not held:
            # The common case on the hot path: one whole event, nothing after it.
            self._buffer = b""
            return [buffer]
        events: list[bytes] = []
        start = 0
        while True:
            end = find(b"\n\n", start)
            if end < 0:
                break
            while start < end and buffer[start] == 0x0A:  # stray blank lines
                start += 1
            if end > start:
                events.append(buffer[start : end + 2])
            start = end + 2
        self._buffer = buffer[start:] + held
        return events

    @property
    def pending(self) -> bytes:
        """Bytes of an event that has not been terminated by a blank line yet."""
        return self._buffer.rstrip(b"\r")

    def finish(self) -> list[SSEEvent]:
        """End of input. Per the SSE spec an unterminated event is discarded; it is
        returned here only if it is complete up to its last line (ends with a newline)."""
        return [SSEEvent(block) for block in self.finish_blocks()]

    def finish_blocks(self) -> list[bytes]:
        """Like :meth:`finish`, as raw event blocks."""
        rest, self._buffer = self._buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n"), b""
        if rest.strip(b"\n") and rest.endswith(b"\n"):
            return [rest.strip(b"\n") + b"\n\n"]
        return []


def encode_event(data: bytes | str, event: str | None = None) -> bytes:
    """One SSE event; multi-line data becomes several ``data:`` lines."""
    if isinstance(data, str):
        data = data.encode()
    lines = data.replace(b"\r\n", b"\n").split(b"\n")
    head = f"event: {event}\n".encode() if event else b""
    return head + b"".join(b"data: " + line + b"\n" for line in lines) + b"\n"


def encode_comment(text: str) -> bytes:
    """A comment line, which clients ignore; used as a keep-alive."""
    return b"".join(b": " + line.encode() + b"\n" for line in text.split("\n")) + b"\n"
