"""Shared helpers for the benchmarks: a peak-RSS sampler and percentile formatting."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RUST_LOG", "error")
os.environ.setdefault("LANCE_LOG", "error")


def tree_rss(proc: psutil.Process | None = None) -> int:
    """Resident memory of this process and its children (the model host runs the model in a
    child process: its memory is Folio's too)."""
    proc = proc or psutil.Process()
    total = proc.memory_info().rss
    for child in proc.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.Error:  # ended between the listing and the reading
            pass
    return total


class PeakRSS:
    """Samples the resident memory of this process and its children every 50 ms; `.peak`
    in bytes."""

    def __init__(self, interval: float = 0.05):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._proc = psutil.Process()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self._proc))
            time.sleep(self.interval)

    def __enter__(self) -> PeakRSS:
        self.peak = tree_rss(self._proc)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, tree_rss(self._proc))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


def mib(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"
