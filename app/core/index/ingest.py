"""Files and folders into the library: discover -> hash -> skip if unchanged -> load -> split ->
embed (batched) -> stage -> publish.

A producer thread loads and splits files while the caller's thread embeds, so the embedder,
the slow part, is never idle waiting for PyMuPDF. `ingest()` is a generator of progress events;
it honours a cancel flag between batches. Work is staged in batches as it goes, so a run that
dies (or is cancelled) is continued by the next run over the same files, which embeds only
the chunks that were not written yet.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from app.core.base.errors import RemoteError
from app.core.base.files import sha256_file
from app.core.documents.base import DEFAULT_FILE_TIME_LIMIT, Chunk, Deadline, LoadError
from app.core.documents.formats import BAD_NAME_REASON, displayable_path, is_supported, load
from app.core.documents.splitter import Splitter, SplitterConfig
from app.core.index.library import (
    FAILED,
    INDEXING,
    READY,
    DiskFull,
    DocumentRecord,
    Library,
    doc_id_for,
    is_disk_full,
)

log = logging.getLogger(__name__)

# Bump when loaders or the splitter change what they produce, so resumes never mix outputs.
PIPELINE_VERSION = "1"
EMBED_BATCH = 256  # chunks per embed call and per LanceDB commit
# Seconds past the per-file time limit after which a file whose loader has not returned counts
# as hung (stuck in one call that never reaches a deadline checkpoint) and is failed, so the
# rest of the batch goes on. Generous: a checkpoint can be one slow page (OCR) away.
STALL_GRACE = 60.0


@dataclass(slots=True)
class IngestOptions:
    collection: str | None = None
    include: Sequence[str] = ()  # glob patterns on file name or relative path; empty = all
    exclude: Sequence[str] = ()
    ocr: bool | None = None  # None: OCR scanned pages when Tesseract is installed
    force: bool = False  # re-index even when the file is unchanged
    splitter: SplitterConfig = field(default_factory=SplitterConfig)
    optimize: bool = True  # compact the tables when the run ends
    batch_size: int = EMBED_BATCH  # chunks per embed call and LanceDB commit
    time_limit: float | None = DEFAULT_FILE_TIME_LIMIT  # seconds to load + split one file
    stall_grace: float = STALL_GRACE  # past time_limit, a file still loading counts as hung


@dataclass(slots=True)
class IngestEvent:
    """One progress report. `kind` is one of: start, file_start, progress, batch, file,
    done, cancelled.

    For kind "file", `status` says what happened to `path`: ready, skipped or failed
    (with `message` holding the reason or a warning). "file_start" and "progress" carry the
    progress within `path`: `file_done` of its `file_total` chunks are embedded and stored
    ("progress" follows every batch that held some of its chunks).
    """

    kind: str
    path: str = ""
    status: str = ""
    message: str = ""
    files_total: int = 0
    files_done: int = 0
    chunks_done: int = 0
    pages_done: int = 0
    current: str = ""
    elapsed: float = 0.0
    rate: float = 0.0  # chunks per second
    eta: float | None = None  # seconds
    file_done: int = 0  # chunks of `path` embedded and stored so far
    file_total: int = 0  # chunks of `path` in all


@dataclass(slots=True)
class IngestSummary:
    files: int = 0
    ingested: int = 0
    skipped: int = 0
    failed: list[dict] = field(default_factory=list)
    warnings: list[dict] = field(default_factory=list)
    pages: int = 0
    chunks: int = 0
    seconds: float = 0.0
    cancelled: bool = False

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


# -- discovery --------------------------------------------------------------------------


def _matches(path: Path, base: Path, patterns: Sequence[str]) -> bool:
    try:
        rel = path.relative_to(base).as_posix()
    except ValueError:
        rel = path.name
    return any(fnmatch.fnmatch(path.name, p) or fnmatch.fnmatch(rel, p) for p in patterns)


def discover(
    paths: Iterable[Path | str], include: Sequence[str] = (), exclude: Sequence[str] = ()
) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Expand files and folders into the files to ingest, and the named paths that can't be.

    Folders are walked recursively, following links but never the same folder twice (a
    symlink loop ends there). Hidden files and folders are skipped, as are files Folio
    can't read; a file named explicitly with an unsupported type is reported instead.
    """
    files: list[Path] = []
    problems: list[tuple[Path, str]] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        resolved = path.resolve()
        if resolved not in seen:
            seen.add(resolved)
            files.append(resolved)

    for raw in paths:
        path = Path(raw).expanduser().absolute()
        if path.is_dir():
            visited: set[tuple[int, int]] = set()
            for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
                st = os.stat(dirpath)
                if (st.st_dev, st.st_ino) in visited:
                    log.warning("not following %s: a link back to a folder already walked",
                                displayable_path(dirpath))
                    dirnames.clear()
                    continue
                visited.add((st.st_dev, st.st_ino))
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for name in sorted(filenames):
                    file = Path(dirpath) / name
                    if name.startswith(".") or not is_supported(file) or not file.is_file():
                        continue
                    if include and not _matches(file, path, include):
                        continue
                    if exclude and _matches(file, path, exclude):
                        continue
                    add(file)
        elif path.is_file():
            if not is_supported(path):
                problems.append((path, f"unsupported file type {path.suffix or '(none)'}"))
            else:
                add(path)
        elif path.is_symlink():
            problems.append((path, "broken link: the file it points to does not exist"))
        else:
            problems.append((path, "no such file or folder"))
    return files, problems


def splitter_fingerprint(config: SplitterConfig, embedder_name: str) -> str:
    raw = f"{PIPELINE_VERSION}|{sorted(dataclasses.asdict(config).items())}|{embedder_name}"
    return hashlib.sha1(raw.encode()).hexdigest()[:8]


def version_for(doc_id: str, sha256: str, fingerprint: str) -> str:
    """A chunk version unique to this document, content and pipeline."""
    return hashlib.sha1(f"{doc_id}|{sha256}|{fingerprint}".encode()).hexdigest()[:20]


# -- the producer's work items -----------------------------------------------------------


@dataclass(slots=True)
class _Work:
    doc: DocumentRecord
    version: str
    todo: list[Chunk]  # chunks still to embed (all of them unless resuming)
    total: int
    pages: int
    warnings: list[str]
    sha256: str
    staged: int = 0
    recorded: bool = False  # the document row says "indexing" with this version
    published: bool = False


@dataclass(slots=True)
class _Done:
    """A file that needs no embedding: skipped, or failed with a reason."""

    path: Path
    status: str
    message: str = ""
    doc: DocumentRecord | None = None


class _Cancelled(Exception):
    pass


class _Producer:
    """The loader thread for a list of files: prepares them in order into its own queue.

    The consumer watches it. The per-file time limit is checked at checkpoints (between pages,
    paragraphs, batches), so a file stuck inside one call (MuPDF opening a pathological PDF,
    python-docx parsing, a read from a hung network share) never reaches one. When a file has
    been prepared for longer than the time limit plus `STALL_GRACE`, the consumer abandons this
    producer: a Python thread cannot be stopped from outside, so it is left (a daemon) to
    return or hang on its own, and whatever it returns is discarded; a new producer takes the
    files after the stuck one. A hang that holds the GIL (a native loop that never releases
    it) stops every thread, the watchdog too; only a separate process per file could end that.
    """

    def __init__(self, files: Sequence[Path], prepare, cancel: threading.Event):
        self.files = list(files)
        self._prepare = prepare
        self._cancel = cancel
        self.queue: queue.Queue = queue.Queue(maxsize=8)
        self._abandoned = threading.Event()
        self._guard = threading.Lock()
        self._current: int | None = None  # index in `files` of the file being prepared
        self._since = 0.0
        self.thread = threading.Thread(target=self._run, name="folio-ingest-loader", daemon=True)
        self.thread.start()

    def _put(self, item) -> None:
        if not self._abandoned.is_set():
            self.queue.put(item)

    def _run(self) -> None:
        try:
            for i, path in enumerate(self.files):
                if self._cancel.is_set() or self._abandoned.is_set():
                    break
                with self._guard:
                    self._current, self._since = i, time.monotonic()
                item = self._prepare(path)
                with self._guard:
                    self._current = None
                    if self._abandoned.is_set():
                        return  # given up on: the consumer has failed this file already
                self._put(item)
        except BaseException as exc:  # surface producer bugs in the consumer
            self._put(exc)
        finally:
            self._put(None)

    def remaining(self, limit: float | None) -> float | None:
        """Seconds until the file being prepared counts as hung (None: never)."""
        if limit is None:
            return None
        with self._guard:
            if self._current is None:
                return limit
            return max(0.0, self._since + limit - time.monotonic())

    def stuck(self, limit: float | None) -> tuple[int, list] | None:
        """When the file being prepared has taken longer than `limit` seconds: abandon this
        producer and return that file's index in `files` and what it had prepared before it
        (still valid, in order). Else None."""
        if limit is None:
            return None
        with self._guard:
            if self._current is None or time.monotonic() - self._since <= limit:
                return None
            self._abandoned.set()
            index = self._current
        # Every file before the stuck one was queued before it started: take them all.
        return index, self.drain()

    def stop(self, limit: float | None) -> None:
        """At the end of a run: prepare nothing more; wait for the file in hand only until it
        would count as hung."""
        with self._guard:
            self._abandoned.set()
        self.drain()  # a put blocked on the full queue goes through, then the thread stops
        if self.thread.is_alive():
            self.thread.join(self.remaining(limit))

    def drain(self) -> list:
        items = []
        while True:
            try:
                items.append(self.queue.get_nowait())
            except queue.Empty:
                return items


def _hung_file(lib: Library, path: Path, options: IngestOptions) -> _Done:
    """The failure for a file whose loader never returned (see `_Producer`)."""
    reason = f"took longer than {options.time_limit:g} s to read (the time limit per file)"
    shown = displayable_path(path)
    if shown != str(path):
        return _Done(Path(shown), FAILED, reason)
    doc = lib.get(path) or DocumentRecord(doc_id=doc_id_for(path), path=str(path),
                                          name=path.name)
    if options.collection and options.collection not in doc.collections:
        doc.collections = sorted({*doc.collections, options.collection})
    log.warning("%s: the loader did not return within %g s; going on without it",
                shown, options.time_limit + options.stall_grace)
    return _Done(path, FAILED, reason, doc)


def _prepare(
    lib: Library, path: Path, options: IngestOptions, splitter: Splitter, fingerprint: str
) -> _Work | _Done:
    """Everything before embedding, for one file. Runs on the producer thread."""
    shown = displayable_path(path)
    if shown != str(path):  # the library stores paths as text: fail alone, named readably
        return _Done(Path(shown), FAILED, BAD_NAME_REASON)
    doc_id = doc_id_for(path)
    existing = lib.get(path)
    doc = existing or DocumentRecord(doc_id=doc_id, path=str(path), name=path.name)
    if options.collection and options.collection not in doc.collections:
        doc.collections = sorted({*doc.collections, options.collection})
    try:
        st = path.stat()
        unchanged_stat = existing and st.st_size == existing.size and st.st_mtime == existing.mtime
        if (
            existing
            and existing.status == READY
            and not options.force
            and unchanged_stat
        ):
            return _Done(path, "skipped", "unchanged", doc)
        sha = sha256_file(path)
    except FileNotFoundError:
        return _Done(path, FAILED, "the file no longer exists", doc)
    except PermissionError:
        return _Done(path, FAILED, "permission denied", doc)
    except OSError as exc:
        return _Done(path, FAILED, f"could not read the file: {exc.strerror or exc}", doc)
    doc.size, doc.mtime = st.st_size, st.st_mtime
    if existing and existing.status == READY and existing.sha256 == sha and not options.force:
        return _Done(path, "skipped", "unchanged", doc)
    version = version_for(doc_id, sha, fingerprint)
    try:
        deadline = Deadline(options.time_limit)
        loaded = load(path, ocr=options.ocr, deadline=deadline)
        chunks = splitter.split(loaded, deadline)
    except LoadError as exc:
        return _Done(path, FAILED, str(exc), doc)
    except MemoryError:
        return _Done(path, FAILED, "the file is too large to load", doc)
    except Exception as exc:  # a loader bug must not end the batch
        log.exception("unexpected error loading %s", path)
        return _Done(path, FAILED, f"could not read the file: {exc}", doc)
    if not chunks:
        return _Done(path, FAILED, "no text could be extracted from the file", doc)
    doc.kind, doc.title, doc.author = loaded.kind, loaded.title, loaded.author or ""
    doc.pages, doc.warnings = loaded.pages, list(loaded.warnings)
    todo = chunks
    if existing and existing.pending_version == version:
        done = lib.staged_indices(doc_id, version)
        todo = [c for c in chunks if c.index not in done]
        if done:
            log.info("resuming %s: %d of %d chunks already embedded", path, len(done), len(chunks))
    return _Work(doc, version, todo, len(chunks), loaded.pages or 0, list(loaded.warnings),
                 sha, staged=len(chunks) - len(todo), recorded=bool(existing
                 and existing.pending_version == version))


def ingest(
    lib: Library,
    paths: Iterable[Path | str] | None,
    options: IngestOptions | None = None,
    cancel: threading.Event | None = None,
    summary: IngestSummary | None = None,
) -> Iterator[IngestEvent]:
    """Ingest files and folders, yielding progress events. `paths=None` resumes the
    documents an earlier run left unfinished. Fills `summary` when given."""
    options = options or IngestOptions()
    cancel = cancel or threading.Event()
    summary = summary if summary is not None else IngestSummary()
    started = time.monotonic()

    if paths is None:
        # Unfinished: interrupted, or stopped by an error that kept what it had staged (a
        # full disk), so the next run continues instead of starting over.
        paths = [d.path for d in lib.documents() if d.status in (INDEXING, "queued")
                 or (d.status == FAILED and d.pending_version)]
    files, problems = discover(paths, options.include, options.exclude)
    sizes = {}
    for f in files:
        try:
            sizes[f] = f.stat().st_size
        except OSError:
            sizes[f] = 0
    bytes_total = sum(sizes.values()) or 1
    summary.files = len(files) + len(problems)

    embedder = lib.embedder
    splitter = Splitter(
        options.splitter, limit_counter=embedder.count_tokens, limit_tokens=embedder.max_tokens
    )
    fingerprint = splitter_fingerprint(options.splitter, lib.embedder_name)

    state = {"files_done": 0, "chunks_done": 0, "pages": 0, "bytes_done": 0.0}

    def event(kind: str, **kw) -> IngestEvent:
        elapsed = time.monotonic() - started
        done = state["bytes_done"]
        eta = elapsed * (bytes_total - done) / done if done > 0 else None
        return IngestEvent(
            kind=kind, files_total=summary.files, files_done=state["files_done"],
            chunks_done=state["chunks_done"], pages_done=state["pages"], elapsed=elapsed,
            rate=state["chunks_done"] / elapsed if elapsed > 0 else 0.0,
            eta=None if eta is None else max(0.0, eta), **kw,
        )

    yield event("start")

    # Named paths that are not there or not supported fail on their own.
    failed_docs = []
    for path, reason in problems:
        summary.failed.append({"path": str(path), "reason": reason})
        state["files_done"] += 1
        if path.is_file():  # unsupported type: keep a record so the library shows why
            doc = lib.get(path) or DocumentRecord(doc_id=doc_id_for(path), path=str(path),
                                                  name=path.name)
            doc.status, doc.error = FAILED, reason
            failed_docs.append(doc)
        yield event("file", path=str(path), status=FAILED, message=reason)
    try:
        lib.put_documents(failed_docs)
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        raise DiskFull(lib.root, "recording the files that could not be added") from exc

    def prepare(path: Path) -> _Work | _Done:
        return _prepare(lib, path, options, splitter, fingerprint)

    # Past this many seconds on one file, its loader counts as hung (see _Producer).
    stall = None if options.time_limit is None else options.time_limit + options.stall_grace
    producer = _Producer(files, prepare, cancel)

    pending: list[_Work] = []  # files whose chunks are being embedded, in order
    finished_producing = False
    disk_full: BaseException | None = None
    embed_failed: RemoteError | None = None

    def take(item) -> Iterator[IngestEvent]:
        nonlocal finished_producing
        if item is None:
            finished_producing = True
        elif isinstance(item, BaseException):
            raise item
        elif isinstance(item, _Done):
            yield from _finish_done(lib, item, summary, state, sizes, event)
        else:
            item.doc.status, item.doc.pending_version = INDEXING, item.version
            item.doc.error = ""
            yield event("file_start", path=item.doc.path, current=item.doc.path,
                        file_done=item.staged, file_total=item.total)
            pending.append(item)

    try:
        while True:
            if cancel.is_set():
                raise _Cancelled
            # Take what the producer has ready; block only when there is nothing to embed,
            # and then only until the file being loaded would count as hung.
            while not finished_producing:
                buffered = sum(len(w.todo) for w in pending)
                if buffered >= options.batch_size:
                    break
                try:
                    if pending:
                        item = producer.queue.get_nowait()
                    else:
                        item = producer.queue.get(timeout=producer.remaining(stall))
                except queue.Empty:
                    hung = producer.stuck(stall)
                    if hung is None:
                        if pending:
                            break
                        continue
                    index, ready = hung
                    path, rest = producer.files[index], producer.files[index + 1:]
                    producer = _Producer(rest, prepare, cancel)
                    for item in [*ready, _hung_file(lib, path, options)]:
                        yield from take(item)
                    continue
                yield from take(item)
            if not pending:
                if finished_producing:
                    break
                continue
            yield from _embed_batch(lib, pending, options.batch_size, summary, state, sizes, event)
            pending = [w for w in pending if not w.published]
    except _Cancelled:
        summary.cancelled = True
    except RemoteError as exc:  # a provider's embedder stopped answering: nothing more embeds
        embed_failed = exc
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        disk_full = exc
    finally:
        producer.stop(stall)
        summary.seconds = round(time.monotonic() - started, 3)
        summary.pages = state["pages"]
        summary.chunks = state["chunks_done"]
        if options.optimize and disk_full is None:
            try:
                lib.optimize()
            except Exception as exc:  # compaction loses nothing: it is retried next run
                if not is_disk_full(exc):
                    raise
                log.warning("disk full: the library was not compacted: %s", exc)
    if disk_full is not None:
        yield from _stop_unfinished(lib, pending, summary, state, event, DISK_FULL_REASON)
        name = Path(pending[0].doc.path).name if pending else "the library"
        raise DiskFull(lib.root, f"indexing {name}") from disk_full
    if embed_failed is not None:
        yield from _stop_unfinished(lib, pending, summary, state, event,
                                    f"{embed_failed} Add it again once the embedder answers; "
                                    f"it continues from where it stopped.")
        raise embed_failed
    yield event("cancelled" if summary.cancelled else "done")


DISK_FULL_REASON = ("the disk is full: free some space and add it again; it continues from "
                    "where it stopped")


def _stop_unfinished(lib, pending: list[_Work], summary, state, event,
                     reason: str) -> Iterator[IngestEvent]:
    """The run stops (the disk filled up, the embedder stopped answering): the batch being
    written never committed, so every document still in flight keeps what it had staged (not
    live) and its pending version, and shows failed with the reason. Recording that may itself
    fail on a full disk: then the rows still say "indexing", which a later run resumes just
    the same."""
    unfinished = [w for w in pending if not w.published]
    for w in unfinished:
        w.doc.status, w.doc.error = FAILED, reason
        if not w.recorded:
            w.doc.pending_version = ""
    try:
        lib.put_documents([w.doc for w in unfinished])
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        log.warning("disk full: could not record the stopped documents (they resume as "
                    "indexing): %s", exc)
    for w in unfinished:
        summary.failed.append({"path": w.doc.path, "reason": reason})
        state["files_done"] += 1
        yield event("file", path=w.doc.path, status=FAILED, message=reason)


def _finish_done(lib, item: _Done, summary, state, sizes, event) -> Iterator[IngestEvent]:
    state["files_done"] += 1
    state["bytes_done"] += sizes.get(item.path, 0)
    doc = item.doc
    if item.status == FAILED:
        summary.failed.append({"path": str(item.path), "reason": item.message})
        if doc is not None:
            # Keep whatever version was live: a broken update must not lose the old one.
            doc.status, doc.error, doc.pending_version = FAILED, item.message, ""
            lib.put_document(doc)
    else:
        summary.skipped += 1
        stored = lib.get(item.path) if doc is not None else None
        if stored is not None:
            if (stored.mtime, stored.collections) != (doc.mtime, doc.collections):
                lib.put_document(doc)
    yield event("file", path=str(item.path), status=item.status, message=item.message)


def _embed_batch(
    lib, pending: list[_Work], batch_size: int, summary, state, sizes, event
) -> Iterator[IngestEvent]:
    """Embed up to `batch_size` chunks from the front of the queue, stage them, and publish
    every document whose chunks are all staged."""
    batch: list[tuple[_Work, Chunk]] = []
    for work in pending:
        take = work.todo[: batch_size - len(batch)]
        batch.extend((work, c) for c in take)
        if len(batch) >= batch_size:
            break
    # Record "indexing" with the pending version before staging, so that a crash leaves the
    # staged chunks claimed by their document and resumable rather than orphaned.
    unrecorded = [w for w, _ in batch if not w.recorded]
    lib.put_documents(list({id(w): w.doc for w in unrecorded}.values()))
    for work in unrecorded:
        work.recorded = True
    if batch:
        vectors = lib.embedder.embed_documents([c.embed_text for _, c in batch])
        lib.stage_chunks([(w.doc.doc_id, w.version, c) for w, c in batch], vectors)
        counts: dict[int, int] = {}
        for work, _ in batch:
            counts[id(work)] = counts.get(id(work), 0) + 1
        touched = []
        for work in pending:
            n = counts.get(id(work), 0)
            if n:
                del work.todo[:n]
                work.staged += n
                state["chunks_done"] += n
                state["bytes_done"] += sizes.get(Path(work.doc.path), 0) * n / work.total
                touched.append(work)
        for work in touched:
            yield event("progress", path=work.doc.path, current=work.doc.path,
                        file_done=work.staged, file_total=work.total)
    complete = [w for w in pending if not w.todo and w.staged >= w.total]
    if complete:
        for w in complete:
            w.doc.sha256 = w.sha256
        lib.publish([(w.doc, w.version, w.total) for w in complete])
    current = pending[0].doc.path if pending else ""
    yield event("batch", current=current)
    for w in complete:
        w.published = True
        state["files_done"] += 1
        state["pages"] += w.pages
        summary.ingested += 1
        for warning in w.warnings:
            summary.warnings.append({"path": w.doc.path, "warning": warning})
        yield event("file", path=w.doc.path, status=READY, message="; ".join(w.warnings))
