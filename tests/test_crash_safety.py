"""Kill -9 a real ingest process again and again; the library must stay consistent each time.

A driver subprocess ingests a folder of mixed files (PDF, DOCX, Markdown, text, HTML). It is
killed with SIGKILL either after a random delay (from outside) or right after a chosen commit
inside the pipeline (it sends itself SIGKILL after the Nth chunk write, live flip, cleanup
delete, document write or compaction), so kills land during loading, embedding, staging and
the publish flip alike. After each kill the test reopens the library (which runs `recover()`)
and checks it; between runs a few files change, so replacements are interrupted too. A run
that ends before its kill moment is no kill: the moment is drawn again, sized by what that run
did, until 20 real SIGKILLs have landed mid-ingest. At the end one uninterrupted ingest must
leave exactly what one clean ingest of the same folder does.

The many cycles run on the deterministic hash embedder (the `hash_embedder` fixture's class,
imported by the driver from conftest) to stay fast; one test does the same with the real
embedder.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from conftest import HashEmbedder
from docgen import LOREM, long_pages, make_docx, make_pdf

from app.core.index.ingest import IngestOptions, IngestSummary, ingest
from app.core.index.library import INDEXING, READY, Library
from app.core.index.search import hybrid_search

ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
BATCH = 16

DRIVER = textwrap.dedent("""
    import json, os, signal, sys
    sys.path.insert(0, os.environ["FOLIO_TESTS_DIR"])
    import lancedb.table
    from app.core.index import library as libmod
    from app.core.index.ingest import IngestOptions, ingest

    point, _, nth = os.environ.get("CRASH_AT", "").partition(":")
    counts = {}
    armed = []  # commits are counted from GO on: the ingest's, not the opening's recover()

    def hit(name):
        if not armed:
            return
        counts[name] = counts.get(name, 0) + 1
        if name == point and counts[name] == int(nth):
            print("SELF-KILL", name, nth, flush=True)
            os.kill(os.getpid(), signal.SIGKILL)

    def after(cls, method, name):
        real = getattr(cls, method)
        def wrapped(self, *a, **kw):
            out = real(self, *a, **kw)
            hit(name)
            return out
        setattr(cls, method, wrapped)

    def before(cls, method, name):
        real = getattr(cls, method)
        def wrapped(self, *a, **kw):
            hit(name)
            return real(self, *a, **kw)
        setattr(cls, method, wrapped)

    after(lancedb.table.LanceTable, "add", "add")          # a staged batch committed
    after(lancedb.table.LanceTable, "update", "update")    # the live flip committed
    after(lancedb.table.LanceTable, "delete", "delete")    # old versions dropped
    after(libmod.Library, "put_documents", "put")           # document rows written
    before(lancedb.table.LanceTable, "optimize", "optimize")  # between two compactions

    if os.environ.get("CRASH_EMBEDDER") == "hash":
        from conftest import HashEmbedder
        embedder = HashEmbedder()
    else:
        from app.core.index.embedder import get_embedder
        embedder = get_embedder()
    lib = libmod.Library.open(sys.argv[1], embedder)
    armed.append(True)
    print("GO", flush=True)
    for ev in ingest(lib, [sys.argv[2]], IngestOptions(batch_size=int(sys.argv[3]))):
        pass
    print("DONE", json.dumps(counts), flush=True)  # how many of each commit the run made
""")


def make_folder(folder: Path, rng: random.Random) -> None:
    folder.mkdir()
    for i in range(5):
        make_pdf(folder / f"report{i}.pdf", long_pages(6 + i, f"report{i}"),
                 title=f"Report {i}")
    for i in range(3):
        make_docx(folder / f"memo{i}.docx", {
            f"Part {j}": [f"Memo {i} part {j}. " + LOREM * 3] for j in range(4)
        }, title=f"Memo {i}")
    for i in range(4):
        body = "\n\n".join(f"## Step {j}\n\n{LOREM * 2} Note {i}-{j}." for j in range(6))
        (folder / f"guide{i}.md").write_text(f"# Guide {i}\n\n{body}\n", "utf-8")
    for i in range(4):
        words = " ".join(rng.choice(["alpha", "beta", "gamma", "delta", "omega"])
                         for _ in range(700))
        (folder / f"log{i}.txt").write_text(f"Log {i}. {words}\n", "utf-8")
    for i in range(3):
        sections = "".join(f"<h2>Topic {j}</h2><p>{LOREM * 2} Page {i} topic {j}.</p>"
                           for j in range(5))
        (folder / f"page{i}.html").write_text(
            f"<html><head><title>Page {i}</title></head><body><h1>Page {i}</h1>"
            f"{sections}</body></html>", "utf-8")


def change_some(folder: Path, rng: random.Random, cycle: int) -> list[str]:
    """Edit a couple of text files (bigger, so size and content both change), and every
    other time rewrite a PDF, so the next run has a whole document to embed again."""
    names = rng.sample(sorted(p.name for p in folder.glob("*.md")) +
                       sorted(p.name for p in folder.glob("*.txt")), 2)
    for name in names:
        with open(folder / name, "a", encoding="utf-8") as f:
            f.write(f"\n\nEdited in cycle {cycle}. " + LOREM * rng.randint(1, 4) + "\n")
    if cycle % 2:
        pdf = rng.choice(sorted(folder.glob("*.pdf")))
        make_pdf(pdf, long_pages(rng.randint(4, 9), f"{pdf.stem} edition {cycle}"))
        names.append(pdf.name)
    return names


def run_driver(library: Path, folder: Path, *, embedder: str, crash_at: str = "",
               delay: float | None = None, timeout: float = 120) -> tuple[str, dict]:
    """Run the driver; SIGKILL it `delay` seconds after its GO line (if still running).

    Returns how it ended and what it did: ("killed", {}) when a SIGKILL landed before the
    ingest finished, else ("done", {"work": seconds from GO to DONE, "counts": commits made
    by kind}). A kill that lands after DONE (the process was only exiting) is "done"."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FOLIO_TESTS_DIR": str(TESTS),
           "CRASH_AT": crash_at, "CRASH_EMBEDDER": embedder}
    proc = subprocess.Popen(
        [sys.executable, "-c", DRIVER, str(library), str(folder), str(BATCH)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    lines: list[str] = []
    go = threading.Event()
    times: dict[str, float] = {}

    def drain() -> None:
        for line in proc.stdout:
            lines.append(line.strip())
            if line.startswith("GO"):
                times["go"] = time.monotonic()
                go.set()
            elif line.startswith("DONE"):
                times["done"] = time.monotonic()
        go.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    hung: list[bool] = []

    def never_hang() -> None:  # never hang the suite; a kill from here is no crash moment
        hung.append(True)
        proc.kill()

    watchdog = threading.Timer(timeout, never_hang)
    watchdog.start()
    try:
        go.wait()
        if delay is not None:
            try:
                proc.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGKILL)
        proc.wait()
        reader.join()
        err = proc.stderr.read()
    finally:
        watchdog.cancel()
    assert not hung, f"the driver ran past {timeout} s: {lines[-5:]} {err[-3000:]}"
    done = [line for line in lines if line.startswith("DONE")]
    if proc.returncode == -signal.SIGKILL and not done:
        return "killed", {}
    assert proc.returncode in (0, -signal.SIGKILL) and done, \
        (proc.returncode, lines[-5:], err[-3000:])
    return "done", {"work": times["done"] - times["go"],
                    "counts": json.loads(done[0].split(" ", 1)[1])}


def check_consistent(lib: Library) -> dict[str, int]:
    """The invariants a reopened (recovered) library must hold after any crash."""
    docs = {d.doc_id: d for d in lib.documents()}
    rows = lib.chunks_table().to_arrow().select(
        ["id", "doc_id", "version", "chunk_index", "live"]).to_pylist() \
        if lib._chunks_table is not None else []
    keys = [(r["doc_id"], r["version"], r["chunk_index"]) for r in rows]
    assert len(keys) == len(set(keys)), "a chunk was stored twice"
    assert len({r["id"] for r in rows}) == len(rows)
    live: dict[str, list[int]] = {}
    for r in rows:
        doc = docs.get(r["doc_id"])
        assert doc is not None, f"orphan chunk {r['id']}: no such document"
        assert r["version"] in {doc.version, doc.pending_version}, f"orphan version {r['id']}"
        if r["live"]:
            assert r["version"] == doc.version, f"live chunk of an unrecorded version {r['id']}"
            live.setdefault(doc.doc_id, []).append(r["chunk_index"])
    states = {"ready": 0, "resumable": 0}
    for doc in docs.values():
        indices = sorted(live.get(doc.doc_id, []))
        if doc.status == READY:
            assert not doc.pending_version, doc
            assert indices == list(range(doc.chunks)), f"{doc.name}: incomplete live set"
            states["ready"] += 1
        else:
            # Not ready: resumable by the next ingest. Whatever was live before the update
            # (an older version) is still whole.
            assert doc.status == INDEXING and doc.pending_version, doc
            if doc.version:
                assert indices == list(range(doc.chunks)), f"{doc.name}: old version damaged"
            else:
                assert not indices
            states["resumable"] += 1
    # Search works, in each of its modes (a failing full-text search is logged and returns
    # nothing, so hybrid hits alone could hide it), and sees live chunks only.
    if live:
        for mode in ("hybrid", "vector", "fts"):
            results = hybrid_search(lib, "widget report guide memo alpha passages", k=5, mode=mode)
            assert results, f"{mode} search found nothing in a library with live chunks"
            assert all(r.doc_id in live and r.chunk_index in live[r.doc_id] for r in results)
    return states


def chunk_sets(lib: Library) -> dict[str, set[tuple[int, str]]]:
    out: dict[str, set[tuple[int, str]]] = {}
    for doc in lib.documents():
        out[doc.name] = {(c["chunk_index"], c["text"]) for c in lib.document_chunks(doc.doc_id)}
    return out


KILL_POINTS = ["add", "update", "delete", "put", "optimize"]
KILLS = 20
TRIES = 8  # runs per kill at most; one that ends first only means its moment came too late


def test_kill_9_at_20_random_moments(tmp_path):
    seed = int(os.environ.get("FOLIO_CRASH_SEED", random.SystemRandom().randrange(10**6)))
    print(f"crash test seed: {seed} (rerun with FOLIO_CRASH_SEED={seed})")
    rng = random.Random(seed)
    folder = tmp_path / "docs"
    make_folder(folder, rng)
    embedder = HashEmbedder()

    # Kill moments are drawn from the last run that finished: a delay within its work (GO to
    # DONE), or the Nth of a kind of commit it made, so they spread over what a run does. A
    # clean ingest of the whole folder sizes the first.
    how, last = run_driver(tmp_path / "probe", folder, embedder="hash")
    assert how == "done"

    library = tmp_path / "crashed"
    kills: list[str] = []
    finished: list[str] = []  # runs that ended before their kill moment
    seen_states = {"ready": 0, "resumable": 0}
    edits = 0
    for kill in range(KILLS):
        for attempt in range(TRIES):
            # Each draw has its own stream, so a seed replays the same moments however
            # many earlier runs ended first.
            draw = random.Random(f"{seed}:{kill}:{attempt}")
            if kill % 2:
                if kill == 1 and attempt == 0:  # the first lands mid-staging: a half-indexed
                    point = "add:2"             # document is seen at least once
                else:
                    kinds = sorted(k for k in KILL_POINTS if last["counts"].get(k))
                    kind = draw.choice(kinds)
                    point = f"{kind}:{draw.randint(1, last['counts'][kind])}"
                how, info = run_driver(library, folder, embedder="hash", crash_at=point)
                label = f"at {point}"
            else:
                delay = draw.uniform(0.0, last["work"])
                how, info = run_driver(library, folder, embedder="hash", delay=delay)
                label = f"after {delay:.2f}s"
            lib = Library.open(library, embedder)
            states = check_consistent(lib)
            lib.close()
            change_some(folder, draw, edits)  # keep work for the next kill, replacements too
            edits += 1
            if how == "killed":
                kills.append(f"kill {kill + 1}: {label}, then {states}")
                for k, v in states.items():
                    seen_states[k] += v
                break
            assert states["resumable"] == 0, (label, states)  # a finished run left all ready
            finished.append(f"kill {kill + 1}, try {attempt + 1}: {label} came after the end")
            last = info
        else:
            raise AssertionError(f"kill {kill + 1}: {TRIES} runs in a row ended before their "
                                 f"kill moment: {finished[-TRIES:]}")
    print("\n".join(kills + finished))
    assert len(kills) == KILLS  # exactly 20 real SIGKILLs, each mid-ingest
    assert seen_states["resumable"] > 0  # some kills did leave a document half-indexed

    # The next ingest completes; the result equals one clean ingest of the same folder.
    assert run_driver(library, folder, embedder="hash")[0] == "done"
    lib = Library.open(library, embedder)
    assert check_consistent(lib)["resumable"] == 0
    clean = Library.open(tmp_path / "clean", embedder)
    summary = IngestSummary()
    for _ in ingest(clean, [folder], IngestOptions(batch_size=BATCH), summary=summary):
        pass
    assert not summary.failed
    assert lib.chunk_count() == clean.chunk_count() == lib.chunk_count(live_only=False)
    assert chunk_sets(lib) == chunk_sets(clean)
    assert all(d.status == READY for d in lib.documents())


def test_kill_9_with_the_real_embedder(tmp_path, embedder):
    """The same with the real embedder in the killed process, killed right after the live
    flip and before the document rows record it (tests/test_ingest.py kills one mid-staging)."""
    crash_at = "update:1"
    folder = tmp_path / "docs"
    folder.mkdir()
    make_pdf(folder / "a.pdf", long_pages(8, "alpha"))
    make_docx(folder / "b.docx", {f"Part {j}": [LOREM * 3] for j in range(4)})
    (folder / "c.md").write_text("# C\n\n" + LOREM * 10, "utf-8")
    library = tmp_path / "crashed"
    assert run_driver(library, folder, embedder="real", crash_at=crash_at)[0] == "killed"
    lib = Library.open(library, embedder)
    states = check_consistent(lib)
    # The flip committed before the kill: recover() recorded it, so that document is ready.
    assert states["ready"] >= 1
    lib.close()  # the next writer is another process
    assert run_driver(library, folder, embedder="real")[0] == "done"
    lib = Library.open(library, embedder)
    assert check_consistent(lib) == {"ready": 3, "resumable": 0}
    clean = Library.open(tmp_path / "clean", embedder)
    for _ in ingest(clean, [folder], IngestOptions(batch_size=BATCH)):
        pass
    assert chunk_sets(lib) == chunk_sets(clean)
    assert lib.chunk_count() == lib.chunk_count(live_only=False) == clean.chunk_count()


# --- the chat database: kill -9 during a burst of saves ----------------------------------------

CHAT_OPS = textwrap.dedent('''
    from app.core.chat.history import Source

    def chat_ops(store):
        """Every chat write the app makes, one transaction per step, forever; yields after
        each step. Deterministic, so a test can replay it to any step."""
        frozen = store.create_chat("frozen")
        store.add_message(frozen.id, "user", "What is WAL?")
        store.add_message(frozen.id, "assistant", "Write-ahead logging [1].",
                          sources=[Source(1, "/docs/sqlite.pdf", page=3, section="WAL")])
        chat = store.create_chat("burst")
        store.add_message(chat.id, "user", "first question")
        store.add_message(chat.id, "assistant", "first answer [1]",
                          sources=[Source(1, "/docs/a.pdf", page=1)])
        yield "setup"
        i = 0
        while True:
            q = store.add_message(chat.id, "user", f"question {i} " + "q" * 400)
            yield "add"
            a = store.start_answer(chat.id, meta={"model": "starter"})
            yield "start"
            store.update_answer(a.id, f"answer {i} so far")
            yield "stream"
            store.update_answer(a.id, f"answer {i} so far, and more")
            yield "stream"
            store.finish_answer(a.id, f"answer {i} [1] " + "a" * 400,
                                sources=[Source(1, f"/docs/{i}.pdf", page=i + 1)])
            yield "finish"
            store.rename_chat(chat.id, f"burst {i}")
            yield "rename"
            if i % 3 == 2:  # edit and resend the question: its old answer goes
                store.edit_message(q.id, f"question {i}, edited")
                yield "edit"
                a = store.start_answer(chat.id)
                yield "start"
                store.update_answer(a.id, f"answer {i} to the edit, partly")
                yield "stream"
                store.finish_answer(a.id, f"answer {i} to the edit")
                yield "finish"
            if i % 4 == 3:  # regenerate the last answer
                store.truncate_after(q.id)
                yield "regenerate"
                a = store.start_answer(chat.id)
                yield "start"
                store.finish_answer(a.id, f"answer {i} again")
                yield "finish"
            store.update_chat(chat.id, settings={"temperature": i / 100})
            yield "settings"
            i += 1
''')

CHAT_CHILD = CHAT_OPS + textwrap.dedent('''
    import os, signal, sys
    from app.core.chat.history import ChatStore
    store = ChatStore(sys.argv[1])
    stop_after = int(os.environ.get("KILL_AFTER_STEP", "0"))
    for step, name in enumerate(chat_ops(store), 1):
        print("STEP", step, name, flush=True)
        if step == stop_after:
            os.kill(os.getpid(), signal.SIGKILL)
''')


def chat_state(store) -> list:
    """Everything a user sees of the chats; an answer still streaming counts as interrupted
    (that is what reopening the database after a crash makes of it)."""
    out = []
    for chat in sorted(store.list_chats(), key=lambda c: c.id):
        msgs = [(m.position, m.role, m.content,
                 "interrupted" if m.status == "streaming" else m.status,
                 [(s.n, s.path, s.page, s.section) for s in m.sources])
                for m in store.messages(chat.id)]
        out.append((chat.title, chat.settings, msgs))
    return out


def reference_states(folder: Path, wanted: set[int]) -> dict[int, list]:
    """The chat state after each of the `wanted` step counts, by replaying the same writes
    once in this process."""
    from app.core.chat.history import ChatStore

    namespace: dict = {}
    exec(CHAT_OPS, namespace)  # noqa: S102 - the very code the child runs
    states = {}
    folder.mkdir(parents=True, exist_ok=True)
    with ChatStore(folder / "reference.sqlite") as store:
        for step, _ in enumerate(namespace["chat_ops"](store), 1):
            if step in wanted:
                states[step] = chat_state(store)
            if step >= max(wanted):
                break
    return states


def test_kill_9_during_a_burst_of_chat_saves(tmp_path):
    """Killed at random moments while a chat is appended to, streamed into, renamed, edited
    and regenerated: the database opens sound, holds exactly what the last committed write
    left (the write in flight is all or nothing), the frozen chat is intact, and an answer
    caught streaming is marked interrupted."""
    import sqlite3

    from app.core.chat.history import ChatStore

    seed = int(os.environ.get("FOLIO_CRASH_SEED", random.SystemRandom().randrange(10**6)))
    print(f"chat crash seed: {seed}")
    rng = random.Random(seed)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    kills = [("delay", rng.uniform(0.0, 0.4)) for _ in range(6)]
    kills += [("step", 3), ("step", 22)]  # mid-stream (after "start"), right after an edit
    reached = []
    for n, (mode, value) in enumerate(kills):
        db = tmp_path / f"chats{n}.sqlite"
        proc = subprocess.Popen(
            [sys.executable, "-c", CHAT_CHILD, str(db)], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, cwd=ROOT,
            env={**env, "KILL_AFTER_STEP": str(value if mode == "step" else 0)},
        )
        watchdog = threading.Timer(60, proc.kill)
        watchdog.start()
        steps = 0
        killer = None
        for line in proc.stdout:
            parts = line.split()
            if line.endswith("\n") and len(parts) == 3 and parts[0] == "STEP":
                steps = int(parts[1])
                if mode == "delay" and killer is None:  # the clock starts once set up
                    killer = threading.Timer(value, proc.send_signal, [signal.SIGKILL])
                    killer.start()
        proc.wait()
        watchdog.cancel()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read()[-2000:]

        conn = sqlite3.connect(db)
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        conn.close()
        with ChatStore(db) as store:
            after = chat_state(store)
            streaming = [m for c in store.list_chats() for m in store.messages(c.id)
                         if m.status == "streaming"]
            assert not streaming  # reopening marked them interrupted
            store.add_message(store.list_chats()[0].id, "user", "still writable")
        reached.append((mode, value, steps, after))

    wanted = {s for _, _, steps, _ in reached for s in (steps, steps + 1) if s}
    states = reference_states(tmp_path / "reference", wanted)
    for mode, value, steps, after in reached:
        # The last step the child reported, or the one after it (committed, not yet printed).
        assert steps >= 1, f"killed before the chats were set up ({mode} {value})"
        assert after in (states[steps], states[steps + 1]), f"{mode} {value}: step {steps}"
        frozen = after[0]
        assert frozen[0] == "frozen" and [m[2] for m in frozen[2]] == [
            "What is WAL?", "Write-ahead logging [1]."]
        assert frozen[2][1][4] == [(1, "/docs/sqlite.pdf", 3, "WAL")]
        if mode == "step" and value == 3:
            assert after[1][2][-1][1:4] == ("assistant", "", "interrupted")
    reached = [(mode, value, steps) for mode, value, steps, _ in reached]
    print("chat kills after steps:", reached)
