"""A real `folio serve` / `folio mcp` process for the tests: a library built once with the
real embedder, the environment a user's machine would give it, and the server's stderr kept
(it says where it listens, and when a client left, how fast the model stopped)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from docgen import make_docx, make_pdf

ROOT = Path(__file__).resolve().parents[1]
API_KEY = "test-key-" + "x" * 24


def folio_env(home: Path) -> dict:
    from conftest import SHARED_MODELS

    return {**os.environ, "FOLIO_HOME": str(home), "FOLIO_LIBRARY": str(home / "library"),
            "FOLIO_LOG_DIR": str(home / "logs"), "FOLIO_MODELS": str(SHARED_MODELS),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def build_library(home: Path) -> Path:
    """Two documents (a PDF with pages and sections, a DOCX) ingested by `folio ingest`."""
    docs = home / "docs"
    docs.mkdir(parents=True)
    make_pdf(docs / "boats.pdf", [
        "Sailing basics. Always wear a life jacket when you are on deck.",
        "Anchoring. Let out chain five times the depth of the water before setting the anchor.",
    ], toc=[[1, "Basics", 1], [1, "Anchoring", 2]])
    make_docx(docs / "crew.docx", {"Roster": ["Ana cooks on Mondays; Ben cooks on Fridays."]})
    library = home / "library"
    subprocess.run([sys.executable, "-m", "app", "ingest", "--library", str(library),
                    "--collection", "sailing", str(docs)],
                   env=folio_env(home), cwd=ROOT, check=True, capture_output=True, timeout=600)
    return library


class ServeProcess:
    def __init__(self, home: Path, *args: str, wait_ready: bool = True,
                 timeout: float = 300) -> None:
        self.home = home
        self.lines: list[str] = []
        self.url: str | None = None
        self._ready = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "app", "serve", "--library", str(home / "library"),
             "--port", "0", *args],
            env=folio_env(home), cwd=ROOT, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._drain, daemon=True).start()
        if wait_ready:
            self.wait_for(r"ready at (\S+)", timeout)
            self.url = re.search(r"ready at (\S+)", self.text).group(1)

    def _drain(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
        self._ready.set()

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(pattern, self.text)
            if m:
                return m
            if self.proc.poll() is not None and self._ready.is_set():
                break
            time.sleep(0.05)
        raise AssertionError(f"the server never said {pattern!r}; it said:\n{self.text}")

    @property
    def host_port(self) -> tuple[str, int]:
        m = re.match(r"http://([^:/]+):(\d+)", self.url)
        return m.group(1), int(m.group(2))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
