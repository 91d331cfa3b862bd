"""Find the GGUF models under the models directory.

- A model's id is its path relative to the models directory, without ``.gguf``
  (``sub/qwen2.5-7b-q4_k_m.gguf`` -> ``sub/qwen2.5-7b-q4_k_m``).
- Split files ``name-00001-of-00003.gguf`` ... form one model ``name``; a set with a
  part missing is listed as broken.
- Multimodal projectors (``*mmproj*.gguf``, or architecture ``clip``) are not models:
  each is attached to the models in its directory (by longest shared name prefix when
  a directory holds several).
- A file that cannot be read as GGUF is listed with ``broken_reason``; it never stops
  the scan. Headers are cached by (path, size, mtime), so a rescan only stats files.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import attrs
import gguf
from attrs import frozen

from wlm.local.ggufheader import GGUFError, GGUFHeader, read_gguf_header

__all__ = ["DiscoveredModel", "HeaderCache", "log_scan_problems", "scan_models"]

log = logging.getLogger("wlm.local")

_SPLIT = re.compile(r"^(?P<base>.+)-(?P<part>\d{5})-of-(?P<total>\d{5})$")


@frozen
class DiscoveredModel:
    """One model found on disk; ``path`` is the file to load (the first part of a split set)."""

    id: str
    path: Path
    files: tuple[Path, ...]
    size_bytes: int
    architecture: str | None = None
    parameters: int | None = None
    context_length: int | None = None
    quantization: str | None = None
    has_chat_template: bool = False
    projector: Path | None = None
    broken_reason: str | None = None

    @property
    def usable(self) -> bool:
        return self.broken_reason is None


_FileKey = tuple[str, int, int]


class HeaderCache:
    """Parsed headers (or the reason parsing failed) keyed by path, size and mtime."""

    def __init__(self) -> None:
        self._entries: dict[_FileKey, GGUFHeader | str] = {}

    def get(self, path: Path, stat: os.stat_result) -> GGUFHeader | str:
        """The header of ``path``, or a string saying why it could not be read."""
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        entry = self._entries.get(key)
        if entry is None:
            try:
                entry = read_gguf_header(path)
            except GGUFError as exc:
                entry = str(exc)
            self._entries[key] = entry
        return entry

    def keep_only(self, paths: set[str]) -> None:
        """Forget files that are gone, so the cache does not grow without bound."""
        self._entries = {k: v for k, v in self._entries.items() if k[0] in paths}


def _walk(root: Path) -> Iterator[tuple[Path, os.stat_result]]:
    """Every ``*.gguf`` file under ``root`` with its stat; hidden entries and symlink loops skipped."""
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        try:
            info = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (info.st_dev, info.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((info.st_dev, info.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or not name.lower().endswith(".gguf"):
                continue
            path = Path(dirpath) / name
            try:
                stat = path.stat()
            except OSError:
                continue  # a dangling symlink or a file deleted mid-scan
            yield path, stat


def _quantization(header: GGUFHeader) -> str | None:
    file_type = header.metadata.get("general.file_type")
    if isinstance(file_type, int):
        try:
            name = gguf.LlamaFileType(file_type).name
        except ValueError:
            name = None
        if name and name != "GUESSED":
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
    if header.tensor_types:  # the type holding most of the weights
        return max(header.tensor_types.items(), key=lambda item: item[1])[0]
    return None


def _is_projector(path: Path, header: GGUFHeader | str) -> bool:
    if "mmproj" in path.name.lower():
        return True
    return isinstance(header, GGUFHeader) and header.architecture == "clip"


def _model_id(root: Path, path: Path, stem: str) -> str:
    relative = path.parent.relative_to(root) / stem
    return relative.as_posix()


def _describe(
    model_id: str,
    files: list[Path],
    sizes: int,
    header: GGUFHeader | str | None,
    broken: str | None,
) -> DiscoveredModel:
    if isinstance(header, str):
        broken = broken or header
        header = None
    if header is not None and broken is None and header.tensor_count == 0:
        broken = "no tensors (a vocabulary-only file, not a model)"
    fields: dict[str, object] = {}
    if header is not None:
        context = header.arch_value("context_length")
        fields = {
            "architecture": header.architecture,
            "parameters": header.parameter_count or None,
            "context_length": context if isinstance(context, int) else None,
            "quantization": _quantization(header),
            "has_chat_template": isinstance(header.metadata.get("tokenizer.chat_template"), str),
        }
    return DiscoveredModel(
        id=model_id,
        path=files[0],
        files=tuple(files),
        size_bytes=sizes,
        broken_reason=broken,
        **fields,  # type: ignore[arg-type]
    )


def _pick_projector(model: Path, projectors: list[Path]) -> Path | None:
    if len(projectors) <= 1:
        return projectors[0] if projectors else None

    def shared(projector: Path) -> int:  # characters the two file names start with
        pairs = zip(model.name.lower(), projector.name.lower(), strict=False)
        same = min(len(model.name), len(projector.name))
        return next((i for i, (a, b) in enumerate(pairs) if a != b), same)

    return max(sorted(projectors), key=shared)


def scan_models(root: Path, cache: HeaderCache | None = None) -> dict[str, DiscoveredModel]:
    """Scan ``root`` recursively and return the models found, by id (sorted).

    A missing ``root`` gives no models. Never raises for a bad file: it is listed with
    ``broken_reason`` instead.
    """
    cache = cache if cache is not None else HeaderCache()
    if not root.is_dir():
        return {}
    singles: list[tuple[Path, os.stat_result, GGUFHeader | str]] = []
    splits: dict[tuple[Path, str, int], dict[int, tuple[Path, os.stat_result]]] = {}
    projectors: dict[Path, list[Path]] = {}
    seen: set[str] = set()
    for path, stat in _walk(root):
        seen.add(str(path))
        stem = path.name[: -len(".gguf")]
        match = _SPLIT.match(stem)
        if match:
            key = (path.parent, match["base"], int(match["total"]))
            splits.setdefault(key, {})[int(match["part"])] = (path, stat)
            continue
        header = cache.get(path, stat)
        if _is_projector(path, header):
            projectors.setdefault(path.parent, []).append(path)
            continue
        singles.append((path, stat, header))

    models: dict[str, DiscoveredModel] = {}
    for path, stat, header in singles:
        model_id = _model_id(root, path, path.name[: -len(".gguf")])
        models[model_id] = _describe(model_id, [path], stat.st_size, header, None)
    for (directory, base, total), parts in splits.items():
        model_id = _model_id(root, directory / base, base)
        files = [parts[i][0] for i in sorted(parts)]
        size = sum(parts[i][1].st_size for i in parts)
        missing = [i for i in range(1, total + 1) if i not in parts]
        broken = None
        if missing:
            shown = ", ".join(str(i) for i in missing[:8]) + (" ..." if len(missing) > 8 else "")
            broken = f"incomplete split set: missing part(s) {shown} of {total}"
        first: GGUFHeader | str | None = None
        if 1 in parts:
            first = cache.get(*parts[1])
            # Every part must parse and hold all of its tensor data.
            for i in sorted(parts)[1:]:
                part_header = cache.get(*parts[i])
                if isinstance(part_header, str) and broken is None:
                    broken = f"part {i} of {total}: {part_header}"
                elif isinstance(part_header, GGUFHeader) and isinstance(first, GGUFHeader):
                    first = _merge_split(first, part_header)
        models[model_id] = _describe(model_id, files, size, first, broken)
    for model_id, model in list(models.items()):
        projector = _pick_projector(model.path, projectors.get(model.path.parent, []))
        if projector is not None:
            models[model_id] = _with_projector(model, projector)
    cache.keep_only(seen)
    return dict(sorted(models.items()))


def _merge_split(first: GGUFHeader, part: GGUFHeader) -> GGUFHeader:
    """The first part's metadata with the parameter count of every part."""
    types = dict(first.tensor_types)
    for name, size in part.tensor_types.items():
        types[name] = types.get(name, 0) + size
    return GGUFHeader(
        version=first.version,
        metadata=first.metadata,
        array_lengths=first.array_lengths,
        tensor_count=first.tensor_count + part.tensor_count,
        parameter_count=first.parameter_count + part.parameter_count,
        tensor_types=types,
        data_bytes=first.data_bytes,
    )


def _with_projector(model: DiscoveredModel, projector: Path) -> DiscoveredModel:
    return attrs.evolve(model, projector=projector)


def log_scan_problems(
    models: dict[str, DiscoveredModel], previous: dict[str, DiscoveredModel]
) -> None:
    """Log each newly broken model once, so a bad file is visible without spamming."""
    for model_id, model in models.items():
        before = previous.get(model_id)
        if model.broken_reason and (before is None or before.broken_reason != model.broken_reason):
            log.warning("local model %s is unusable: %s", model_id, model.broken_reason)
