"""A library on a disk that fills up mid-ingest (a real tmpfs, see fixtures_disk.py): the run
ends with a clear DiskFull error, the documents already indexed stay ready and searchable, the
one being indexed is failed with no live chunks and continues where it stopped once there is
room. Also: within-file progress events while a file is embedded in several batches."""

from __future__ import annotations

import errno

import pytest
from fixtures_disk import small_disk_at

from app.core.index.ingest import IngestOptions, IngestSummary, ingest
from app.core.index.library import FAILED, INDEXING, READY, DiskFull, Library, is_disk_full
from app.core.index.search import hybrid_search

HARBOUR = " ".join(f"Sentence {i} tells how harbour crane number {i} lifts containers onto "
                   f"ship {i * 7} at dawn, weighing {i * 13} tonnes." for i in range(1200))
GARDEN = ("Watering. Water tomato plants deeply twice a week, early in the morning.\n\n"
          "Pruning. Remove the side shoots of tomatoes when they are five centimetres long.\n")


@pytest.fixture
def small_disk(request, tmp_path):
    """A 24 MiB tmpfs (fixtures_disk.py); None when the test ran in a child process that
    could mount one (the test then returns at once: the child passed)."""
    yield from small_disk_at(request, tmp_path / "disk", 24)


def run(lib, paths, **kw):
    summary = IngestSummary()
    events = []
    try:
        for ev in ingest(lib, paths, IngestOptions(**kw), summary=summary):
            events.append(ev)  # noqa: PERF402  (keep the events before the error)
    except DiskFull as exc:
        return summary, events, exc
    return summary, events, None


def test_progress_within_a_file_rises_batch_by_batch(tmp_path, hash_embedder):
    doc = tmp_path / "harbour.txt"
    doc.write_text(HARBOUR, "utf-8")
    lib = Library.open(tmp_path / "library", hash_embedder)
    summary, events, error = run(lib, [doc], batch_size=16)
    assert error is None and summary.ingested == 1
    mine = [e for e in events if e.path == str(doc) and e.kind in ("file_start", "progress")]
    assert mine[0].kind == "file_start" and mine[0].file_done == 0
    total = lib.get(doc).chunks
    assert total > 16 * 3  # several batches
    progress = [e for e in mine if e.kind == "progress"]
    assert len(progress) == -(-total // 16)
    done = [e.file_done for e in progress]
    assert done == sorted(done) and len(set(done)) == len(done)  # strictly rising
    assert all(e.file_total == total for e in mine)
    assert done[-1] == total and 0 < done[0] < total
    # "progress" for the file comes before its "file" ready event.
    kinds = [e.kind for e in events if e.path == str(doc)]
    assert kinds.index("file") > max(i for i, k in enumerate(kinds) if k == "progress")


def test_is_disk_full_reads_errno_and_lance_messages():
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(RuntimeError("LanceError(IO): No space left on device (os error 28)"))
    try:
        try:
            raise OSError(errno.ENOSPC, "full")
        except OSError as inner:
            raise ValueError("commit failed") from inner
    except ValueError as outer:
        assert is_disk_full(outer)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(ValueError("bad value"))


def test_disk_full_mid_ingest_keeps_the_library_and_resumes(small_disk, tmp_path, hash_embedder):
    if small_disk is None:
        return  # ran, and passed, in a mount namespace of its own (fixtures_disk.py)
    docs = tmp_path / "docs"
    docs.mkdir()
    garden = docs / "garden.txt"
    garden.write_text(GARDEN, "utf-8")
    harbour = docs / "harbour.txt"
    harbour.write_text(HARBOUR, "utf-8")
    root = small_disk.root / "library"

    lib = Library.open(root, hash_embedder)
    summary, _events, error = run(lib, [garden], batch_size=16)
    assert error is None and lib.get(garden).status == READY
    garden_chunks = lib.chunk_count()
    assert garden_chunks > 0

    small_disk.fill(leave=LEAVE)
    summary, events, error = run(lib, [harbour], batch_size=16)
    assert error is not None, "the disk never filled up: raise HARBOUR's size or lower LEAVE"
    assert isinstance(error, DiskFull)
    text = str(error)
    assert "Disk full while indexing harbour.txt" in text and "Free some space" in text
    assert str(root) in text
    staged = [e for e in events if e.kind == "progress" and e.path == str(harbour)]
    assert staged, "no batch of harbour.txt was stored before the disk filled: lower LEAVE"
    failed = [e for e in events if e.kind == "file" and e.path == str(harbour)]
    assert failed and failed[-1].status == FAILED and "disk is full" in failed[-1].message
    assert summary.failed and summary.failed[0]["path"] == str(harbour)

    def check_intact(lib):
        assert lib.get(garden).status == READY
        assert lib.chunk_count() == garden_chunks  # nothing of harbour.txt is live
        hits = hybrid_search(lib, "water tomato plants", k=3)
        assert hits and {h.path for h in hits} == {str(garden)}
        assert not hybrid_search(lib, "harbour crane containers", k=3, documents=[str(harbour)])
        record = lib.get(harbour)
        assert record is not None and record.status in (FAILED, INDEXING)
        assert record.pending_version  # resumable: its stored batches are kept
        assert lib.chunk_count(live_only=False) > garden_chunks

    check_intact(lib)
    # Reopening the library on the still-full disk works and sees the same.
    check_intact(Library.open(root, hash_embedder))

    small_disk.make_room()
    lib = Library.open(root, hash_embedder)
    summary, events, error = run(lib, None, batch_size=16)  # no paths: resume the unfinished
    assert error is None and summary.ingested == 1, summary
    start = next(e for e in events if e.kind == "file_start" and e.path == str(harbour))
    assert start.file_done == len(staged) * 16  # continued, not started over
    record = lib.get(harbour)
    assert record.status == READY and not record.pending_version
    assert lib.chunk_count() == garden_chunks + record.chunks
    hits = hybrid_search(lib, "harbour crane containers", k=3)
    assert hits and hits[0].path == str(harbour)
    assert lib.get(garden).status == READY


LEAVE = 400_000


def test_disk_full_while_recording_unsupported_files_is_a_clear_error(small_disk, tmp_path,
                                                                      hash_embedder):
    """The first write of a run records the named files that cannot be added (here an
    unsupported type). A disk that is already full there must end the run with the same clear
    DiskFull message, not a raw LanceDB error, and leave the library as it was."""
    if small_disk is None:
        return  # ran, and passed, in a mount namespace of its own (fixtures_disk.py)
    docs = tmp_path / "docs"
    docs.mkdir()
    garden = docs / "garden.txt"
    garden.write_text(GARDEN, "utf-8")
    odd = docs / "notes.xyz"  # named explicitly, so it fails with a record of why
    odd.write_text("Not a type Folio reads.\n", "utf-8")
    later = docs / "later.txt"
    later.write_text("Harvest the beans when the pods snap cleanly.\n", "utf-8")
    root = small_disk.root / "library"
    lib = Library.open(root, hash_embedder)
    summary, _events, error = run(lib, [garden])
    assert error is None and lib.get(garden).status == READY
    garden_chunks = lib.chunk_count()

    small_disk.fill(leave=0)
    writes = []
    real_put = lib.put_documents

    def put_documents(docs_):
        writes.append([d.name for d in docs_])
        return real_put(docs_)

    lib.put_documents = put_documents
    summary, events, error = run(lib, [odd, later])
    assert isinstance(error, DiskFull), "the disk never filled up"
    assert writes == [["notes.xyz"]]  # it was the unsupported file's record that hit the wall
    assert "Disk full while recording the files that could not be added" in str(error)
    assert "Free some space" in str(error) and str(root) in str(error)
    assert isinstance(error.__cause__, Exception) and is_disk_full(error.__cause__)
    assert not any(e.path == str(later) for e in events)  # nothing else was attempted

    for reopened in (lib, Library.open(root, hash_embedder)):
        assert [d.name for d in reopened.documents()] == ["garden.txt"]
        assert reopened.get(garden).status == READY
        assert reopened.chunk_count() == reopened.chunk_count(live_only=False) == garden_chunks
        assert hybrid_search(reopened, "water tomato plants", k=1)

    small_disk.make_room()
    lib = Library.open(root, hash_embedder)
    summary, _events, error = run(lib, [odd, later])
    assert error is None and summary.ingested == 1
    assert lib.get(odd).status == FAILED and "unsupported file type" in lib.get(odd).error
    assert lib.get(later).status == READY
