"""Chat history on real SQLite files: CRUD, search, streaming answers, atomic edits, crashes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from app.core.chat import history
from app.core.chat.history import DEFAULT_TITLE, ChatStore, Source, title_from

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path):
    s = ChatStore.for_library(tmp_path / "library")
    yield s
    s.close()


def _raw(path: Path) -> sqlite3.Connection:
    """A second, plain connection: what another process would see on disk."""
    return sqlite3.connect(path, timeout=10)


def _count(path: Path, sql: str) -> int:
    conn = _raw(path)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


# --- file, schema, pragmas -------------------------------------------------------------------


def test_store_lives_in_the_library_folder_in_wal_mode(tmp_path):
    lib = tmp_path / "library"
    with ChatStore.for_library(lib) as s:
        assert s.path == lib / "folio.sqlite"
        assert s._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s._conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert s._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
        assert s._conn.execute("PRAGMA user_version").fetchone()[0] == history.SCHEMA_VERSION
        s.create_chat("kept")
    # Reopening migrates nothing and keeps the data.
    with ChatStore.for_library(lib) as s:
        assert [c.title for c in s.list_chats()] == ["kept"]


def test_newer_schema_is_refused_with_advice(tmp_path):
    path = tmp_path / "folio.sqlite"
    conn = _raw(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(history.HistoryError, match="newer Folio"):
        ChatStore(path)


# --- chats -----------------------------------------------------------------------------------


def test_create_list_rename_delete_cascades(store):
    a = store.create_chat("Alpha")
    time.sleep(0.002)
    b = store.create_chat("Beta", model="/models/tiny.gguf")
    assert [c.id for c in store.list_chats()] == [b.id, a.id]  # newest first
    assert store.get_chat(b.id).model == "/models/tiny.gguf"

    q = store.add_message(a.id, "user", "question")
    store.add_message(a.id, "assistant", "answer", sources=[Source(1, "/d/a.pdf", page=2)])
    assert [c.id for c in store.list_chats()] == [a.id, b.id]  # activity moves a chat up

    store.rename_chat(b.id, "Beta renamed")
    assert store.get_chat(b.id).title == "Beta renamed"

    store.delete_chat(a.id)
    with pytest.raises(KeyError):
        store.get_chat(a.id)
    with pytest.raises(KeyError):
        store.messages(a.id)
    with pytest.raises(KeyError):
        store.get_message(q.id)
    assert _count(store.path, "SELECT COUNT(*) FROM messages") == 0
    assert _count(store.path, "SELECT COUNT(*) FROM sources") == 0
    assert [c.title for c in store.list_chats()] == ["Beta renamed"]
    with pytest.raises(KeyError):
        store.rename_chat(a.id, "x")
    with pytest.raises(KeyError):
        store.delete_chat(a.id)


def test_settings_scope_and_summary_round_trip(store):
    scope = {"mode": "collections", "collections": ["papers", "ünïcode"]}
    chat = store.create_chat("c", settings={"temperature": 0.2, "top_k": 6}, scope=scope)
    got = store.get_chat(chat.id)
    assert got.settings == {"temperature": 0.2, "top_k": 6}
    assert got.scope == {"mode": "collections", "collections": ["papers", "ünïcode"],
                         "documents": []}
    assert store.create_chat().scope == {"mode": "all", "collections": [], "documents": []}

    m = store.add_message(chat.id, "user", "hi")
    store.update_chat(chat.id, summary="they said hi", summary_upto=m.id)
    got = store.get_chat(chat.id)
    assert (got.summary, got.summary_upto) == ("they said hi", m.id)
    assert got.settings["top_k"] == 6 and got.scope["mode"] == "collections"  # untouched

    store.update_chat(chat.id, model="m.gguf", scope={"mode": "none"})
    got = store.get_chat(chat.id)
    assert got.model == "m.gguf" and got.scope["mode"] == "none"
    assert got.summary == "they said hi"
    store.update_chat(chat.id, model=None)
    assert store.get_chat(chat.id).model is None
    with pytest.raises(ValueError):
        store.update_chat(chat.id, scope={"mode": "everything"})
    with pytest.raises(KeyError):
        store.update_chat(12345, model="x")


def test_auto_title_from_first_question(store):
    chat = store.create_chat()
    assert chat.title == DEFAULT_TITLE
    long_q = ("How do I   configure the write-ahead log checkpoint interval "
              "for a very busy database?")
    store.add_message(chat.id, "system", "You answer from the documents.")
    store.add_message(chat.id, "user", long_q)
    title = store.get_chat(chat.id).title
    assert title == "How do I configure the write-ahead log checkpoint interval…"
    assert len(title) <= 61
    store.add_message(chat.id, "user", "second question")
    assert store.get_chat(chat.id).title == title
    named = store.create_chat("My own title")
    store.add_message(named.id, "user", "a question")
    assert store.get_chat(named.id).title == "My own title"
    assert title_from("short one") == "short one"
    assert title_from("x" * 100) == "x" * 60 + "…"
    assert title_from("   ") == DEFAULT_TITLE


# --- search ----------------------------------------------------------------------------------


def _search_fixture(store):
    a = store.create_chat("Octave plotting")
    store.add_message(a.id, "user", "How do I keep a figure with hold on?")
    b = store.create_chat("Taxes")
    store.add_message(b.id, "user", "When is the filing deadline?")
    store.add_message(b.id, "assistant", "The deadline is in April, see the Formulaire 2042.")
    return a, b


@pytest.mark.parametrize("fts", [True, False], ids=["fts5", "like"])
def test_search_titles_and_message_text(tmp_path, monkeypatch, fts):
    if not fts:
        monkeypatch.setattr(history, "_fts5", False)
    elif not history._fts5_available():
        pytest.skip("this sqlite3 build has no FTS5")
    with ChatStore(tmp_path / "h.sqlite") as store:
        assert store.has_fts is fts
        a, b = _search_fixture(store)
        assert [c.id for c in store.list_chats("octave")] == [a.id]  # title
        assert [c.id for c in store.list_chats("deadline")] == [b.id]  # message text
        assert [c.id for c in store.list_chats("Formulaire")] == [b.id]  # answer text
        assert [c.id for c in store.list_chats("figure")] == [a.id]
        assert store.list_chats("nothing like this") == []
        assert len(store.list_chats("  ")) == 2
        # Operators and quotes are just text, not query syntax.
        assert store.list_chats('"hold" OR (NEAR') == []
        store.rename_chat(a.id, "Graphs")
        assert store.list_chats("octave") == []
        assert [c.id for c in store.list_chats("graphs")] == [a.id]
        store.delete_chat(b.id)
        assert store.list_chats("deadline") == []


@pytest.mark.skipif(not history._fts5_available(), reason="no FTS5 in this sqlite3 build")
def test_fts_prefix_search_and_index_stays_consistent(store):
    a, b = _search_fixture(store)
    assert [c.id for c in store.list_chats("deadl")] == [b.id]  # prefix, as the user types
    assert [c.id for c in store.list_chats("filing deadline")] == [b.id]
    ans = store.start_answer(a.id)
    store.update_answer(ans.id, "Use hold on before plotting")
    store.finish_answer(ans.id, "Use hold on before plotting the second line")
    assert [c.id for c in store.list_chats("second line")] == [a.id]
    q = store.messages(a.id)[0]
    store.edit_message(q.id, "How do I overlay plots?")
    assert store.list_chats("second line") == []  # the deleted answer left the index
    assert [c.id for c in store.list_chats("overlay")] == [a.id]
    conn = store._conn
    conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")
    conn.execute("INSERT INTO chats_fts(chats_fts) VALUES ('integrity-check')")


@pytest.mark.skipif(not history._fts5_available(), reason="no FTS5 in this sqlite3 build")
def test_fts_index_rebuilt_when_a_build_without_fts5_wrote_the_file(tmp_path, monkeypatch):
    path = tmp_path / "h.sqlite"
    with ChatStore(path) as s:
        a, _ = _search_fixture(s)
    monkeypatch.setattr(history, "_fts5", False)
    with ChatStore(path) as s:  # drops the triggers so writes work without the module
        assert not s.has_fts
        s.add_message(a.id, "user", "written without an index: zebra")
    monkeypatch.setattr(history, "_fts5", True)
    with ChatStore(path) as s:
        assert s.has_fts
        assert [c.id for c in s.list_chats("zebra")] == [a.id]


# --- messages --------------------------------------------------------------------------------


def test_messages_in_order_with_sources(store):
    chat = store.create_chat()
    q = store.add_message(chat.id, "user", "What does the manual say?")
    sources = [
        Source(1, "/docs/manual.pdf", page=12, page_end=13, section="Setup", score=0.031,
               text="Install it.", chunk_id="c1"),
        {"path": "/docs/notes.md", "page": None, "section": "", "score": 0.02, "text": "n",
         "chunk_id": "c2"},  # a dict without n is numbered by position
    ]
    a = store.add_message(chat.id, "assistant", "It says install [1] [2].", sources=sources,
                          meta={"model": "tiny", "completion_tokens": 7})
    msgs = store.messages(chat.id)
    assert [(m.id, m.position, m.role) for m in msgs] == [
        (q.id, 1, "user"), (a.id, 2, "assistant"),
    ]
    got = msgs[1].sources
    assert got[0] == sources[0]
    assert got[1] == Source(2, "/docs/notes.md", None, None, "", 0.02, "n", "c2")
    assert msgs[1].meta == {"model": "tiny", "completion_tokens": 7}
    assert msgs[0].sources == [] and msgs[0].status == "complete"
    assert store.get_message(a.id) == msgs[1]
    with pytest.raises(ValueError):
        store.add_message(chat.id, "robot", "x")
    with pytest.raises(ValueError):
        store.add_message(chat.id, "user", "x", status="done")
    with pytest.raises(KeyError):
        store.add_message(999, "user", "x")


def test_search_results_are_accepted_as_sources(store):
    from app.core.index.search import SearchResult

    chat = store.create_chat()
    r = SearchResult(path="/d/a.pdf", page=4, page_end=4, section="Intro", score=0.5,
                     text="snippet", chunk_id="abc")
    m = store.add_message(chat.id, "assistant", "x [1]", sources=[r])
    assert m.sources == [Source(1, "/d/a.pdf", 4, 4, "Intro", 0.5, "snippet", "abc")]


def test_streaming_answer_lifecycle(store):
    chat = store.create_chat()
    store.add_message(chat.id, "user", "Explain WAL")
    ans = store.start_answer(chat.id, meta={"model": "tiny.gguf"})
    assert (ans.role, ans.status, ans.content) == ("assistant", "streaming", "")
    assert store.update_answer(ans.id, "Write-ahead")
    assert store.get_message(ans.id).content == "Write-ahead"
    done = store.finish_answer(
        ans.id, "Write-ahead logging [1].", sources=[Source(1, "/d/sqlite.pdf", page=3)],
        meta={"completion_tokens": 5, "seconds": 0.4},
    )
    assert done.status == "complete" and done.content == "Write-ahead logging [1]."
    assert done.meta == {"model": "tiny.gguf", "completion_tokens": 5, "seconds": 0.4}
    assert done.sources == [Source(1, "/d/sqlite.pdf", page=3)]
    # A late throttled update from the worker cannot overwrite the finished answer.
    assert not store.update_answer(ans.id, "Write-")
    assert store.get_message(ans.id).content == "Write-ahead logging [1]."
    assert not store.update_answer(987654, "gone")

    failed = store.start_answer(chat.id)
    store.finish_answer(failed.id, "partial", status="error", error="model crashed")
    got = store.get_message(failed.id)
    assert (got.status, got.error, got.content) == ("error", "model crashed", "partial")
    with pytest.raises(ValueError):
        store.finish_answer(failed.id, "x", status="streaming")
    store.delete_chat(chat.id)
    with pytest.raises(KeyError):
        store.finish_answer(ans.id, "too late")


def test_truncate_after_for_regenerate(store):
    chat = store.create_chat()
    q1 = store.add_message(chat.id, "user", "one")
    a1 = store.add_message(chat.id, "assistant", "uno", sources=[Source(1, "/a")])
    q2 = store.add_message(chat.id, "user", "two")
    store.add_message(chat.id, "assistant", "dos", sources=[Source(1, "/b")])
    store.update_chat(chat.id, summary="one: uno", summary_upto=a1.id)
    assert store.truncate_after(q2.id) == 1
    assert [m.content for m in store.messages(chat.id)] == ["one", "uno", "two"]
    assert store.get_chat(chat.id).summary == "one: uno"  # still true
    assert _count(store.path, "SELECT COUNT(*) FROM sources") == 1
    new = store.add_message(chat.id, "assistant", "deux")
    assert new.position == 4
    assert store.truncate_after(q1.id) == 3
    assert store.get_chat(chat.id).summary_upto is None  # it covered deleted turns
    with pytest.raises(KeyError):
        store.truncate_after(424242)


def test_edit_message_replaces_the_branch(store):
    chat = store.create_chat()
    q1 = store.add_message(chat.id, "user", "first")
    a1 = store.add_message(chat.id, "assistant", "answer one")
    q2 = store.add_message(chat.id, "user", "second")
    store.add_message(chat.id, "assistant", "answer two", sources=[Source(1, "/x")])
    store.update_chat(chat.id, summary="first: answer one", summary_upto=a1.id)

    edited = store.edit_message(q2.id, "second, rephrased")
    assert edited.content == "second, rephrased" and "edited_at" in edited.meta
    assert [m.content for m in store.messages(chat.id)] == ["first", "answer one",
                                                            "second, rephrased"]
    assert store.get_chat(chat.id).summary == "first: answer one"  # covers only kept turns

    store.edit_message(q1.id, "first, rephrased")
    assert [m.content for m in store.messages(chat.id)] == ["first, rephrased"]
    got = store.get_chat(chat.id)
    assert (got.summary, got.summary_upto) == ("", None)
    with pytest.raises(ValueError):
        store.edit_message(store.add_message(chat.id, "assistant", "a").id, "x")
    with pytest.raises(KeyError):
        store.edit_message(31337, "x")


def _branch_state(store, chat_id):
    chat = store.get_chat(chat_id)
    return ([(m.id, m.content, m.status, m.sources) for m in store.messages(chat_id)],
            chat.summary, chat.summary_upto)


def _edit_fixture(store):
    chat = store.create_chat()
    q1 = store.add_message(chat.id, "user", "first")
    a1 = store.add_message(chat.id, "assistant", "one", sources=[Source(1, "/a", page=1)])
    store.add_message(chat.id, "user", "second")
    store.add_message(chat.id, "assistant", "two", sources=[Source(1, "/b")])
    store.update_chat(chat.id, summary="s", summary_upto=a1.id)
    return chat, q1


def test_edit_failing_at_the_delete_changes_nothing(store):
    chat, q1 = _edit_fixture(store)
    before = _branch_state(store, chat.id)
    # A real SQLite failure after the UPDATE of the question has run, inside the transaction.
    store._conn.execute(
        "CREATE TEMP TRIGGER fail_delete BEFORE DELETE ON messages "
        "BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
    )
    with pytest.raises(sqlite3.DatabaseError, match="disk on fire"):
        store.edit_message(q1.id, "rewritten")
    assert _branch_state(store, chat.id) == before
    store._conn.execute("DROP TRIGGER fail_delete")
    assert not store._conn.in_transaction
    store.edit_message(q1.id, "rewritten")  # the store is still usable
    assert [m.content for m in store.messages(chat.id)] == ["rewritten"]


def test_edit_failing_after_the_delete_changes_nothing(store, monkeypatch):
    chat, q1 = _edit_fixture(store)
    before = _branch_state(store, chat.id)

    def boom(conn, chat_id, from_position):
        # By now the question is updated and the later messages deleted, in this transaction.
        assert conn.execute("SELECT COUNT(*) FROM messages WHERE chat_id = ?",
                            (chat_id,)).fetchone()[0] == 1
        raise RuntimeError("crash between statements")

    monkeypatch.setattr(ChatStore, "_drop_stale_summary", staticmethod(boom))
    with pytest.raises(RuntimeError):
        store.edit_message(q1.id, "rewritten")
    monkeypatch.undo()
    assert _branch_state(store, chat.id) == before
    # Another connection (another process) never saw a half-edited chat either.
    assert _count(store.path, f"SELECT COUNT(*) FROM messages WHERE chat_id = {chat.id}") == 4


# --- crashes ---------------------------------------------------------------------------------

_CHILD_STREAMING = """
import sys, time
from app.core.chat.history import ChatStore, Source
store = ChatStore(sys.argv[1])
chat = store.create_chat()
store.add_message(chat.id, "user", "What is WAL?")
store.add_message(chat.id, "assistant", "Write-ahead logging [1].",
                  sources=[Source(1, "/docs/sqlite.pdf", page=3, section="WAL")])
store.add_message(chat.id, "user", "And checkpoints?")
answer = store.start_answer(chat.id, meta={"model": "tiny.gguf"})
store.update_answer(answer.id, "A checkpoint")
store.update_answer(answer.id, "A checkpoint copies pages back")
print(chat.id, answer.id, flush=True)
print("READY", flush=True)
time.sleep(60)
"""

_CHILD_LOOP = """
import sys
from app.core.chat.history import ChatStore, Source
store = ChatStore(sys.argv[1])
chat = store.create_chat()
print(chat.id, flush=True)
i = 0
while True:
    store.add_message(chat.id, "user", f"question {i} " + "q" * 3000)
    a = store.start_answer(chat.id)
    store.update_answer(a.id, f"answer {i} partial")
    store.finish_answer(a.id, f"answer {i} " + "a" * 3000,
                        sources=[Source(n, f"/d/{i}.pdf", page=n) for n in range(1, 4)])
    i += 1
    if i == 10:
        print("READY", flush=True)
"""


def _spawn(script: str, db: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    )
    watchdog = threading.Timer(20, proc.kill)  # never hang the suite on a stuck child
    watchdog.daemon = True
    watchdog.start()
    proc.watchdog = watchdog  # type: ignore[attr-defined]
    return proc


def _kill9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    proc.watchdog.cancel()  # type: ignore[attr-defined]
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL


def _read_ready(proc: subprocess.Popen) -> list[str]:
    lines = []
    while (line := proc.stdout.readline()) != "READY\n":
        assert line, f"child exited early: {proc.stderr.read()}"
        lines.append(line)
    return lines


def test_kill_9_while_streaming_leaves_an_interrupted_answer(tmp_path):
    db = tmp_path / "folio.sqlite"
    proc = _spawn(_CHILD_STREAMING, db)
    (ids,) = _read_ready(proc)
    chat_id, answer_id = map(int, ids.split())
    # The child is alive and its answer is on disk as "streaming".
    conn = _raw(db)
    assert conn.execute("SELECT status FROM messages WHERE id = ?",
                        (answer_id,)).fetchone() == ("streaming",)
    conn.close()
    _kill9(proc)

    with ChatStore(db) as store:
        msgs = store.messages(chat_id)
        assert [(m.role, m.content, m.status) for m in msgs] == [
            ("user", "What is WAL?", "complete"),
            ("assistant", "Write-ahead logging [1].", "complete"),
            ("user", "And checkpoints?", "complete"),
            ("assistant", "A checkpoint copies pages back", "interrupted"),
        ]
        assert msgs[1].sources == [Source(1, "/docs/sqlite.pdf", page=3, section="WAL")]
        assert msgs[3].meta == {"model": "tiny.gguf"}
        assert store.recover_interrupted() == 0  # done once, on open
        assert "**Folio** (interrupted)" in store.export_markdown(chat_id)
        # The chat goes on: the interrupted answer can be regenerated.
        store.truncate_after(msgs[2].id)
        assert store.start_answer(chat_id).position == 4


def test_kill_9_during_a_write_loop_leaves_a_sound_database(tmp_path):
    db = tmp_path / "folio.sqlite"
    proc = _spawn(_CHILD_LOOP, db)
    (chat_line,) = _read_ready(proc)
    time.sleep(0.3)  # let it run on, mid-write at some random point
    _kill9(proc)

    conn = _raw(db)
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    conn.close()
    with ChatStore(db) as store:
        msgs = store.messages(int(chat_line))
        assert len(msgs) >= 20
        assert [m.position for m in msgs] == list(range(1, len(msgs) + 1))
        for m in msgs[:-1]:
            assert m.status == "complete"
            if m.role == "assistant":
                assert m.content.startswith("answer ") and len(m.sources) == 3
        # The last one may have been caught streaming, and then it is interrupted.
        assert msgs[-1].status in ("complete", "interrupted")
        if store.has_fts:
            store._conn.execute("INSERT INTO messages_fts(messages_fts) VALUES ('integrity-check')")
        store.add_message(int(chat_line), "user", "still writable")


# --- threads ---------------------------------------------------------------------------------


def test_threads_share_one_store(store):
    chat = store.create_chat()
    errors = []

    def writer(tag):
        for i in range(100):
            store.add_message(chat.id, "user", f"{tag}{i}", sources=[Source(1, f"/{tag}")])

    def streamer():
        ans = store.start_answer(chat.id)
        for i in range(50):
            store.update_answer(ans.id, "x" * i)
        store.finish_answer(ans.id, "done")

    def reader():
        for _ in range(50):
            store.list_chats("a1")
            store.messages(chat.id)

    with ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(writer, "a"), pool.submit(writer, "b"),
                   pool.submit(streamer), pool.submit(reader)]
        for f in futures:
            try:
                f.result()
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
    assert errors == []
    msgs = store.messages(chat.id)
    assert len(msgs) == 201
    assert [m.position for m in msgs] == list(range(1, 202))


def test_two_stores_on_one_file_wait_for_each_other(tmp_path):
    db = tmp_path / "folio.sqlite"
    with ChatStore(db) as one, ChatStore(db) as two:
        chat = one.create_chat()
        with ThreadPoolExecutor(2) as pool:
            for f in [pool.submit(lambda s=s: [s.add_message(chat.id, "user", "m")
                                               for _ in range(50)]) for s in (one, two)]:
                f.result()
        assert len(two.messages(chat.id)) == 100


# --- export ----------------------------------------------------------------------------------


def test_export_markdown_with_citations_and_escaping(store):
    chat = store.create_chat("WAL <b>notes</b>")
    store.add_message(chat.id, "user", "What is **WAL**?")
    store.add_message(
        chat.id, "assistant",
        "It is *write-ahead logging* [1], see pp. [2].\n\n"
        "<script>alert('x')</script>\n\n```python\nif a < b:\n    print('<ok>')\n```",
        sources=[
            Source(1, "/docs/sqlite.pdf", page=3, section="Write-Ahead Log"),
            Source(2, "/docs/notes_[draft].md", page=None, section="<img src=x onerror=y>"),
            Source(3, "/docs/book.pdf", page=10, page_end=12),
        ],
    )
    store.add_message(chat.id, "user", "More?")
    ans = store.start_answer(chat.id)
    store.update_answer(ans.id, "Half an ans")
    store._conn.execute("UPDATE messages SET status = 'interrupted' WHERE id = ?", (ans.id,))

    md = store.export_markdown(chat.id)
    assert md.startswith("# WAL &lt;b&gt;notes&lt;/b&gt;\n")
    assert "**You**\n\nWhat is **WAL**?" in md  # the user's own formatting is kept
    assert "It is *write-ahead logging* [1], see pp. [2]." in md
    assert "<script>" not in md and "&lt;script&gt;alert('x')&lt;/script&gt;" in md
    assert "```python\nif a < b:\n    print('<ok>')\n```" in md  # code shown verbatim
    assert "- [1] /docs/sqlite.pdf, p. 3 (Write-Ahead Log)" in md
    assert "- [2] /docs/notes\\_\\[draft\\].md (&lt;img src=x onerror=y&gt;)" in md
    assert "- [3] /docs/book.pdf, pp. 10–12" in md
    assert "**Folio** (interrupted)\n\nHalf an ans" in md
    assert md.index("**You**") < md.index("**Folio**") < md.index("More?")


ATTACKS = [
    "<script>alert(1)</script>",
    "inline <img src=x onerror=alert(1)> tag",
    "<!-- comment --> and <?php x ?>",
    "[click me](javascript:alert(1)) and ![pixel](http://evil.example/p.png?q=secret)",
    "[ref link][r]\n\n[r]: http://evil.example\n\n[r]",
    "\\[already escaped](http://evil.example)",
    "autolink <http://evil.example>",
    "```\nunclosed fence swallowing the rest",
    "```\ncode\n```\r<script>alert('CR ends the fence')</script>",
    '[x](/u "`") <img src=x onerror=alert(1)> `',
    "  ```\n<script>alert('indented fence inside a list')</script>\n  ```",
    "- item\n  ```\n<script>alert(2)</script>",
    "> quote <script>alert(3)</script>",
    "cite [1](http://evil.example) and [2]: http://evil.example",
]


def test_export_renders_without_html_or_links(store):
    markdown_it = pytest.importorskip("markdown_it")
    chat = store.create_chat("Attacks")
    for attack in ATTACKS:
        store.add_message(chat.id, "user", attack)
        store.add_message(chat.id, "assistant", attack,
                          sources=[Source(1, "/d/[x](http://e).pdf", section=attack)])
    md = store.export_markdown(chat.id)
    tokens = markdown_it.MarkdownIt("commonmark").parse(md)  # raw HTML on, as CommonMark has it
    bad = []

    def walk(toks):
        for t in toks:
            if t.type in ("html_inline", "html_block", "link_open", "image"):
                bad.append((t.type, t.content or t.attrs))
            walk(t.children or [])

    walk(tokens)
    assert bad == []
    # Every turn label survives as its own paragraph: no content swallowed the rest.
    html = markdown_it.MarkdownIt("commonmark").render(md)
    assert html.count("<p><strong>You</strong></p>") == len(ATTACKS)
    assert html.count("<p><strong>Folio</strong></p>") == len(ATTACKS)
