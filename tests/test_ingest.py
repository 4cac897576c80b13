"""The ingest pipeline end to end: real files, the real embedder, a real LanceDB library."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from docgen import long_pages, make_docx, make_pdf, unreadable_file

from app.core.index import ingest as ingest_mod
from app.core.index.ingest import IngestOptions, IngestSummary, discover, ingest
from app.core.index.library import FAILED, READY, Library
from app.core.index.search import hybrid_search

ROOT = Path(__file__).resolve().parents[1]


def run(lib, paths, **kw):
    summary = IngestSummary()
    events = list(ingest(lib, paths, IngestOptions(**kw), summary=summary))
    return summary, events


@pytest.fixture
def lib(library_dir, embedder):
    return Library.open(library_dir, embedder)


@pytest.fixture
def mixed_folder(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    make_pdf(folder / "manual.pdf", [
        "Installing the widget. Unpack the archive and run the installer as administrator.",
        "Calibrating the widget. Turn the blue dial until the green lamp stops blinking.",
        "Troubleshooting. If the widget hums loudly, the fan filter needs cleaning.",
    ], toc=[[1, "Installing", 1], [1, "Calibrating", 2], [1, "Troubleshooting", 3]],
        title="Widget Manual", author="ACME")
    make_docx(folder / "notes.docx", {
        "Budget": ["The travel budget for 2026 is forty thousand euros."],
        "Team": ["Maria leads the calibration team in Lisbon."],
    }, title="Planning notes")
    (folder / "readme.md").write_text("# Readme\n\nThe widget ships with a spare fuse.\n")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\n this is not really a pdf \x00\x01\x02")
    (folder / "empty.txt").write_bytes(b"")
    (folder / ".hidden.md").write_text("# Hidden\n\nsecret\n")
    return folder


def test_ingest_folder_with_bad_files(lib, mixed_folder):
    summary, events = run(lib, [mixed_folder])
    assert summary.files == 5  # the hidden file is not picked up
    assert summary.ingested == 3
    failed = {Path(f["path"]).name: f["reason"] for f in summary.failed}
    assert set(failed) == {"broken.pdf", "empty.txt"}
    assert "empty" in failed["empty.txt"]
    assert "pdf" in failed["broken.pdf"].lower()
    docs = {d.name: d for d in lib.documents()}
    assert docs["manual.pdf"].status == READY and docs["manual.pdf"].pages == 3
    assert docs["manual.pdf"].title == "Widget Manual"
    assert docs["broken.pdf"].status == FAILED and docs["broken.pdf"].error
    assert events[0].kind == "start" and events[-1].kind == "done"
    assert events[-1].files_done == 5
    file_events = [e for e in events if e.kind == "file"]
    assert len(file_events) == 5


def test_search_cites_the_right_page_and_section(lib, mixed_folder):
    run(lib, [mixed_folder])
    [hit] = hybrid_search(lib, "the lamp keeps flashing, how do I adjust it?", k=1)
    assert hit.path.endswith("manual.pdf")
    assert hit.page == 2
    assert "Calibrating" in hit.section
    [hit] = hybrid_search(lib, "how much money can we spend on trips", k=1)
    assert hit.path.endswith("notes.docx") and hit.page is None
    assert "Budget" in hit.section


def test_unchanged_files_are_skipped(lib, mixed_folder):
    run(lib, [mixed_folder])
    versions = len(lib.chunks_table().list_versions())
    chunks = lib.chunk_count()
    summary, _ = run(lib, [mixed_folder / "manual.pdf", mixed_folder / "notes.docx"])
    assert summary.skipped == 2 and summary.ingested == 0
    assert lib.chunk_count() == chunks
    assert len(lib.chunks_table().list_versions()) == versions
    # touched but identical content: hashed, still skipped
    os.utime(mixed_folder / "manual.pdf", (1, 1))
    summary, _ = run(lib, [mixed_folder / "manual.pdf"])
    assert summary.skipped == 1


def test_changed_file_replaces_its_chunks(lib, tmp_path):
    path = tmp_path / "memo.md"
    path.write_text("# Memo\n\nThe meeting is on Tuesday in room 12.\n")
    run(lib, [path])
    path.write_text("# Memo\n\nThe meeting moved to Friday in the library hall.\n")
    summary, _ = run(lib, [path])
    assert summary.ingested == 1
    texts = [r.text for r in hybrid_search(lib, "when is the meeting", k=10)]
    assert any("Friday" in t for t in texts)
    assert not any("Tuesday" in t for t in texts)
    assert lib.chunk_count(live_only=False) == lib.chunk_count()


def test_broken_update_keeps_the_old_version(lib, tmp_path):
    path = tmp_path / "guide.pdf"
    make_pdf(path, ["The secret ingredient is cardamom."])
    run(lib, [path])
    path.write_bytes(b"%PDF-1.4 garbage")
    summary, _ = run(lib, [path])
    assert len(summary.failed) == 1
    doc = lib.get(path)
    assert doc.status == FAILED and doc.error
    assert "cardamom" in hybrid_search(lib, "secret ingredient", k=1)[0].text


def test_remove_document(lib, mixed_folder):
    run(lib, [mixed_folder])
    doc = lib.get(mixed_folder / "manual.pdf")
    lib.remove(doc)
    assert all(not r.path.endswith("manual.pdf") for r in hybrid_search(lib, "widget dial", k=10))
    assert lib.get(mixed_folder / "manual.pdf") is None


def test_collections(lib, mixed_folder, tmp_path):
    run(lib, [mixed_folder / "manual.pdf"], collection="hardware")
    run(lib, [mixed_folder / "notes.docx"], collection="admin")
    hits = hybrid_search(lib, "widget", k=10, collections=["admin"])
    assert hits and all(h.path.endswith("notes.docx") for h in hits)
    # adding an unchanged file to another collection does not re-embed it
    summary, _ = run(lib, [mixed_folder / "manual.pdf"], collection="admin")
    assert summary.skipped == 1
    assert lib.get(mixed_folder / "manual.pdf").collections == ["admin", "hardware"]


def test_include_exclude_and_symlink_loop(tmp_path):
    root = tmp_path / "tree"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "one.md").write_text("x")
    (root / "a" / "b" / "two.txt").write_text("x")
    (root / "a" / "b" / "three.pdf").write_bytes(b"x")
    (root / "a" / "b" / "loop").symlink_to(root / "a")
    (root / ".git").mkdir()
    (root / ".git" / "config.txt").write_text("x")
    files, problems = discover([root])
    assert sorted(f.name for f in files) == ["one.md", "three.pdf", "two.txt"]
    assert problems == []
    files, _ = discover([root], include=["*.md", "*.txt"], exclude=["two.*"])
    assert [f.name for f in files] == ["one.md"]
    files, problems = discover([root / "missing.pdf", root / "a" / "one.md"])
    assert [f.name for f in files] == ["one.md"]
    assert problems[0][1] == "no such file or folder"


def test_unsupported_and_missing_files_fail_alone(lib, tmp_path):
    good = tmp_path / "good.txt"
    good.write_text("A perfectly good note about tomatoes.")
    odd = tmp_path / "picture.xyz"
    odd.write_bytes(b"\x89PNG")
    summary, _ = run(lib, [good, odd, tmp_path / "gone.pdf"])
    assert summary.ingested == 1
    reasons = {Path(f["path"]).name: f["reason"] for f in summary.failed}
    assert reasons["picture.xyz"].startswith("unsupported file type")
    assert reasons["gone.pdf"] == "no such file or folder"
    assert lib.get(odd).status == FAILED


def test_vanished_and_unreadable_files(lib, tmp_path, embedder):
    from app.core.documents.splitter import Splitter

    gone = tmp_path / "gone.txt"
    splitter = Splitter()
    item = ingest_mod._prepare(lib, gone, IngestOptions(), splitter, "fp")
    assert item.status == FAILED and item.message == "the file no longer exists"

    locked = unreadable_file(tmp_path)
    summary, _ = run(lib, [locked])
    assert [f["reason"] for f in summary.failed] == ["permission denied"]


def test_encrypted_pdf_is_reported(lib, tmp_path):
    import pymupdf

    path = tmp_path / "secret.pdf"
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 72), "classified")
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="pw", owner_pw="own")
    doc.close()
    summary, _ = run(lib, [path])
    assert "encrypted" in summary.failed[0]["reason"].lower()


def test_progress_events_and_cancel_then_resume(lib, tmp_path, library_dir, embedder):
    pdf = make_pdf(tmp_path / "big.pdf", long_pages(12, "resume"))
    cancel = threading.Event()
    summary = IngestSummary()
    events = []
    for ev in ingest(lib, [pdf], IngestOptions(batch_size=4), cancel=cancel, summary=summary):
        events.append(ev)
        if ev.kind == "batch" and ev.chunks_done >= 8:
            cancel.set()
    assert events[-1].kind == "cancelled" and summary.cancelled
    batches = [e for e in events if e.kind == "batch"]
    assert batches[-1].rate > 0 and batches[-1].eta is not None
    staged = lib.chunk_count(live_only=False)
    assert staged >= 8 and lib.chunk_count() == 0  # nothing half-visible
    # Resume: only the missing chunks are embedded.
    calls = []
    real = embedder.embed_documents
    lib2 = Library.open(library_dir, embedder)
    try:
        embedder.embed_documents = lambda texts: calls.append(len(texts)) or real(texts)
        summary2, _ = run(lib2, None, batch_size=4)
    finally:
        del embedder.embed_documents
    total = lib2.get(pdf).chunks
    assert summary2.ingested == 1
    assert sum(calls) == total - staged
    assert lib2.chunk_count() == total == lib2.chunk_count(live_only=False)


CRASH_SCRIPT = textwrap.dedent("""
    import sys
    from app.core.index.library import Library
    from app.core.index.ingest import ingest, IngestOptions
    lib = Library.open(sys.argv[1])
    for ev in ingest(lib, [sys.argv[2]], IngestOptions(batch_size=4)):
        if ev.kind == "batch":
            print("BATCH", ev.chunks_done, flush=True)
""")


def test_kill_9_mid_ingest_then_resume(tmp_path, embedder):
    """A real process killed with SIGKILL mid-document: the next run completes it, with the
    same chunks as one clean ingest, and no duplicates or orphans."""
    folder = tmp_path / "docs"
    folder.mkdir()
    make_pdf(folder / "a.pdf", long_pages(10, "alpha"))
    make_pdf(folder / "b.pdf", long_pages(10, "beta"))
    crashed = tmp_path / "crashed"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", CRASH_SCRIPT, str(crashed), str(folder)],
                            stdout=subprocess.PIPE, text=True, env=env)
    seen = 0
    for line in proc.stdout:
        if line.startswith("BATCH"):
            seen += 1
            if seen == 3:
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    lib = Library.open(crashed, embedder)  # recovers on open
    # Three batches of 4 were staged before the kill; each document is either published
    # whole or still indexing with its staged chunks kept for the resume.
    assert lib.chunk_count(live_only=False) >= 12
    for doc in lib.documents():
        if doc.status == READY:
            assert doc.chunks == len(lib.document_chunks(doc.doc_id))
        else:
            assert doc.status == "indexing" and doc.pending_version
    summary, _ = run(lib, [folder])
    assert not summary.failed

    clean = Library.open(tmp_path / "clean", embedder)
    run(clean, [folder])
    assert lib.chunk_count() == clean.chunk_count()
    assert lib.chunk_count(live_only=False) == lib.chunk_count()
    ids = lib.chunks_table().to_arrow().column("id").to_pylist()
    assert len(ids) == len(set(ids))
    assert {d.name: d.chunks for d in lib.documents()} == {
        d.name: d.chunks for d in clean.documents()}
    assert all(d.status == READY for d in lib.documents())
