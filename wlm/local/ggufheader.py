"""Read a GGUF file's header (metadata and tensor table) without touching tensor data.

``gguf.GGUFReader`` builds numpy views of every field and tensor; this reader walks
the header of a memory-mapped file with ``struct`` and keeps only what discovery
shows, so a multi-GB model costs one page-in of its header (a large vocabulary is
skipped, not decoded). Any inconsistency raises :class:`GGUFError` with a reason a
user can act on.

Layout (GGUF v2/v3, little-endian): magic ``GGUF``, version u32, tensor count u64,
metadata count u64, the metadata (key string, type u32, value), then per tensor its
name, dimension count u32, dimensions u64..., type u32 and data offset u64; tensor
data starts at the next multiple of ``general.alignment`` (default 32).
"""

from __future__ import annotations

import math
import mmap
import struct
from pathlib import Path
from typing import Any

import gguf
from attrs import frozen

__all__ = ["GGUFError", "GGUFHeader", "read_gguf_header"]

_MAGIC = b"GGUF"
# value type -> (struct format, size); 8 = string, 9 = array
_SCALARS: dict[int, tuple[str, int]] = {
    0: ("<B", 1),
    1: ("<b", 1),
    2: ("<H", 2),
    3: ("<h", 2),
    4: ("<I", 4),
    5: ("<i", 4),
    6: ("<f", 4),
    7: ("<?", 1),
    10: ("<Q", 8),
    11: ("<q", 8),
    12: ("<d", 8),
}
_STRING, _ARRAY = 8, 9
# Sanity limits: far beyond any real model, small enough to reject garbage quickly.
_MAX_COUNT = 1 << 24
_MAX_STRING = 1 << 28
_MAX_DIMS = 4


class GGUFError(Exception):
    """The file is not a readable GGUF model; ``str(err)`` says why."""


@frozen
class GGUFHeader:
    """What discovery needs from one GGUF file."""

    version: int
    metadata: dict[str, Any]  # scalars and strings only; arrays are in array_lengths
    array_lengths: dict[str, int]
    tensor_count: int
    parameter_count: int
    tensor_types: dict[str, int]  # GGML type name -> bytes of tensor data of that type
    data_bytes: int  # the end of the last tensor, counted from the start of the file

    @property
    def architecture(self) -> str | None:
        value = self.metadata.get("general.architecture")
        return value if isinstance(value, str) else None

    def arch_value(self, key: str) -> Any:
        """``{architecture}.{key}``, e.g. ``arch_value("context_length")``."""
        return self.metadata.get(f"{self.architecture}.{key}")


class _Cursor:
    """Reads little-endian values from a buffer, raising GGUFError on truncation."""

    def __init__(self, buffer: mmap.mmap | bytes) -> None:
        self.buffer = buffer
        self.pos = 0

    def unpack(self, fmt: str, size: int) -> Any:
        if self.pos + size > len(self.buffer):
            raise GGUFError("truncated header (the file ends inside the metadata)")
        (value,) = struct.unpack_from(fmt, self.buffer, self.pos)
        self.pos += size
        return value

    def count(self, what: str) -> int:
        value = int(self.unpack("<Q", 8))
        if value > _MAX_COUNT:
            raise GGUFError(f"corrupt header: implausible {what} ({value})")
        return value

    def string(self) -> str:
        length = self.unpack("<Q", 8)
        if length > _MAX_STRING or self.pos + length > len(self.buffer):
            raise GGUFError("truncated or corrupt header (a string runs past the end)")
        raw = self.buffer[self.pos : self.pos + length]
        self.pos += length
        return bytes(raw).decode("utf-8", errors="replace")

    def skip_string(self) -> None:
        length = self.unpack("<Q", 8)
        if length > _MAX_STRING:
            raise GGUFError("corrupt header (a string is implausibly long)")
        self.pos += length

    def value(self, value_type: int) -> Any:
        if value_type in _SCALARS:
            return self.unpack(*_SCALARS[value_type])
        if value_type == _STRING:
            return self.string()
        raise GGUFError(f"corrupt header: unknown metadata value type {value_type}")

    def skip_array(self) -> int:
        item_type = self.unpack("<I", 4)
        length = self.count("array length")
        if item_type in _SCALARS:
            self.pos += length * _SCALARS[item_type][1]
        elif item_type == _STRING:
            for _ in range(length):
                self.skip_string()
        elif item_type == _ARRAY:
            for _ in range(length):
                self.skip_array()
        else:
            raise GGUFError(f"corrupt header: unknown array item type {item_type}")
        if self.pos > len(self.buffer):
            raise GGUFError("truncated header (an array runs past the end)")
        return length


def _tensor_bytes(dims: list[int], type_id: int) -> tuple[str, int | None]:
    try:
        qtype = gguf.GGMLQuantizationType(type_id)
    except ValueError:
        return f"type{type_id}", None
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    return qtype.name, math.prod(dims) // block * size


def _parse(buffer: mmap.mmap | bytes, file_size: int) -> GGUFHeader:
    cursor = _Cursor(buffer)
    if len(buffer) < 4 or buffer[:4] != _MAGIC:
        raise GGUFError(f"not a GGUF file (starts with {bytes(buffer[:4])!r}, expected b'GGUF')")
    cursor.pos = 4
    version = cursor.unpack("<I", 4)
    if version not in (2, 3):
        raise GGUFError(f"unsupported GGUF version {version}")
    tensor_count = cursor.count("tensor count")
    kv_count = cursor.count("metadata count")
    metadata: dict[str, Any] = {}
    arrays: dict[str, int] = {}
    for _ in range(kv_count):
        key = cursor.string()
        value_type = cursor.unpack("<I", 4)
        if value_type == _ARRAY:
            arrays[key] = cursor.skip_array()
        else:
            metadata[key] = cursor.value(value_type)
    parameters = 0
    types: dict[str, int] = {}
    data_end = 0
    for _ in range(tensor_count):
        cursor.skip_string()
        n_dims = cursor.unpack("<I", 4)
        if n_dims > _MAX_DIMS:
            raise GGUFError(f"corrupt tensor table: {n_dims} dimensions")
        dims = [cursor.unpack("<Q", 8) for _ in range(n_dims)]
        type_id = cursor.unpack("<I", 4)
        offset = cursor.unpack("<Q", 8)
        parameters += math.prod(dims)
        name, nbytes = _tensor_bytes(dims, type_id)
        if nbytes is not None:
            types[name] = types.get(name, 0) + nbytes
            data_end = max(data_end, offset + nbytes)
    alignment = metadata.get("general.alignment", 32)
    if not isinstance(alignment, int) or alignment < 1:
        alignment = 32
    data_start = -(-cursor.pos // alignment) * alignment
    total = data_start + data_end if tensor_count else cursor.pos
    if tensor_count and total > file_size:
        raise GGUFError(
            f"truncated file: the tensors need {total} bytes but the file has {file_size}"
            " (an incomplete download?)"
        )
    return GGUFHeader(
        version=version,
        metadata=metadata,
        array_lengths=arrays,
        tensor_count=tensor_count,
        parameter_count=parameters,
        tensor_types=types,
        data_bytes=total,
    )


def read_gguf_header(path: Path) -> GGUFHeader:
    """Parse the header of the GGUF file at ``path``. Raises :class:`GGUFError`.

    The file is memory-mapped read-only, so only the header's pages are read.
    """
    try:
        with path.open("rb") as handle:
            size = path.stat().st_size
            if size == 0:
                raise GGUFError("empty file")
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buffer:
                return _parse(buffer, size)
    except OSError as exc:
        raise GGUFError(f"cannot read: {exc.strerror or exc}") from None
