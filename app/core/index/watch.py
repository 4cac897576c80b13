"""Watched folders: files added, changed, renamed or deleted under a folder reach the library
without a manual ingest.

A watchdog Observer reports file-system events on its own thread; `FolderWatcher` only notes
which paths they touched. Its worker thread waits until the folders have been quiet for
`quiet` seconds, then applies everything noted so far as one batch, deciding from what is on
disk *now*, not from the event kinds:

- a supported file that exists is ingested (`ingest` skips it when its content hash is
  unchanged, so a touch or a save of the same bytes costs one stat and one hash);
- a path that no longer exists is removed from the library (a folder: everything under it).

So an editor's save-via-temp-file (write `x.tmp`, rename it over `x`) is one change of `x`:
the temp file is gone when the batch runs. A renamed file with the same bytes is moved (its
chunks keep their vectors); any other rename is the old path removed and the new one indexed.
A burst of a thousand events is one batch. Temp, hidden and unsupported files are
never looked at. A file that cannot be read is reported (path and reason) in the batch and
watching goes on.

No Qt here: the window turns `on_batch` into one signal per batch; the CLI prints it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from app.core.base.files import sha256_file
from app.core.documents.formats import is_supported
from app.core.index.ingest import (
    IngestOptions,
    discover,
    IngestSummary,
    ingest,
    splitter_fingerprint,
    version_for,
)
from app.core.index.library import READY, doc_id_for

log = logging.getLogger(__name__)

DEFAULT_QUIET = 1.0  # seconds without events before a batch is applied

# Names editors and downloaders give files they are still writing.
_TEMP_SUFFIXES = (".tmp", ".temp", ".swp", ".swx", ".swo", ".part", ".crdownload", ".partial",
                  ".bak", "~")
_TEMP_PREFIXES = ("~$", ".#", "#")


def is_ignored(path: Path, root: Path | None = None) -> bool:
    """Whether a path under a watched folder is never indexed: hidden (any part below the
    watched folder starting with "."), an editor's or downloader's temp file, or a file type
    Folio cannot read. A path that is gone is not ignored for its type: it may have been a
    folder (`v1.2/`) whose documents must go."""
    try:
        parts = path.relative_to(root).parts if root else (path.name,)
    except ValueError:
        parts = (path.name,)
    if any(p.startswith(".") for p in parts):
        return True
    name = path.name.lower()
    if name.endswith(_TEMP_SUFFIXES) or name.startswith(_TEMP_PREFIXES):
        return True
    return bool(path.suffix) and not is_supported(path) and path.exists() and not path.is_dir()


@dataclass(slots=True)
class WatchBatch:
    """What one batch did: paths indexed (new or changed), removed, failed with reasons."""

    indexed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)  # (old, new): renamed, same bytes
    failed: list[tuple[str, str]] = field(default_factory=list)
    unchanged: int = 0
    events: int = 0  # file-system events coalesced into this batch

    def empty(self) -> bool:
        return not (self.indexed or self.removed or self.moved or self.failed)


class FolderWatcher:
    """Keeps the library in step with `folders` while started.

    `on_batch(WatchBatch)` runs on the watcher's worker thread after every batch that changed
    something (or failed); `write_lock`, when given, is held while a batch writes, so the
    caller can keep its own ingest jobs from interleaving with the watcher's.
    """

    def __init__(self, lib, folders: Iterable[Path | str] = (), *, quiet: float = DEFAULT_QUIET,
                 options: IngestOptions | None = None,
                 on_batch: Callable[[WatchBatch], None] | None = None,
                 write_lock: threading.Lock | threading.RLock | None = None):
        self.lib = lib
        self.quiet = quiet
        self.options = options or IngestOptions()
        self.on_batch = on_batch
        self.write_lock = write_lock or threading.RLock()
        self.batches = 0  # batches applied (the ones that found nothing to do included)
        self._cond = threading.Condition()
        self._pending: set[Path] = set()
        self._events = 0
        self._last_event = 0.0
        self._stopping = False
        self._watches: dict[Path, object] = {}
        self._observer = None
        self._worker: threading.Thread | None = None
        self._folders: list[Path] = []
        for folder in folders:
            self.add(folder)

    # -- folders -----------------------------------------------------------------------

    @property
    def folders(self) -> list[Path]:
        return list(self._folders)

    def add(self, folder: Path | str) -> Path:
        """Watch one more folder (from now on; `rescan` catches up with what changed before).
        ValueError when it is not a folder."""
        path = Path(folder).expanduser().resolve()
        if not path.is_dir():
            raise ValueError(f"{path}: not a folder")
        if path not in self._folders:
            self._folders.append(path)
            if self._observer is not None:
                self._schedule(path)
        return path

    def remove(self, folder: Path | str) -> None:
        """Stop watching a folder; its documents stay in the library."""
        path = Path(folder).expanduser().resolve()
        if path in self._folders:
            self._folders.remove(path)
        watch = self._watches.pop(path, None)
        if watch is not None and self._observer is not None:
            self._observer.unschedule(watch)

    def _root_of(self, path: Path) -> Path | None:
        for root in self._folders:
            if path == root or path.is_relative_to(root):
                return root
        return None

    # -- running -----------------------------------------------------------------------

    def start(self) -> None:
        from watchdog.observers import Observer

        if self._observer is not None:
            return
        self._stopping = False
        self._observer = Observer()
        for folder in self._folders:
            self._schedule(folder)
        self._observer.start()
        self._worker = threading.Thread(target=self._run, name="folio-watch", daemon=True)
        self._worker.start()

    def _schedule(self, folder: Path) -> None:
        self._watches[folder] = self._observer.schedule(_Handler(self), str(folder),
                                                        recursive=True)

    def stop(self) -> None:
        """Stop watching; a batch being applied finishes first, events not yet applied are
        dropped (the next start's rescan finds them by content hash)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=10)
            self._observer = None
            self._watches.clear()
        if self._worker is not None:
            self._worker.join(timeout=60)
            self._worker = None

    def __enter__(self) -> FolderWatcher:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def note(self, *paths: str | bytes) -> None:
        """Record that these paths changed in some way (called by the observer's thread)."""
        with self._cond:
            for raw in paths:
                if not raw:
                    continue
                path = Path(os.fsdecode(raw))
                root = self._root_of(path)
                if root is None or is_ignored(path, root) or path.is_relative_to(self.lib.root):
                    continue
                self._pending.add(path)
            self._events += 1
            self._last_event = time.monotonic()
            self._cond.notify_all()

    def _take(self) -> tuple[set[Path], int] | None:
        """Wait for pending paths and `quiet` seconds without events; None when stopping."""
        with self._cond:
            while not self._stopping:
                if not self._pending:
                    self._cond.wait()
                    continue
                left = self._last_event + self.quiet - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                taken, events = self._pending, self._events
                self._pending, self._events = set(), 0
                return taken, events
            return None

    def _run(self) -> None:
        while True:
            taken = self._take()
            if taken is None:
                return
            paths, events = taken
            try:
                batch = self.apply(paths)
            except Exception as exc:  # the library itself failed (disk full...): say so, go on
                log.exception("watched folders: applying changes failed")
                batch = WatchBatch(failed=[(str(p), str(exc)) for p in sorted(paths)])
            batch.events = events
            if self.on_batch is not None and not batch.empty():
                try:
                    self.on_batch(batch)
                except Exception:
                    log.exception("watched folders: on_batch failed")

    # -- applying ----------------------------------------------------------------------

    def apply(self, paths: Iterable[Path]) -> WatchBatch:
        """Bring the library in step with these paths as they are on disk now: ingest what
        exists, remove what is gone. One ingest run for all of them."""
        batch = WatchBatch()
        to_ingest: list[Path] = []
        gone: list[Path] = []
        for path in sorted(set(paths)):
            if path.is_dir() or (path.is_file() and is_supported(path)):
                to_ingest.append(path)
            elif not path.exists():
                gone.append(path)
            # else: an existing file of a type Folio cannot read (an editor's temp file
            # without a telling name): not a document, nothing to do
        with self.write_lock:
            self.batches += 1
            batch.moved.extend(self._move_renamed(gone, to_ingest))
            removed = self._remove_gone(gone)
            batch.removed.extend(removed)
            if to_ingest:
                summary = IngestSummary()
                for ev in ingest(self.lib, to_ingest, self.options, summary=summary):
                    if ev.kind == "file" and ev.status == "ready":
                        batch.indexed.append(ev.path)
                    elif ev.kind == "file" and ev.status == "failed":
                        batch.failed.append((ev.path, ev.message))
                batch.unchanged = summary.skipped
            elif removed or batch.moved:
                self.lib.optimize()
        return batch

    def _move_renamed(self, gone: list[Path], to_ingest: list[Path]) -> list[tuple[str, str]]:
        """A gone document whose bytes now sit at a new path (a rename): move it there
        without embedding it again. Only when its chunks were made by the pipeline that
        would make them now. Moved paths leave `gone` and `to_ingest`."""
        docs = {d.path: d for d in self.lib.documents()}
        fingerprint = splitter_fingerprint(self.options.splitter, self.lib.embedder_name)
        prefixes = tuple(str(p) + os.sep for p in gone)
        gone_names = {str(p) for p in gone}
        moved: list[tuple[str, str]] = []
        # A renamed folder (or a file renamed into a folder made in the same batch) arrives
        # as the folder: its files are candidates too.
        files = [p for p in to_ingest if p.is_file()]
        files += discover([p for p in to_ingest if p.is_dir()])[0]
        files = [p for p in files if str(p) not in docs]
        if not files:
            return moved
        # The old name's event may not have arrived yet: a file renamed into a folder made
        # a moment before is seen by watchdog as created there, and the old name's unpaired
        # "moved from" comes half a second later, perhaps in the next batch. What is on disk
        # decides: any document under a watched folder whose file is gone may be the source.
        candidates = [d for d in docs.values()
                      if (d.path in gone_names or d.path.startswith(prefixes)
                          or self._root_of(Path(d.path)) is not None)
                      and not Path(d.path).exists()]
        candidates = [d for d in candidates if d.status == READY and d.sha256
                      and d.version == version_for(d.doc_id, d.sha256, fingerprint)]
        if not candidates:
            return moved
        for path in files:
            sha = None
            for doc in candidates:
                try:
                    st = path.stat()
                    if st.st_size != doc.size:
                        continue
                    sha = sha or sha256_file(path)
                except OSError:
                    break  # gone again, or unreadable: the ingest reports it
                if sha != doc.sha256:
                    continue
                new = self.lib.move_document(doc, path.resolve(), version_for(
                    doc_id_for(path.resolve()), sha, fingerprint))
                new.size, new.mtime = st.st_size, st.st_mtime
                self.lib.put_document(new)
                candidates.remove(doc)
                if path in to_ingest:
                    to_ingest.remove(path)  # a folder stays: its other files are ingested
                if Path(doc.path) in gone:
                    gone.remove(Path(doc.path))
                moved.append((doc.path, new.path))
                break
        return moved

    def _remove_gone(self, gone: list[Path]) -> list[str]:
        if not gone:
            return []
        removed = []
        docs = self.lib.documents()
        for path in gone:
            prefix = str(path) + os.sep
            for doc in docs:
                if (doc.path == str(path) or doc.path.startswith(prefix)) \
                        and not Path(doc.path).exists():
                    self.lib.remove(doc)
                    removed.append(doc.path)
            docs = [d for d in docs if d.path not in removed]
        return removed

    def rescan(self) -> WatchBatch:
        """Catch up with changes made while nothing watched: every watched folder is walked
        (new and changed files are indexed, by content hash) and documents under it whose
        files are gone are removed."""
        gone = [Path(d.path) for d in self.lib.documents()
                if self._root_of(Path(d.path)) is not None and not Path(d.path).exists()]
        return self.apply([*self._folders, *gone])


class _Handler:
    """watchdog's event handler: every event only notes the paths it names."""

    def __init__(self, watcher: FolderWatcher):
        self.watcher = watcher

    def dispatch(self, event) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.is_directory and event.event_type == "modified":
            return  # a file in it changed: that file has its own event
        self.watcher.note(event.src_path, getattr(event, "dest_path", "") or "")
