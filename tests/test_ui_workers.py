"""The worker bridge: events arrive on the GUI thread, tokens are coalesced, cancel works."""

from __future__ import annotations

import threading
from dataclasses import dataclass

from PySide6.QtCore import QThread

from app.ui.workers import Workers


@dataclass
class Ev:
    kind: str
    text: str = ""


def test_events_arrive_on_gui_thread_and_tokens_coalesce(qtbot):
    workers = Workers()
    gui = QThread.currentThread()
    seen, threads = [], []

    def work(job):
        yield Ev("start")
        for i in range(2000):
            yield Ev("token", str(i % 10))
        yield Ev("end")
        return "result"

    job = workers.submit(work, pool="llm")
    job.yielded.connect(lambda ev: (seen.append(ev), threads.append(QThread.currentThread())))
    with qtbot.waitSignal(job.finished, timeout=30_000) as done:
        pass
    assert done.args == ["result"]
    assert all(t is gui for t in threads)
    assert seen[0].kind == "start" and seen[-1].kind == "end"
    tokens = [e for e in seen if e.kind == "token"]
    assert "".join(e.text for e in tokens) == "".join(str(i % 10) for i in range(2000))
    assert len(tokens) < 2000  # merged within a frame
    workers.shutdown()


def test_failure_is_reported_not_raised(qtbot):
    workers = Workers()

    def work(job):
        raise ValueError("bad file")

    job = workers.submit(work)
    with qtbot.waitSignal(job.failed, timeout=10_000) as failed:
        pass
    assert failed.args == ["bad file"]
    assert "ValueError" in job.error_detail
    workers.shutdown()


def test_shutdown_cancels_running_jobs(qtbot):
    workers = Workers()
    started = threading.Event()

    def work(job):
        started.set()
        while not job.cancel.wait(0.01):
            yield Ev("tick")
        return "cancelled"

    workers.submit(work, pool="ingest")
    assert started.wait(10)
    assert workers.shutdown(timeout_ms=10_000)
