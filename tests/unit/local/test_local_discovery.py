"""Discovery: ids, split sets, projectors, metadata and broken files, on real GGUF files."""

from __future__ import annotations

import os
from pathlib import Path

import gguf
import numpy as np
import pytest

from wlm.local.discovery import HeaderCache, scan_models
from wlm.local.ggufheader import GGUFError, read_gguf_header
from wlm.local.testmodel import write_tiny_gguf


def _write_projector(path: Path) -> Path:
    """A small GGUF with architecture ``clip``, the shape of a real mmproj file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(path, "clip")
    writer.add_tensor("v.patch_embd.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_gguf(tmp_path_factory.mktemp("src") / "tiny.gguf")


@pytest.fixture
def root(tmp_path: Path, tiny: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    (models / "tiny-a.gguf").write_bytes(tiny.read_bytes())
    (models / "sub" / "deeper").mkdir(parents=True)
    (models / "sub" / "deeper" / "tiny-b.gguf").write_bytes(tiny.read_bytes())
    (models / "notes.txt").write_text("not a model")
    return models


def test_ids_are_relative_paths_without_suffix(root: Path) -> None:
    (root / ".hidden").mkdir()
    (root / ".hidden" / "secret.gguf").write_bytes(b"GGUF")
    (root / ".partial.gguf").write_bytes(b"GGUF")

    models = scan_models(root)

    assert list(models) == ["sub/deeper/tiny-b", "tiny-a"]
    assert models["sub/deeper/tiny-b"].path == root / "sub" / "deeper" / "tiny-b.gguf"


def test_metadata_matches_the_file(root: Path, tiny: Path) -> None:
    model = scan_models(root)["tiny-a"]

    reader = gguf.GGUFReader(tiny)  # an independent parser as the reference
    assert model.usable
    assert model.architecture == "llama"
    assert model.context_length == 2048
    assert model.quantization == "F32"
    assert model.has_chat_template
    assert model.parameters == sum(int(t.n_elements) for t in reader.tensors)
    assert model.size_bytes == tiny.stat().st_size
    assert model.projector is None


def test_split_set_is_one_model_with_every_part(tmp_path: Path, tiny: Path) -> None:
    first = write_tiny_gguf(tmp_path / "big" / "big.gguf", max_tensors_per_file=8)

    models = scan_models(tmp_path)

    assert list(models) == ["big/big"]
    model = models["big/big"]
    assert model.usable
    assert model.path == first
    assert len(model.files) == 3
    assert model.size_bytes == sum(f.stat().st_size for f in model.files)
    assert model.parameters == read_gguf_header(tiny).parameter_count


def test_incomplete_split_set_is_broken(tmp_path: Path) -> None:
    write_tiny_gguf(tmp_path / "big.gguf", max_tensors_per_file=8)
    (tmp_path / "big-00003-of-00003.gguf").unlink()

    model = scan_models(tmp_path)["big"]

    assert model.broken_reason == "incomplete split set: missing part(s) 3 of 3"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (b"PK\x03\x04 a zip file", "not a GGUF file"),
        (b"GGUF\x09\x00\x00\x00", "unsupported GGUF version 9"),
        (b"GGUF\x03\x00\x00\x00\x01", "truncated header"),
    ],
)
def test_corrupt_file_is_listed_broken_and_scan_goes_on(
    root: Path, content: bytes, reason: str
) -> None:
    (root / "bad.gguf").write_bytes(content)

    models = scan_models(root)

    assert reason in (models["bad"].broken_reason or "")
    assert models["tiny-a"].usable
    assert models["sub/deeper/tiny-b"].usable


def test_truncated_download_is_broken(root: Path, tiny: Path) -> None:
    data = tiny.read_bytes()
    (root / "half.gguf").write_bytes(data[: len(data) // 2])

    reason = scan_models(root)["half"].broken_reason

    assert reason is not None
    assert reason.startswith("truncated file")


def test_vocabulary_only_file_is_not_a_model(tmp_path: Path) -> None:
    writer = gguf.GGUFWriter(tmp_path / "ggml-vocab-llama.gguf", "llama")
    writer.add_token_list(["a", "b"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()

    reason = scan_models(tmp_path)["ggml-vocab-llama"].broken_reason

    assert reason is not None
    assert "vocabulary-only" in reason


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_unreadable_file_is_broken(root: Path) -> None:
    locked = root / "locked.gguf"
    locked.write_bytes(b"GGUF")
    locked.chmod(0)

    assert "cannot read" in (scan_models(root)["locked"].broken_reason or "")


def test_projector_is_attached_not_listed(root: Path) -> None:
    projector = _write_projector(root / "sub" / "deeper" / "mmproj-tiny-b-f16.gguf")

    models = scan_models(root)

    assert list(models) == ["sub/deeper/tiny-b", "tiny-a"]
    assert models["sub/deeper/tiny-b"].projector == projector
    assert models["tiny-a"].projector is None


def test_clip_file_without_mmproj_in_its_name_is_a_projector(root: Path) -> None:
    projector = _write_projector(root / "vision-encoder.gguf")

    models = scan_models(root)

    assert "vision-encoder" not in models
    assert models["tiny-a"].projector == projector


def test_each_model_gets_the_projector_sharing_its_name(tmp_path: Path, tiny: Path) -> None:
    for name in ("gemma-3-4b-q4.gguf", "qwen2-vl-2b-q4.gguf"):
        (tmp_path / name).write_bytes(tiny.read_bytes())
    gemma = _write_projector(tmp_path / "gemma-3-4b-mmproj-f16.gguf")
    qwen = _write_projector(tmp_path / "qwen2-vl-2b-mmproj-f16.gguf")

    models = scan_models(tmp_path)

    assert models["gemma-3-4b-q4"].projector == gemma
    assert models["qwen2-vl-2b-q4"].projector == qwen


def test_missing_root_has_no_models(tmp_path: Path) -> None:
    assert scan_models(tmp_path / "nope") == {}


def test_rescan_sees_a_file_replaced_in_place(root: Path, tiny: Path) -> None:
    cache = HeaderCache()
    (root / "swap.gguf").write_bytes(b"junk")
    assert scan_models(root, cache)["swap"].broken_reason is not None

    (root / "swap.gguf").write_bytes(tiny.read_bytes())

    assert scan_models(root, cache)["swap"].usable


def test_header_reader_rejects_garbage_counts(tmp_path: Path) -> None:
    path = tmp_path / "huge.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)

    with pytest.raises(GGUFError, match="implausible tensor count"):
        read_gguf_header(path)
