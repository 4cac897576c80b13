"""Nothing lost on power loss: library.json, models.json and settings.json are written by
fsync and rename; a damaged library.json is rebuilt from the LanceDB tables (never a traceback,
never a library that will not open); switching the embedder marks the documents queued before
the old passages are dropped. Real LanceDB, the real embedder, real files."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from app.cli import main
from app.core.index.ingest import IngestOptions, IngestSummary, ingest
from app.core.index.library import QUEUED, READY, Library
from app.core.index.search import hybrid_search
from app.core.models.manager import ModelManager
from app.core.service import Folio
from app.core.settings import AppSettings

HARBOUR = ("# Harbour\n\nThe harbour crane lifts containers onto ships at dawn. The pilot boat "
           "guides tankers past the breakwater when the tide is high.\n")
GARDEN = ("# Garden\n\nWater the tomato plants deeply twice a week, early in the morning, and "
          "mulch the beds with straw before the summer heat.\n")


def ingest_all(lib, paths=None) -> IngestSummary:
    summary = IngestSummary()
    list(ingest(lib, paths, IngestOptions(), summary=summary))
    return summary


def write_docs(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, text in (("harbour.md", HARBOUR), ("garden.md", GARDEN)):
        (folder / name).write_text(text, "utf-8")
        out.append(folder / name)
    return out


# -- fsync before rename ---------------------------------------------------------------------


class DiskLog:
    """Records fsyncs (by inode) and renames, to check that each file's bytes were made
    durable before it replaced the old one, and the rename itself after."""

    def __init__(self, monkeypatch):
        self.events: list[tuple] = []
        real_fsync, real_replace = os.fsync, os.replace

        def fsync(fd):
            self.events.append(("fsync", os.fstat(fd).st_ino))
            return real_fsync(fd)

        def replace(src, dst, *args, **kwargs):
            self.events.append(("replace", os.stat(src).st_ino, Path(dst).name,
                                os.stat(Path(dst).parent).st_ino))
            return real_replace(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "replace", replace)

    def assert_durable(self, name: str) -> None:
        renames = [i for i, e in enumerate(self.events) if e[0] == "replace" and e[2] == name]
        assert renames, f"{name} was not written by a rename"
        for i in renames:
            _, inode, _, folder = self.events[i]
            assert ("fsync", inode) in self.events[:i], f"{name} renamed before its fsync"
            if os.name != "nt":
                assert ("fsync", folder) in self.events[i + 1:], f"{name}'s rename not synced"


def test_library_models_and_settings_files_are_fsynced_before_the_rename(
        monkeypatch, tmp_path, hash_embedder):
    disk = DiskLog(monkeypatch)
    lib = Library.open(tmp_path / "library", hash_embedder)
    disk.assert_durable("library.json")
    lib.close()

    manager = ModelManager(tmp_path / "models", state_path=tmp_path / "models.json")
    manager._save_state({"default": "a.gguf", "models": {}})
    disk.assert_durable("models.json")
    assert json.loads((tmp_path / "models.json").read_text())["default"] == "a.gguf"

    AppSettings().save(tmp_path / "settings.json")
    disk.assert_durable("settings.json")
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


# -- a damaged library.json --------------------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory, embedder):
    """A library with two ready documents, built once; each test damages a copy."""
    root = tmp_path_factory.mktemp("durable") / "library"
    docs = write_docs(root.parent / "docs")
    lib = Library.open(root, embedder)
    summary = ingest_all(lib, docs)
    assert summary.ingested == 2 and not summary.failed
    lib.optimize()
    lib.close()
    return root


def copy_of(built: Path, tmp_path: Path) -> Path:
    root = tmp_path / "library"
    shutil.copytree(built, root, ignore=shutil.ignore_patterns("folio.lock"))
    return root


DAMAGE = {
    "empty": b"",
    "zeros": b"\x00" * 512,
    "truncated": b'{"created_at": 1700000000.0, "dims": 38',
    "garbage": b"\xff\xfe not json at all {{{",
    "a list": b"[1, 2, 3]",
    "wrong types": b'{"schema_version": "one", "embedder": 7, "dims": "many"}',
    "no dims": b'{"schema_version": 1, "embedder": "", "dims": 0}',
    "forgotten": b'{"schema_version": 1}',
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_library_json_is_rebuilt_from_the_tables(built, tmp_path, embedder, damage):
    root = copy_of(built, tmp_path)
    meta_path = root / "library.json"
    good = json.loads(meta_path.read_text())
    meta_path.write_bytes(DAMAGE[damage])

    lib = Library.open(root, embedder)
    assert lib.repaired and "rebuilt from the library's tables" in lib.repaired
    assert lib.embedder_name == good["embedder"] == "all-MiniLM-L6-v2"
    assert lib.meta["dims"] == good["dims"] == 384
    assert sorted(Path(d.path).name for d in lib.documents()) == ["garden.md", "harbour.md"]
    assert all(d.status == READY and d.chunks > 0 for d in lib.documents())
    hits = hybrid_search(lib, "when does the crane lift containers", k=1)
    assert hits and Path(hits[0].path).name == "harbour.md"
    # library.json is whole again, and what was there is kept beside it.
    fixed = json.loads(meta_path.read_text())
    assert fixed["embedder"] == "all-MiniLM-L6-v2" and fixed["dims"] == 384
    assert (root / "library.json.bad").read_bytes() == DAMAGE[damage]
    # A later ingest works on the repaired library: unchanged files are skipped, a new one added.
    extra = root.parent / "docs" / "notes.md"
    extra.parent.mkdir(exist_ok=True)
    extra.write_text("# Notes\n\nThe lighthouse keeper logs the weather every Sunday.\n", "utf-8")
    assert ingest_all(lib, [extra]).ingested == 1
    lib.close()
    again = Library.open(root, embedder)
    assert again.repaired is None and len(again.documents()) == 3
    again.close()


def test_a_damaged_library_json_opens_read_only_without_writing(built, tmp_path):
    root = copy_of(built, tmp_path)
    (root / "library.json").write_bytes(b"")
    lib = Library(root, read_only=True)  # the CLI's read commands, no embedder given
    assert lib.repaired and lib.embedder_name == "all-MiniLM-L6-v2" and lib.meta["dims"] == 384
    assert len(lib.documents()) == 2
    assert (root / "library.json").read_bytes() == b""  # a reader never writes
    assert not (root / "library.json.bad").exists()


def test_the_cli_lists_and_searches_a_library_whose_library_json_is_garbage(
        built, tmp_path, capsys):
    root = copy_of(built, tmp_path)
    (root / "library.json").write_bytes(b"\x00garbage")
    assert main(["docs", "list", "--library", str(root), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted(Path(d["path"]).name for d in listed) == ["garden.md", "harbour.md"]
    assert main(["search", "--library", str(root), "--json", "tomato plants"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert Path(results[0]["path"]).name == "garden.md"


def test_an_unreadable_library_json_is_reported_with_the_fix(tmp_path):
    from app.core.index.library import LibraryError

    root = tmp_path / "library"
    root.mkdir()
    (root / "library.json").mkdir()  # not a file: reading it fails with an OSError
    with pytest.raises(LibraryError, match="cannot read the library file.*Check that"):
        Library.open(root)


# -- switching the embedder --------------------------------------------------------------------


def test_a_crash_between_queueing_and_dropping_the_passages_leaves_documents_queued(
        tmp_path, embedder, monkeypatch):
    root = tmp_path / "library"
    docs = write_docs(tmp_path / "docs")
    folio = Folio(root)
    folio._library = Library.open(root, embedder)
    assert ingest_all(folio._library, docs).ingested == 2

    db = folio._library._db
    real_drop = db.drop_table

    def drop_then_die(name, *args, **kwargs):
        real_drop(name, *args, **kwargs)  # the old passages are gone...
        raise RuntimeError("power cut")  # ...and nothing after this step happened

    monkeypatch.setattr(db, "drop_table", drop_then_die)
    with pytest.raises(RuntimeError, match="power cut"):
        list(folio.reindex("all-MiniLM-L6-v2"))
    folio._library.close()

    lib = Library.open(root, embedder)
    listed = {Path(d.path).name: d for d in lib.documents()}
    assert set(listed) == {"harbour.md", "garden.md"}
    assert all(d.status == QUEUED and d.chunks == 0 for d in listed.values()), listed
    assert lib.chunk_count(live_only=False) == 0
    # The next ingest (no paths: resume what is unfinished) indexes them again.
    summary = ingest_all(lib)
    assert summary.ingested == 2 and not summary.failed
    assert all(d.status == READY and d.chunks > 0 for d in lib.documents())
    hits = hybrid_search(lib, "tomato plants watering", k=1)
    assert hits and Path(hits[0].path).name == "garden.md"
    lib.close()


def test_a_crash_before_the_drop_leaves_queued_documents_and_orphans_recover_deletes(
        tmp_path, embedder, monkeypatch):
    root = tmp_path / "library"
    docs = write_docs(tmp_path / "docs")
    lib = Library.open(root, embedder)
    assert ingest_all(lib, docs).ingested == 2
    chunks = lib.chunk_count()
    monkeypatch.setattr(lib._db, "drop_table",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("power cut")))
    with pytest.raises(RuntimeError):
        lib.reset_for_embedder("all-MiniLM-L6-v2")
    lib.close()

    again = Library.open(root, embedder)  # recover() drops the passages nobody claims
    assert chunks > 0 and again.chunk_count(live_only=False) == 0
    assert all(d.status == QUEUED for d in again.documents())
    assert ingest_all(again).ingested == 2
    assert again.chunk_count() == chunks
    again.close()
