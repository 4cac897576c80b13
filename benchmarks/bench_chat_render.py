"""What one render of the conversation costs the GUI thread while an answer streams, by the
length of the chat: the real ChatPanel on a real chat store, offscreen, no model (the stream
is fed as the engine's token events would fill it).

    .venv/bin/python benchmarks/bench_chat_render.py --turns 0 10 50 200

Run it from another checkout (`git worktree add /tmp/base REV`, then
`.venv/bin/python /tmp/base/benchmarks/bench_chat_render.py`) to compare with an earlier
version: the script imports the `app` beside it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import ROOT, percentile  # noqa: F401  (puts this checkout's app first)

ANSWER = ("Use `plot (x, y)` to draw the data {i}, then `hold on` to keep it [1].\n\n"
          "- `xlabel` and `ylabel` name the axes\n- `legend` names the lines\n\n"
          "```\nx = linspace (0, {i}, 100);\nplot (x, sin (x));\n```\n\n"
          "| command | effect |\n|---|---|\n| hold on | keep |\n| hold off | replace |")
STREAM = ("To keep the current plot when drawing another, call hold on before the second "
          "plot command [1]; hold off returns to replacing it. ") * 4


class _Folio:
    """What the chat panel asks of the engine for rendering: the chat store."""

    def __init__(self, store):
        self.store = store
        self._runtime = None


def measure(turns: int, renders: int, tmp: Path) -> dict:
    from PySide6.QtWidgets import QApplication

    from app.core.chat.history import ChatStore
    from app.ui.chat_panel import ChatPanel

    app = QApplication.instance() or QApplication([sys.argv[0]])
    store = ChatStore(tmp / f"chats-{turns}.sqlite")
    panel = ChatPanel(_Folio(store), workers=None)
    panel.resize(700, 800)
    panel.show()
    chat_id = panel.new_chat()
    for i in range(turns):
        store.add_message(chat_id, "user", f"Question {i}: how do I plot data {i}?")
        store.add_message(chat_id, "assistant", ANSWER.format(i=i),
                          sources=[{"n": 1, "path": "/docs/octave.pdf", "page": 10 + i,
                                    "text": "plot"}])
    panel.reload_messages()
    app.processEvents()
    panel.stream = {"question": "How do I keep a plot?", "text": "", "sources": [
        {"n": 1, "path": "/docs/octave.pdf", "page": 321, "text": "hold on"}],
        "status": "streaming", "hide_from": None, "message_id": None, "error": ""}
    words = STREAM.split()
    times = []
    for n in range(renders):
        panel.stream["text"] = " ".join(words[: 1 + n * len(words) // renders])
        t0 = time.perf_counter()
        panel.render()
        app.processEvents()  # the layout and paint that the render caused
        times.append((time.perf_counter() - t0) * 1000)
    panel.stream = None
    panel.close()
    store.close()
    return {"turns": turns, "renders": renders, "median_ms": round(statistics.median(times), 2),
            "p95_ms": round(percentile(times, 95), 2), "max_ms": round(max(times), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--turns", type=int, nargs="+", default=[0, 10, 50, 200])
    ap.add_argument("--renders", type=int, default=60, help="renders per chat (default 60)")
    args = ap.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    print(f"checkout: {ROOT}")
    print("earlier turns | renders | median ms | p95 ms | max ms")
    with tempfile.TemporaryDirectory(prefix="folio-bench-render-") as t:
        for turns in args.turns:
            r = measure(turns, args.renders, Path(t))
            print(f"{r['turns']:>13} | {r['renders']:>7} | {r['median_ms']:>9} | "
                  f"{r['p95_ms']:>6} | {r['max_ms']:>6}")


if __name__ == "__main__":
    main()
