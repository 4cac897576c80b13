"""The one bridge between the Qt-free engine and the window.

The engine speaks in generators (ingest progress, answer tokens); the window speaks in
signals. A `Job` runs one generator (or plain function) on a `QThreadPool` thread and
re-emits what it yields as `yielded` on the GUI thread, then `finished(result)` or
`failed(message)`. Nothing here knows what the events mean.

Why the detour through `_post`: a signal emitted on a worker thread and connected to a lambda
would call the lambda on the worker thread. Instead every worker-side emission goes to a
slot of the Job (which lives on the GUI thread), so it is queued, and the public signals are
emitted from the GUI thread: any receiver, lambda or method, runs where widgets may be touched.

Pools: ingest gets its own one-thread pool (two ingests into one library would only fight
over LanceDB commits); everything that calls into llama.cpp (model load, ask, regenerate,
summarise) shares a one-thread pool so calls are serialised; small library reads (open,
list documents) use a two-thread pool so they never wait behind a long ingest.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import traceback
from collections.abc import Callable
from types import GeneratorType
from typing import Any

from PySide6.QtCore import QObject, QThreadPool, Signal, Slot

log = logging.getLogger(__name__)

TOKEN_COALESCE_S = 0.016  # tokens closer together than one frame are sent as one event


class Job(QObject):
    """One unit of background work. `cancel` is handed to the engine, which honours it."""

    yielded = Signal(object)  # not "event": that would shadow QObject.event() and crash Qt
    finished = Signal(object)
    failed = Signal(str)

    _post = Signal(str, object)  # worker thread -> GUI thread (queued to _deliver)

    def __init__(self, fn: Callable[[Job], Any], name: str = "", parent: QObject | None = None):
        super().__init__(parent)
        self.fn = fn
        self.name = name or getattr(fn, "__name__", "job")
        self.cancel = threading.Event()
        self.done = False
        self.error_detail = ""
        self._post.connect(self._deliver)

    # -- worker side --------------------------------------------------------------------

    def run(self) -> None:
        # Nothing may escape into Qt's pool: an exception there is reported by Qt Concurrent
        # and dropped. The usual one is a report posted after the window (and this job's
        # C++ side) was destroyed while the work was still running.
        try:
            self._run()
        except BaseException:  # noqa: BLE001
            log.debug("job %s could not report back", self.name, exc_info=True)

    def _run(self) -> None:
        try:
            result = self.fn(self)
            if isinstance(result, GeneratorType):
                result = self._drain(result)
        except BaseException as exc:
            log.exception("job %s failed", self.name)
            self.error_detail = traceback.format_exc()
            self._post.emit("failed", str(exc) or type(exc).__name__)
            return
        self._post.emit("finished", result)

    def _drain(self, gen) -> Any:
        """Forward every event; merge runs of token events that arrive within one frame so
        a fast model cannot flood the GUI thread with thousands of tiny updates."""
        pending = None
        last_emit = 0.0
        try:
            while True:
                try:
                    ev = next(gen)
                except StopIteration as stop:
                    return stop.value
                if _is_token(ev):
                    pending = ev if pending is None else _merge(pending, ev)
                    now = time.monotonic()
                    if now - last_emit >= TOKEN_COALESCE_S:
                        self._post.emit("event", pending)
                        pending, last_emit = None, now
                    continue
                if pending is not None:
                    self._post.emit("event", pending)
                    pending = None
                self._post.emit("event", ev)
        finally:
            if pending is not None:
                self._post.emit("event", pending)
            gen.close()

    def report(self, ev: object) -> None:
        """From inside the work (any thread): deliver `ev` as `yielded`, for work that
        reports through a callback rather than by yielding."""
        self._post.emit("event", ev)

    # -- GUI side -----------------------------------------------------------------------

    @Slot(str, object)
    def _deliver(self, what: str, payload: object) -> None:
        if what == "event":
            self.yielded.emit(payload)
        elif what == "finished":
            self.done = True
            self.finished.emit(payload)
        else:
            self.done = True
            self.failed.emit(str(payload))


def _is_token(ev: object) -> bool:
    return getattr(ev, "kind", None) == "token" and isinstance(getattr(ev, "text", None), str)


def _merge(a, b):
    if dataclasses.is_dataclass(a):
        return dataclasses.replace(a, text=a.text + b.text)
    return b


class Workers(QObject):
    """The window's pools and the jobs in flight (kept alive until they report back)."""

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self.ingest_pool = QThreadPool(self)
        self.ingest_pool.setMaxThreadCount(1)
        self.llm_pool = QThreadPool(self)
        self.llm_pool.setMaxThreadCount(1)
        self.io_pool = QThreadPool(self)
        self.io_pool.setMaxThreadCount(2)
        self._jobs: set[Job] = set()
        self._closing = False

    def submit(self, fn: Callable[[Job], Any], *, pool: str = "io", name: str = "") -> Job:
        """Queue `fn(job)` on a pool ("io", "ingest" or "llm"). Connect to the returned
        job's signals right away: nothing is delivered before control returns to the loop."""
        # No Qt parent: the job lives while Python holds it (this set, until it reports back,
        # and the bound method the pool runs), so neither side can delete it under the other.
        job = Job(fn, name)
        self._jobs.add(job)
        job.finished.connect(lambda _=None, j=job: self._forget(j))
        job.failed.connect(lambda _=None, j=job: self._forget(j))
        if self._closing:
            job.cancel.set()
        {"io": self.io_pool, "ingest": self.ingest_pool, "llm": self.llm_pool}[pool].start(
            job.run)
        return job

    def _forget(self, job: Job) -> None:
        self._jobs.discard(job)

    def running(self) -> list[Job]:
        return [j for j in self._jobs if not j.done]

    def shutdown(self, timeout_ms: int = 60_000) -> bool:
        """Cancel every job and wait for the pools; True when all threads finished."""
        self._closing = True
        for job in list(self._jobs):
            job.cancel.set()
        ok = True
        for pool in (self.llm_pool, self.ingest_pool, self.io_pool):
            pool.clear()  # jobs not started yet never start
            ok = pool.waitForDone(timeout_ms) and ok
        return ok
