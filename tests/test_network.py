"""Folio makes no network connection: ingest, search and a chat answer in a process whose
every outbound connection fails and is recorded, from before the first import.

The child runs with a `sitecustomize.py` first on its path, so the trap is set while the
interpreter starts, before torch, transformers, tiktoken, LanceDB or llama.cpp are imported
(import-time phone-homes are caught too). The trap patches `socket.socket.connect`,
`connect_ex`, `socket.getaddrinfo` and `socket.create_connection` to record and raise, and
adds an audit hook on the socket events, which also sees sockets made by other references to
the C functions. The child's environment has no HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE: Folio
must stay offline by itself. When strace is installed, native code (LanceDB's Rust, llama.cpp)
is watched as well: no connect() to an internet address from any thread.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from docgen import make_docx, make_pdf

ROOT = Path(__file__).resolve().parents[1]

SITECUSTOMIZE = textwrap.dedent('''
    import os, socket, sys

    _LOG = os.environ["FOLIO_NET_LOG"]

    def _record(what, detail):
        with open(_LOG, "a", encoding="utf-8") as f:
            f.write(f"{what} {detail!r}"[:500] + "\\n")

    def _refuse(what):
        def refused(*args, **kwargs):
            _record(what, args[1:] if what.startswith("socket.socket") else args)
            raise OSError(101, f"network disabled by the test ({what})")
        return refused

    socket.socket.connect = _refuse("socket.socket.connect")
    socket.socket.connect_ex = _refuse("socket.socket.connect_ex")
    socket.getaddrinfo = _refuse("socket.getaddrinfo")
    socket.create_connection = _refuse("socket.create_connection")

    _WATCHED = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname",
                "socket.gethostbyaddr", "socket.sendto", "socket.sendmsg"}

    def _audit(event, args):
        if event in _WATCHED:
            _record("audit:" + event, args[1:] if event.startswith("socket.s") else args)
            raise OSError(101, f"network disabled by the test ({event})")

    sys.addaudithook(_audit)
''')

WORKLOAD = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    docs, libdir, model = map(Path, sys.argv[1:4])

    from app.core.chat.answers import ChatEngine
    from app.core.index.embedder import get_embedder
    from app.core.chat.history import ChatStore
    from app.core.index.ingest import IngestOptions, IngestSummary, ingest
    from app.core.index.library import Library
    from app.core.index.search import hybrid_search
    from app.core.llm.provider import LoadSettings
    from app.core.llm.runtime import LLMRuntime

    lib = Library.open(libdir, get_embedder())
    summary = IngestSummary()
    for _ in ingest(lib, [docs], IngestOptions(), summary=summary):
        pass
    hits = hybrid_search(lib, "How long does the dough rise?", k=3)
    runtime = LLMRuntime()
    runtime.load(model, LoadSettings(n_ctx=1024))
    store = ChatStore.for_library(libdir)
    chat = store.create_chat()
    engine = ChatEngine(lib, runtime, store)
    events = list(engine.ask(chat.id, "How long should the dough rise?",
                             overrides={"max_tokens": 12, "seed": 1}))
    runtime.close()
    store.close()
    print("RESULT " + json.dumps({
        "ingested": summary.ingested, "failed": summary.failed,
        "top": Path(hits[0].path).name if hits else None,
        "kinds": sorted({e.kind for e in events}),
        "errors": [e.text for e in events if e.kind == "error"],
    }), flush=True)
''')


def test_ingest_search_and_chat_make_no_network_connection(tmp_path, starter_model):
    docs = tmp_path / "docs"
    docs.mkdir()
    make_pdf(docs / "garden.pdf", [
        "Watering. Water tomato plants deeply twice a week, early in the morning.",
        "Pruning. Remove the side shoots of tomatoes when they are five centimetres long.",
    ], title="Garden Guide")
    make_docx(docs / "kitchen.docx", {
        "Bread": ["Let the dough rise for two hours in a warm place before baking."]})
    (docs / "notes.md").write_text("# Notes\n\nVisit https://example.com/update for news.\n")
    boot = tmp_path / "boot"
    boot.mkdir()
    (boot / "sitecustomize.py").write_text(SITECUSTOMIZE, "utf-8")
    script = tmp_path / "workload.py"
    script.write_text(WORKLOAD, "utf-8")
    net_log = tmp_path / "network.log"
    net_log.touch()

    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(PYTHONPATH=os.pathsep.join([str(boot), str(ROOT)]),
               FOLIO_NET_LOG=str(net_log), FOLIO_HOME=str(tmp_path / "home"))
    cmd = [sys.executable, str(script), str(docs), str(tmp_path / "library"),
           str(starter_model)]
    trace = tmp_path / "strace.log"
    strace = shutil.which("strace")
    if strace and subprocess.run([strace, "-qq", "-o", os.devnull, "true"],
                                 capture_output=True, check=False).returncode != 0:
        strace = None  # installed but not allowed here (no ptrace in some containers)
    if strace:  # native code too: every connect() from every thread
        cmd = [strace, "-f", "-qq", "-e", "trace=connect", "-o", str(trace), *cmd]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600,
                          cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [line] = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    result = json.loads(line.removeprefix("RESULT "))
    # The work really happened...
    assert result["ingested"] == 3 and not result["failed"]
    assert result["top"] == "kitchen.docx"
    assert "done" in result["kinds"] and not result["errors"]
    # ...and nothing tried to reach the network.
    assert net_log.read_text() == ""
    if strace:
        calls = trace.read_text().splitlines()
        internet = [c for c in calls if re.search(r"AF_INET6?\b", c)]
        assert internet == [], internet[:5]
