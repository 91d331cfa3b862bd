"""Names on the Hub, as pure functions: pull references, quantizations, split sets.

- A pull reference is ``owner/repo``, ``owner/repo:Q4_K_M`` (a quantization, or a model's
  file name without ``.gguf``), or ``owner/repo/file.gguf`` (one file, a path in the repo).
- A GGUF file's quantization is the last ``-``/``_``/``.``-separated tag of its name that
  looks like one (``Q4_K_M``, ``IQ2_XXS``, ``Q8_0``, ``F16``, ``BF16``, ``UD-Q4_K_XL`` ...).
- Split files ``name-00001-of-00003.gguf`` ... are one model, as wlm lists them locally.
- Projectors (``mmproj`` in the name) are listed apart: they are not models.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from posixpath import basename

from attrs import frozen

__all__ = [
    "DEFAULT_QUANT",
    "REPO_ID",
    "HubFile",
    "ModelFiles",
    "PullRef",
    "RefError",
    "group_gguf_files",
    "parse_ref",
    "quant_of",
    "select_model",
    "split_base",
]

# What `wlm pull owner/repo` takes when the repo has several quantizations (llama.cpp's
# `-hf` default too): a good size/quality balance that most GGUF repos publish.
DEFAULT_QUANT = "Q4_K_M"

_SPLIT = re.compile(r"^(?P<base>.+)-(?P<part>\d{5})-of-(?P<total>\d{5})$")
_QUANT = re.compile(
    r"(?:^|[-_.])(?P<quant>(?:UD-)?(?:I?Q\d(?:_[A-Z0-9]+)*|TQ\d_\d|MXFP4(?:_MOE)?"
    r"|BF16|FP16|FP32|F16|F32))$",
    re.IGNORECASE,
)
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


class RefError(ValueError):
    """A pull reference that cannot be read, or names nothing in the repo; ``str`` says why."""

    def __init__(self, message: str, *, available: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.available = available


@frozen
class PullRef:
    """What to pull: a repo, and a quantization or a file in it (or neither)."""

    repo: str
    quant: str | None = None
    file: str | None = None

    def __str__(self) -> str:
        if self.file:
            return f"{self.repo}/{self.file}"
        return f"{self.repo}:{self.quant}" if self.quant else self.repo


@frozen
class HubFile:
    """A file in a Hub repo, with the size and LFS sha256 the Hub reports (None if unknown)."""

    path: str
    size: int | None = None
    sha256: str | None = None

    @property
    def name(self) -> str:
        return basename(self.path)


@frozen
class ModelFiles:
    """One model of a repo: a GGUF file, or every part of a split set (in part order)."""

    name: str  # the file name without .gguf and without the -0000k-of-0000n suffix
    quant: str | None
    files: tuple[HubFile, ...]
    parts: int = 1  # how many parts the set declares

    @property
    def size(self) -> int | None:
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)

    @property
    def complete(self) -> bool:
        return len(self.files) == self.parts

    @property
    def label(self) -> str:
        """What to put after ``repo:`` to pull this model."""
        return self.quant or self.name


def parse_ref(text: str) -> PullRef:
    """``owner/repo[:quant]`` or ``owner/repo/path/file.gguf`` (a hub URL prefix is dropped)."""
    ref = text.strip()
    for prefix in ("https://huggingface.co/", "http://huggingface.co/", "hf.co/", "hf://"):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
    ref = ref.strip("/")
    repo, colon, quant = ref.partition(":")
    owner, _, rest = repo.partition("/")
    name, slash, file = rest.partition("/")
    repo = f"{owner}/{name}"
    if not REPO_ID.match(repo) or ".." in repo or "--" in repo:
        raise RefError(
            f"{text!r} is not a Hub model: expected owner/repo, owner/repo:QUANT "
            "or owner/repo/file.gguf"
        )
    if slash:
        if colon:
            raise RefError(f"{text!r}: name a quantization (repo:QUANT) or a file, not both")
        if not file.lower().endswith(".gguf") or ".." in file.split("/"):
            raise RefError(f"{text!r}: a file to pull must be a .gguf file in the repo")
        return PullRef(repo, file=file)
    if colon and not quant.strip():
        raise RefError(f"{text!r}: nothing after ':' (expected a quantization such as Q4_K_M)")
    return PullRef(repo, quant=quant.strip() or None)


def split_base(stem: str) -> tuple[str, int, int] | None:
    """``name-00002-of-00003`` -> ``("name", 2, 3)``; None for a file that is not a part."""
    match = _SPLIT.match(stem)
    if match is None:
        return None
    return match["base"], int(match["part"]), int(match["total"])


def quant_of(name: str) -> str | None:
    """The quantization tag at the end of a GGUF file's name (without .gguf), uppercased."""
    stem = name[: -len(".gguf")] if name.lower().endswith(".gguf") else name
    split = split_base(stem)
    if split is not None:
        stem = split[0]
    match = _QUANT.search(stem)
    return match["quant"].upper() if match else None


def _is_projector(name: str) -> bool:
    return "mmproj" in name.lower()


def group_gguf_files(files: Iterable[HubFile]) -> tuple[list[ModelFiles], list[HubFile]]:
    """A repo's GGUF files as models (split sets joined), and its projectors, by name."""
    singles: list[ModelFiles] = []
    sets: dict[tuple[str, str, int], dict[int, HubFile]] = {}
    projectors: list[HubFile] = []
    for file in files:
        if not file.name.lower().endswith(".gguf"):
            continue
        if _is_projector(file.name):
            projectors.append(file)
            continue
        stem = file.name[: -len(".gguf")]
        split = split_base(stem)
        if split is None:
            singles.append(ModelFiles(stem, quant_of(stem), (file,)))
            continue
        base, part, total = split
        folder = file.path[: -len(file.name)]
        sets.setdefault((folder, base, total), {})[part] = file
    models = singles + [
        ModelFiles(base, quant_of(base), tuple(parts[i] for i in sorted(parts)), total)
        for (_, base, total), parts in sets.items()
    ]
    models.sort(key=lambda m: (m.size is None, m.size or 0, m.name))
    projectors.sort(key=lambda f: f.path)
    return models, projectors


def select_model(models: list[ModelFiles], ref: PullRef) -> ModelFiles:
    """The model ``ref`` names among a repo's ``models``; :class:`RefError` lists the choices."""
    labels = tuple(dict.fromkeys(m.label for m in models))
    if not models:
        raise RefError(f"{ref.repo} has no GGUF model files")
    if ref.file is not None:
        found = [m for m in models if any(f.path == ref.file for f in m.files)]
        if not found:
            raise RefError(f"{ref.repo} has no file {ref.file}", available=labels)
        return found[0]
    if ref.quant is None:
        if len(models) == 1:
            return models[0]
        wanted = DEFAULT_QUANT
    else:
        wanted = ref.quant
    found = [m for m in models if (m.quant or "").upper() == wanted.upper()]
    found = found or [m for m in models if m.name.lower() == wanted.lower()]
    if len(found) > 1:
        names = ", ".join(f.path for m in found for f in m.files[:1])
        raise RefError(
            f"{ref.repo} has {len(found)} models quantized {wanted} ({names}): "
            f"pull one by its file, {ref.repo}/<file>.gguf",
            available=labels,
        )
    if not found:
        what = f"no {wanted} quantization" if ref.quant else f"several models and no {wanted}"
        raise RefError(
            f"{ref.repo} has {what}; it has: {', '.join(labels)}",
            available=labels,
        )
    return found[0]
