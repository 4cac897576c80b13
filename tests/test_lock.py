"""Two Folio processes on one library: one writer (an OS lock), readers read, chats are shared.

Every test here uses real processes: a holder subprocess keeps the library open for writing
while this process (or another subprocess) tries to use it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from docgen import make_pdf

from app.cli import main
from app.core.index import lock
from app.core.chat.history import ChatStore
from app.core.index.ingest import IngestOptions, IngestSummary, ingest
from app.core.index.library import READY, Library, LibraryLocked, ReadOnlyLibrary
from app.core.index.search import hybrid_search

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

HOLDER = textwrap.dedent("""
    import sys
    from app.core.chat.history import ChatStore
    from app.core.index.library import Library
    lib = Library.open(sys.argv[1])
    if "--streaming" in sys.argv:  # an answer being written while the holder runs
        store = ChatStore.for_library(sys.argv[1])
        chat = store.create_chat("live")
        store.add_message(chat.id, "user", "Are you still writing?")
        answer = store.start_answer(chat.id)
        store.update_answer(answer.id, "Yes, I am")
    print("HELD", flush=True)
    sys.stdin.read()  # hold the library until the test closes our stdin (or kills us)
    lib.close()
""")


class Holder:
    """A real Folio process holding a library open for writing."""

    def __init__(self, library: Path, *args: str):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(library), *args], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT,
        )
        self.watchdog = threading.Timer(120, self.proc.kill)
        self.watchdog.start()
        line = self.proc.stdout.readline()
        assert line.startswith("HELD"), (line, self.proc.stderr.read())

    @property
    def pid(self) -> int:
        return self.proc.pid

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=60)
        self.watchdog.cancel()

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)
        self.watchdog.cancel()


@pytest.fixture
def filled(tmp_path, embedder):
    """A small library with one PDF, closed again (no lock held by this process)."""
    folder = tmp_path / "docs"
    folder.mkdir()
    make_pdf(folder / "boats.pdf", [
        "Sailing basics. Always wear a life jacket when you are on deck.",
        "Anchoring. Let out chain five times the depth of the water before anchoring.",
    ])
    library = tmp_path / "library"
    lib = Library.open(library, embedder)
    for _ in ingest(lib, [folder], IngestOptions()):
        pass
    lib.close()
    return library, folder


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_second_writer_gets_a_clear_message_naming_the_holder(filled, capsys):
    library, folder = filled
    holder = Holder(library)
    try:
        with pytest.raises(LibraryLocked) as info:
            Library.open(library)
        assert f"pid {holder.pid}" in str(info.value)
        assert "open in another Folio window" in str(info.value)
        assert info.value.holder["pid"] == holder.pid

        # The CLI's write commands refuse with that message and exit code 2...
        code, _, err = cli(capsys, "ingest", "--library", str(library), str(folder))
        assert code == 2 and f"pid {holder.pid}" in err and "another Folio window" in err
        code, _, err = cli(capsys, "docs", "remove", "--library", str(library), "boats.pdf")
        assert code == 2 and "another Folio window" in err
    finally:
        holder.close()
    # ...and the library is untouched and writable once the holder has gone.
    lib = Library.open(library)
    assert [d.name for d in lib.documents()] == ["boats.pdf"] and lib.chunk_count() >= 1
    assert not lib.read_only
    lib.close()


def test_read_commands_work_read_only_while_another_process_writes(filled, capsys):
    library, _ = filled
    holder = Holder(library)
    try:
        code, out, err = cli(capsys, "search", "--library", str(library), "life jacket")
        assert code == 0 and "boats.pdf" in out
        assert f"pid {holder.pid}" in err and "without changes" in err
        code, out, _ = cli(capsys, "docs", "list", "--library", str(library))
        assert code == 0 and "boats.pdf" in out
        code, out, _ = cli(capsys, "info", "--library", str(library))
        assert code == 0 and "documents: 1" in out

        lib = Library.open(library, read_only=None)
        assert lib.read_only and hybrid_search(lib, "anchor chain")
        with pytest.raises(Exception, match="read-only"):
            lib.remove(lib.documents()[0])
        lib.optimize()  # a no-op when read-only, not an error
    finally:
        holder.close()
    assert Library.open(library).chunk_count() >= 1


def test_the_lock_dies_with_its_process(filled):
    library, _ = filled
    holder = Holder(library)
    holder.kill9()
    lib = Library.open(library)  # no stale lock to clean up by hand
    assert not lib.read_only and lib.chunk_count() >= 1
    lib.close()


def test_one_process_shares_its_lock_until_the_last_library_closes(tmp_path, hash_embedder):
    library = tmp_path / "library"
    one = Library.open(library, hash_embedder)
    two = Library.open(library, hash_embedder)  # the same process: allowed
    assert lock.is_held_here(library)
    one.close()
    assert lock.is_held_here(library)
    with pytest.raises(ReadOnlyLibrary):  # a closed library writes no more
        one.put_documents([])
    probe = subprocess.run(
        [sys.executable, "-c", ("import sys; from app.core.index.library import Library; "
                                "Library(sys.argv[1])"), str(library)],
        capture_output=True, check=False, text=True, env=ENV, cwd=ROOT, timeout=120,
    )
    assert probe.returncode != 0 and "LibraryLocked" in probe.stderr
    assert f"pid {os.getpid()}" in probe.stderr
    two.close()
    assert not lock.is_held_here(library)
    probe = subprocess.run(
        [sys.executable, "-c", ("import sys; from app.core.index.library import Library; "
                                "print(Library(sys.argv[1]).read_only)"), str(library)],
        capture_output=True, check=False, text=True, env=ENV, cwd=ROOT, timeout=120,
    )
    assert probe.returncode == 0 and probe.stdout.strip() == "False", probe.stderr


WRITER = textwrap.dedent("""
    import sys
    from app.core.chat.history import ChatStore
    store = ChatStore(sys.argv[1])
    shared, tag, n = int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    own = store.create_chat(f"chat {tag}").id
    for i in range(n):
        store.add_message(shared, "user", f"{tag} shared {i}")
        msg = store.start_answer(own)
        store.update_answer(msg.id, f"{tag} partial {i}")
        store.finish_answer(msg.id, f"{tag} answer {i}", sources=[])
        store.rename_chat(own, f"chat {tag} {i}")
    store.close()
    print("OK", flush=True)
""")


def test_two_processes_write_one_chat_database(tmp_path):
    """SQLite in WAL mode with busy waiting: two processes writing the same chats at once
    lose nothing and leave a sound database."""
    db = tmp_path / "folio.sqlite"
    with ChatStore(db) as store:
        shared = store.create_chat("shared").id
    n = 60
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(db), str(shared), tag, str(n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=ENV, cwd=ROOT) for tag in ("A", "B")]
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0 and "OK" in out, err[-2000:]
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    with ChatStore(db) as store:
        texts = [m.content for m in store.messages(shared)]
        assert sorted(texts) == sorted(f"{t} shared {i}" for t in "AB" for i in range(n))
        for tag in "AB":
            # Each writer's messages keep their order.
            assert [int(t.split()[-1]) for t in texts if t.startswith(tag)] == list(range(n))
            [chat] = [c for c in store.list_chats() if c.title.startswith(f"chat {tag}")]
            assert chat.title == f"chat {tag} {n - 1}"
            answers = store.messages(chat.id)
            assert [m.content for m in answers] == [f"{tag} answer {i}" for i in range(n)]
            assert all(m.status == "complete" for m in answers)


def test_the_window_shows_who_has_the_library(filled, qtbot, tmp_path, monkeypatch):
    """The window opens its library in a job; a locked one is a banner naming the holder
    (through the library panel's error path), not a crash or a half-open library."""
    from app.ui.main_window import MainWindow

    library, _ = filled
    monkeypatch.setenv("FOLIO_QSETTINGS", str(tmp_path / "folio.ini"))
    holder = Holder(library)
    try:
        window = MainWindow(library, load_model=False)
        qtbot.addWidget(window)
        window.show()
        with qtbot.waitSignal(window.library.error, timeout=120_000):
            window.start()
        assert window.banner.isVisible()
        text = window.banner.text.text()
        assert "open in another Folio window" in text and f"pid {holder.pid}" in text
        assert not window.library.opened
        window.close()
    finally:
        holder.close()


def test_a_second_process_leaves_the_writers_live_answer_alone(filled):
    """Opening the chats (folio ask, chats list) beside a running window must not mark the
    window's streaming answer interrupted; once that process is gone, it is."""
    library, _ = filled
    holder = Holder(library, "--streaming")
    try:
        with ChatStore.for_library(library) as store:
            [chat] = [c for c in store.list_chats() if c.title == "live"]
            assert [m.status for m in store.messages(chat.id)] == ["complete", "streaming"]
    finally:
        holder.kill9()
    with ChatStore.for_library(library) as store:
        msgs = store.messages(chat.id)
        assert [m.status for m in msgs] == ["complete", "interrupted"]
        assert msgs[1].content == "Yes, I am"


def test_closing_the_engine_releases_the_library_at_once(tmp_path):
    """Folio.close() (the window closing) hands the write lock back straight away, even while
    something still holds the engine, so a CLI command or another window can write next."""
    from app.core.service import Folio

    library = tmp_path / "library"
    folio = Folio(library_path=library)
    assert not folio.library.read_only and lock.is_held_here(library)
    folio.close()
    assert not lock.is_held_here(library)
    probe = subprocess.run(
        [sys.executable, "-c", ("import sys; from app.core.index.library import Library; "
                                "print(Library(sys.argv[1]).read_only)"), str(library)],
        capture_output=True, check=False, text=True, env=ENV, cwd=ROOT, timeout=120,
    )
    assert probe.returncode == 0 and probe.stdout.strip() == "False", probe.stderr
    # The engine opens it again when asked.
    assert not folio.library.read_only and lock.is_held_here(library)
    folio.close()
    assert not lock.is_held_here(library)


READER = textwrap.dedent("""
    import json, logging, os, sys, threading
    from pathlib import Path
    sys.path.insert(0, os.environ["FOLIO_TESTS_DIR"])
    from conftest import HashEmbedder
    from app.core.index.library import Library
    from app.core.index.search import hybrid_search

    class Problems(logging.Handler):  # search logs a failing full-text search, returns []
        def __init__(self):
            super().__init__(logging.WARNING)
            self.seen = []
        def emit(self, record):
            self.seen.append(f"{record.name}: {record.getMessage()}")

    problems = Problems()
    logging.getLogger().addHandler(problems)
    lib = Library.open(sys.argv[1], HashEmbedder(), read_only=True)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    errors, last, rounds = [], {}, 0
    while not stop.is_set():
        found = {}
        for mode in ("hybrid", "vector", "fts"):
            try:
                hits = hybrid_search(lib, "capybara river notes", k=50, mode=mode)
                found[mode] = sorted({Path(h.path).name for h in hits})
                if not hits:
                    errors.append(f"{mode}: no hits in round {rounds}")
            except Exception as exc:
                errors.append(f"{mode}: {type(exc).__name__}: {exc}")
        try:
            found["documents"] = sorted(d.name for d in lib.documents() if d.status == "ready")
            lib.chunk_count()
        except Exception as exc:
            errors.append(f"documents: {type(exc).__name__}: {exc}")
        last = found
        rounds += 1
        print("ROUND", rounds, flush=True)
    print("RESULT", json.dumps({"rounds": rounds, "errors": errors + problems.seen,
                                "last": last}), flush=True)
""")


class Reader:
    """A real read-only Folio process searching a library in a loop until its stdin closes."""

    def __init__(self, library: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", READER, str(library)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env={**ENV, "FOLIO_TESTS_DIR": str(ROOT / "tests")},
        )
        self.watchdog = threading.Timer(300, self.proc.kill)
        self.watchdog.start()
        self.rounds = 0
        self.result: dict | None = None
        self.changed = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self.changed:
                if line.startswith("ROUND"):
                    self.rounds = int(line.split()[1])
                elif line.startswith("RESULT"):
                    self.result = json.loads(line.split(" ", 1)[1])
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def wait_rounds(self, more: int) -> None:
        """Wait until the reader has searched `more` more rounds (or has died)."""
        with self.changed:
            target = self.rounds + more
            self.changed.wait_for(lambda: self.rounds >= target or self.proc.poll() is not None,
                                  timeout=120)
            assert self.rounds >= target, (self.rounds, self.proc.poll())

    def finish(self) -> dict:
        self.proc.stdin.close()
        self.proc.wait(timeout=120)
        self.thread.join(timeout=60)
        self.watchdog.cancel()
        assert self.proc.returncode == 0 and self.result, self.proc.stderr.read()[-3000:]
        return self.result


def test_a_reader_searches_while_the_holder_ingests_and_compacts(tmp_path, hash_embedder):
    """A read-only process searching in a loop (hybrid, vector and full-text) while the writer
    adds, replaces and removes documents and compacts the tables after each run (optimize, which
    also drops old table versions): the reader gets no error and never an empty result, sees
    the writer's documents once they are published, and the library is sound afterwards."""
    folder = tmp_path / "docs"
    folder.mkdir()
    library = tmp_path / "library"
    lib = Library.open(library, hash_embedder)

    def note(name: str, n: int) -> Path:
        path = folder / name
        path.write_text(f"# {name}\n\n" + "".join(
            f"Paragraph {i} of {name}: the capybara rests by the river, edition {n}.\n\n"
            for i in range(40)), "utf-8")
        return path

    note("first.md", 0)
    summary = IngestSummary()
    list(ingest(lib, [folder], IngestOptions(batch_size=8), summary=summary))
    assert summary.ingested == 1
    reader = Reader(library)
    try:
        reader.wait_rounds(1)
        for n in range(1, 7):
            # Each run: two new notes, one replaced, every few runs one removed; small
            # batches (many commits), then compaction with cleanup of old versions.
            note(f"new-{n}-a.md", n)
            note(f"new-{n}-b.txt", n)
            note("first.md", n)
            summary = IngestSummary()
            list(ingest(lib, [folder], IngestOptions(batch_size=8), summary=summary))
            assert summary.ingested == 3 and not summary.failed, summary
            if n % 3 == 0:
                gone = lib.get((folder / f"new-{n - 1}-a.md").resolve())
                lib.remove(gone)
                (folder / f"new-{n - 1}-a.md").unlink()
                lib.optimize()
            reader.wait_rounds(2)  # it searched during and after this run
    finally:
        result = reader.finish()
    assert result["rounds"] >= 13
    assert result["errors"] == [], result["errors"][:10]
    ready = sorted(d.name for d in lib.documents() if d.status == READY)
    assert result["last"]["documents"] == ready  # it sees what the writer published
    for mode in ("hybrid", "vector", "fts"):
        assert set(result["last"][mode]) <= set(ready) and result["last"][mode], mode
    lib.close()

    # Sound afterwards: nothing to repair, every chunk live and claimed, search in each mode.
    lib = Library.open(library, hash_embedder)
    assert lib.recover() == {"removed": 0, "published": 0, "orphans": 0}
    assert lib.chunk_count() == lib.chunk_count(live_only=False) == sum(
        d.chunks for d in lib.documents())
    for mode in ("hybrid", "vector", "fts"):
        assert hybrid_search(lib, "capybara river", k=3, mode=mode), mode
    lib.close()


def test_a_search_that_loses_the_race_with_a_compaction_reads_again(tmp_path, hash_embedder,
                                                                     monkeypatch):
    """The race the reader loop above can hit: a reader has begun on a table version when the
    writer's optimize compacts the table and removes that version's files. Forced here: a table
    pinned at the old version, read after the compaction, fails with LanceDB's real error; the
    search then runs again on the new version. A reader that keeps losing gets a clear,
    retryable message, not a raw LanceDB error."""
    import lancedb

    from app.core.index.library import LibraryBusy, is_stale_read

    folder = tmp_path / "docs"
    folder.mkdir()
    for i in range(3):
        (folder / f"note{i}.md").write_text(f"# Note {i}\n\n" + "".join(
            f"Line {j}: the capybara of note {i} swims.\n\n" for j in range(30)), "utf-8")
    library = tmp_path / "library"
    writer = Library.open(library, hash_embedder)
    list(ingest(writer, [folder], IngestOptions(batch_size=8, optimize=False)))
    reader = Library.open(library, hash_embedder, read_only=True)

    stale = lancedb.connect(str(library / "lancedb")).open_table("chunks")
    stale.checkout(stale.version)  # the version a reader had begun to read...
    writer.optimize()  # ...is compacted, and its files removed
    with pytest.raises(Exception) as lost:
        stale.search().where("live = true").limit(None).to_arrow()
    assert is_stale_read(lost.value), lost.value

    real = reader.chunks_table
    handed: list[str] = []

    def chunks_table():  # the first table a search gets is the one that lost the race
        handed.append("stale" if not handed else "latest")
        return stale if handed == ["stale"] else real()

    monkeypatch.setattr(reader, "chunks_table", chunks_table)
    hits = hybrid_search(reader, "capybara swims", k=3)
    assert hits and handed[0] == "stale" and "latest" in handed
    assert {Path(h.path).name for h in hits} <= {"note0.md", "note1.md", "note2.md"}

    monkeypatch.setattr(reader, "chunks_table", lambda: stale)
    with pytest.raises(LibraryBusy, match="try again in a moment"):
        hybrid_search(reader, "capybara swims", k=3)
    writer.close()
