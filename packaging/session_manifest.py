"""Record what a real Folio session imports and reads, for `folio --check-bundle`.

    .venv/bin/python packaging/session_manifest.py [--out build/session-manifest.json]

Runs Folio from source, in a new HOME (so the starter model is assembled on first use, as for
a new user), under an audit hook (sys.addaudithook) that records:

  modules  every module imported, in order: the "import" audit events plus sys.modules at
           the end (importlib.import_module, which transformers' lazy modules use, raises no
           event). Only modules that were actually loaded count; names whose import failed
           (optional dependencies probed with try/except) are listed apart.
  files    every file opened for reading inside site-packages, the standard library or this
           repository, other than Python code (.py, .pyc, extension modules): data files
           such as kernels/_internals/python_depends.json, dist-info METADATA, prompts.
  dirs     folders listed (os.listdir, os.scandir) in the same places.

Native code (Rust tokenizers, safetensors, llama.cpp, Qt plugins) reads files without audit
events; `folio --self-test` covers those by running them.

The session, like a user's:
  1. `folio ingest` of a generated PDF and DOCX into a new library, `folio search`, and
     `folio ask` with the starter model;
  2. the window (offscreen): started as `folio` starts it, it opens the library and loads the
     model, then ingests a Markdown, text, HTML, CSV and reStructuredText note, answers a
     question in the chat, shows a PDF and a DOCX source in the viewer, opens Settings and the
     model manager, and closes when idle.
The model runs in a model-host child (multiprocessing "spawn"). Spawn runs the parent's main
script again in the child as __mp_main__, so this file records the child too: with
FOLIO_MANIFEST_CHILDREN set, it installs the same hook there and appends to a file per child.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import sys
import sysconfig
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD_ENV = "FOLIO_MANIFEST_CHILDREN"
CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".so", ".pyd", ".dll", ".dylib")
# Readers of Python sources whose need is not the bundle's: reader -> why.
SOURCE_READERS_NOT_NEEDED = {
    "shibokensupport/feature.py:_mod_uses_pyside":
        "shiboken reads each module that imports PySide6 to look for `from __feature__ "
        "import`; frozen, without the source, it finds none, which is right for Folio",
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _areas() -> list[tuple[str, str]]:
    """(area, folder) pairs, the longest folder first (the venv lies inside the repository)."""
    paths = sysconfig.get_paths()
    # Not platstdlib: in a venv that is the venv's lib/python3.X, which holds only
    # site-packages; the standard library's files lie under stdlib.
    areas = {("site", paths["purelib"]), ("site", paths["platlib"]),
             ("stdlib", paths["stdlib"]), ("root", str(ROOT))}
    return sorted(((a, os.path.realpath(p) + os.sep) for a, p in areas),
                  key=lambda x: -len(x[1]))


class Recorder:
    """Appends one JSON line per event to `path` (os.write on a descriptor opened before the
    hook: writing must not raise an audit event of its own)."""

    def __init__(self, path: Path, role: str) -> None:
        self.role = role
        self.areas = _areas()
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.busy = False
        self.seen: set[tuple[str, str]] = set()
        self.active = True

    def _emit(self, kind: str, value: str) -> None:
        if (kind, value) in self.seen:
            return
        self.seen.add((kind, value))
        os.write(self.fd, (json.dumps([kind, value]) + "\n").encode())

    def _where(self, path) -> str | None:
        try:
            p = os.fsdecode(path)
        except TypeError:
            return None
        p = os.path.realpath(p)
        for area, folder in self.areas:
            if p.startswith(folder):
                rel = p[len(folder):]
                if area == "root" and rel.startswith((".venv" + os.sep, ".git" + os.sep)):
                    return None
                return f"{area}:{rel}"
        return None

    def _source_reader(self, frame) -> str | None:
        """Who reads a .py file as text: None for the import system (code comes from .pyc
        in the bundle) and for tracebacks and warnings (a missing source line is cosmetic);
        otherwise the first caller outside the standard library, e.g. transformers'
        define_import_structure, which parses its own sources at import time."""
        files = []
        while frame is not None and len(files) < 16:
            files.append((frame.f_code.co_filename, frame.f_code.co_name))
            frame = frame.f_back
        if not files or files[0][0].startswith("<frozen importlib"):
            return None
        if any(f.endswith((os.sep + "traceback.py", os.sep + "warnings.py"))
               for f, _ in files):
            return None
        for f, name in files:
            where = self._where(f)
            if not f.startswith("<") and not (where or "").startswith("stdlib:"):
                return f"{where or f}:{name}"
        return "stdlib"

    def hook(self, event: str, args: tuple) -> None:
        if self.busy or not self.active:
            return
        if event not in ("import", "open", "os.listdir", "os.scandir"):
            return
        self.busy = True
        try:
            if event == "import":
                self._emit("import", args[0])
            elif event == "open":
                path, mode, flags = args
                if path is None or isinstance(path, int):
                    return
                if mode is not None:
                    if any(c in str(mode) for c in "wax+"):
                        return
                elif flags and flags & _WRITE_FLAGS:
                    return
                where = self._where(path)
                if where is None or "__pycache__" in where:
                    return
                if where.endswith(CODE_SUFFIXES) or ".so." in where.rsplit("/", 1)[-1]:
                    if where.endswith(".py"):
                        reader = self._source_reader(sys._getframe(1))
                        if reader:
                            self._emit("source", f"{where}\t{reader}")
                    return
                self._emit("file", where)
            else:  # a folder listed
                if sys._getframe(1).f_code.co_filename.startswith("<frozen importlib"):
                    return  # the import system's own listings
                path = os.path.realpath(os.fsdecode(args[0] if args and args[0] is not None
                                                    else "."))
                if path in {os.path.realpath(p) for p in sys.path if isinstance(p, str)}:
                    return  # pkgutil.iter_modules() over sys.path: the frozen app has its own
                where = self._where(path)
                if where is not None and "__pycache__" not in where:  # pkgutil's probes
                    self._emit("dir", where)
        except Exception:  # noqa: BLE001 - a recorder must never break the session
            pass
        finally:
            self.busy = False

    def install(self) -> None:
        for name in list(sys.modules):  # loaded before the hook: interpreter start-up
            self._emit("import", name)
        sys.addaudithook(self.hook)

    def snapshot(self) -> None:
        """Write the modules loaded since the last snapshot (sys.modules, which holds only
        imports that succeeded), and which of them are not importable by name."""
        loaded, virtual = [], {}
        for name, mod in list(sys.modules.items()):
            if not isinstance(mod, types.ModuleType) or ("loaded", name) in self.seen:
                continue
            self.seen.add(("loaded", name))
            loaded.append(name)
            spec = getattr(mod, "__spec__", None)
            if spec is None:  # made in memory (shiboken's support modules, SWIG's table)
                virtual[name] = "made in memory by its package at run time (no module spec)"
            elif spec.name != name:  # another name for a module (os.path, a compat alias)
                virtual[name] = f"another name for {spec.name}, registered by its package"
        if loaded:
            os.write(self.fd, (json.dumps(["loaded", loaded]) + "\n").encode())
        if virtual:
            os.write(self.fd, (json.dumps(["virtual", virtual]) + "\n").encode())

    def finish(self) -> None:
        if self.active:
            self.snapshot()
            os.write(self.fd, (json.dumps(["finished", True]) + "\n").encode())
            self.active = False


def _start_child_recording() -> None:
    folder = Path(os.environ[CHILD_ENV])
    rec = Recorder(folder / f"child-{os.getpid()}.jsonl", "child")
    rec.install()
    atexit.register(rec.finish)

    def every_quarter_second() -> None:  # a child killed on close runs no atexit
        while rec.active:
            rec.snapshot()
            time.sleep(0.25)

    import threading

    threading.Thread(target=every_quarter_second, name="manifest-snapshots",
                     daemon=True).start()


if __name__ == "__mp_main__" and os.environ.get(CHILD_ENV):
    _start_child_recording()


# -- the session ----------------------------------------------------------------------------


PDF_PAGES = [
    "Harbour notes. The ferry to Vesterholm leaves at 7:45. This document is generated for "
    "the packaging manifest.",
    "The lighthouse keeper is Ingrid Solberg. The light was built in 1894 from grey granite.",
]
DOCX_SECTIONS = {"Tickets": ["Tickets are sold at the kiosk beside pier three."],
                 "Bicycles": ["Bicycles travel free of charge on the morning ferry."]}
NOTES = {
    "note.md": "# Market\n\nThe fish market opens on **Saturdays** at six.\n\n- mackerel\n- cod\n",
    "note.txt": "The harbour office closes at four in the afternoon.\n",
    "note.html": "<html><head><title>Pier</title></head><body><h1>Pier three</h1>"
                 "<p>The kiosk sells tickets.</p></body></html>",
    "note.csv": "boat,departs\nVesterholm,7:45\nOsterholm,9:10\n",
    "note.rst": "Quay\n====\n\nSalted cod is sold on the quay until noon.\n",
}


def _make_documents(folder: Path) -> list[Path]:
    """In a child process, so that writing them (pymupdf, python-docx writers) is not part of
    the recorded session."""
    import subprocess

    code = (
        "import sys, json, pymupdf, docx\n"
        "out, pages, sections = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])\n"
        "d = pymupdf.open()\n"
        "for t in pages:\n"
        "    p = d.new_page(); p.insert_textbox(pymupdf.Rect(56, 56, 540, 780), t, fontsize=11)\n"
        "d.save(out + '/harbour.pdf')\n"
        "w = docx.Document()\n"
        "for h, ps in sections.items():\n"
        "    w.add_heading(h, level=1)\n"
        "    [w.add_paragraph(x) for x in ps]\n"
        "w.save(out + '/tickets.docx')\n"
    )
    subprocess.run([sys.executable, "-c", code, str(folder), json.dumps(PDF_PAGES),
                    json.dumps(DOCX_SECTIONS)], check=True)
    for name, text in NOTES.items():
        (folder / name).write_text(text, "utf-8")
    return [folder / "harbour.pdf", folder / "tickets.docx"]


def _cli_phase(lib: Path, docs: list[Path]) -> None:
    from app.cli import main as folio

    steps = [
        ["--library", str(lib), "ingest", *map(str, docs)],
        ["--library", str(lib), "search", "who keeps the lighthouse", "--k", "3"],
        ["--library", str(lib), "ask", "Who is the lighthouse keeper?", "--max-tokens", "24",
         "--seed", "1", "--temperature", "0"],
    ]
    for argv in steps:
        print(f"session: folio {' '.join(argv[2:4])} ...", flush=True)
        rc = folio(argv)
        if rc != 0:
            raise SystemExit(f"session: `folio {' '.join(argv)}` exited {rc}")


def _window_phase(lib: Path, folder: Path, docs: list[Path], timeout: float = 600) -> None:
    """`folio` without a command, as app.ui.app.run starts it, driven by a timer."""
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(["folio"])
    notes = [str(folder / n) for n in NOTES]
    state = {"step": "start", "since": time.monotonic(), "error": None, "window": None}
    deadline = time.monotonic() + timeout

    def window():
        from app.ui.main_window import MainWindow

        if state["window"] is None:
            state["window"] = next((w for w in app.topLevelWidgets()
                                    if isinstance(w, MainWindow)), None)
        return state["window"]

    def idle(w) -> bool:
        return w._workers_idle() and not w.chat.busy and not w.library.indexing

    def go(step: str) -> None:
        print(f"session: window {step}", flush=True)
        state["step"], state["since"] = step, time.monotonic()

    def tick() -> None:
        w = window()
        try:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the window session stalled at step {state['step']!r}")
            settled = time.monotonic() - state["since"] > 1.0
            if w is None or not w._started:
                pass
            elif state["step"] == "start" and w.model_info is not None and idle(w) and settled:
                w.library.ingest(notes)
                go("ingest")
            elif state["step"] == "ingest" and idle(w) and settled:
                status = {Path(d.path).name: d.status for d in w.library.docs}
                if any(status.get(n) != "ready" for n in NOTES):
                    raise RuntimeError(f"the window's ingest did not finish: {status}")
                w.chat.new_chat()
                w.chat.ask("Who is the lighthouse keeper?")
                go("ask")
            elif state["step"] == "ask" and idle(w) and settled:
                answer = w.chat.store.messages(w.chat.chat_id)[-1]
                if answer.role != "assistant" or answer.error or answer.status != "complete":
                    raise RuntimeError(f"the window's question got no answer: {answer}")
                if not answer.content.strip() and state.setdefault("asked", 1) < 3:
                    # The 270M starter model, sampling, sometimes ends at once: ask again, so
                    # that the answer's rendering (Markdown, sources) runs too.
                    state["asked"] += 1
                    w.chat.ask("Who is the lighthouse keeper?")
                    go("ask")
                    QTimer.singleShot(200, tick)
                    return
                w.open_source({"path": str(docs[0]), "page": 2, "text": "lighthouse keeper"})
                go("viewer-pdf")
            elif state["step"] == "viewer-pdf" and idle(w) and settled:
                w.open_source({"path": str(docs[1]), "text": "kiosk beside pier three"})
                go("viewer-docx")
            elif state["step"] == "viewer-docx" and idle(w) and settled:
                w.open_settings_dialog()
                go("settings")
            elif state["step"] == "settings" and settled:
                if w.settings_dialog is not None:
                    w.settings_dialog.reject()
                w.model.open_manager()
                go("models")
            elif state["step"] == "models" and idle(w) and settled:
                w.model.view.close()
                go("close")
            elif state["step"] == "close" and settled:
                w.close()
                go("closed")
                return
            if w is not None and w.model_info is None and w.model_job is None and w._started \
                    and state["step"] == "start" and settled:
                raise RuntimeError("the window could not load the model")
        except Exception as exc:  # noqa: BLE001 - end the session and report it
            import traceback

            traceback.print_exc()
            state["error"] = exc
            if w is not None:
                w.close()
            return
        QTimer.singleShot(200, tick)

    QTimer.singleShot(0, tick)
    from app.ui.app import run

    rc = run(str(lib))
    if state["error"] is not None:
        raise SystemExit(f"session: window: {state['error']!r}")
    if rc != 0 or state["step"] != "closed":
        raise SystemExit(f"session: the window exited {rc} at step {state['step']!r}")


def _read(path: Path, virtual: dict[str, str]
          ) -> tuple[list[str], dict[str, list[str]], list[str] | None]:
    events: list[str] = []
    kinds: dict[str, list[str]] = {"file": [], "dir": [], "source": []}
    loaded = None
    for line in path.read_text("utf-8").splitlines():
        try:
            kind, value = json.loads(line)
        except ValueError:  # the last line of a child killed while writing it
            continue
        if kind == "finished":
            continue
        if kind == "import":
            events.append(value)
        elif kind == "loaded":
            loaded = (loaded or []) + value
        elif kind == "virtual":
            virtual.update(value)
        else:
            kinds[kind].append(value)
    return events, kinds, loaded


def _split_metadata(files: list[str], modules: list[str]) -> tuple[list[str], dict[str, str]]:
    """dist-info files are needed for the distributions the session imported from; the
    others were read only because importlib.metadata.entry_points() and similar scans read
    every installed distribution's metadata, and the bundle carries none of those."""
    import importlib.metadata as md
    import re

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "_", name).lower()

    tops = md.packages_distributions()
    imported = {norm(d) for m in modules for d in tops.get(m.split(".")[0], [])}
    imported.add("folio")  # app.__version__ reads folio's metadata (an editable install here)
    required, not_needed = [], {}
    for f in files:
        rel = f.split(":", 1)[1]
        head = rel.split("/", 1)[0]
        if f.startswith("site:") and head.endswith(".dist-info"):
            dist = norm(head[: -len(".dist-info")].rsplit("-", 1)[0])
            if dist not in imported:
                not_needed[f] = ("metadata of a distribution the session imported nothing "
                                 "from (read by a scan of every installed distribution)")
                continue
        required.append(f)
    return sorted(required), not_needed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "session-manifest.json")
    ap.add_argument("--no-window", action="store_true", help="skip the window phase")
    args = ap.parse_args(argv)
    started = time.perf_counter()
    temp = Path(tempfile.mkdtemp(prefix="folio-manifest-"))
    home = temp / "home"
    home.mkdir()
    # A new user: settings, models folder and caches in a new HOME, nothing fetched.
    for var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME",
                "FOLIO_LIBRARY", "FOLIO_MODELS", "FOLIO_HOME", "FOLIO_LOG_DIR"):
        os.environ.pop(var, None)
    os.environ.update(HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                      TOKENIZERS_PARALLELISM="false", QT_QPA_PLATFORM="offscreen")
    children = temp / "children"
    children.mkdir()
    os.environ[CHILD_ENV] = str(children)
    folder = temp / "docs"
    folder.mkdir()
    docs = _make_documents(folder)

    rec = Recorder(temp / "parent.jsonl", "parent")
    rec.install()
    sys.path.insert(0, str(ROOT))
    _cli_phase(temp / "library", docs)
    if not args.no_window:
        _window_phase(temp / "library", folder, docs)
    rec.finish()

    modules: dict[str, None] = {}
    failed: set[str] = set()
    files: dict[str, None] = {}
    dirs: dict[str, None] = {}
    sources: dict[str, set[str]] = {}
    virtual: dict[str, str] = {}
    logs = [temp / "parent.jsonl", *sorted(children.glob("child-*.jsonl"))]
    child_count = len(logs) - 1
    for log in logs:
        events, kinds, loaded = _read(log, virtual)
        if loaded is None:
            raise SystemExit(f"session: {log.name} recorded no loaded modules")
        ok = set(loaded)
        # The order imports started in (audit events), then what only sys.modules shows
        # (importlib.import_module raises no event). sys.modules' own order is not the
        # import order: a package that re-registers itself moves to its end.
        for name in [*events, *loaded]:
            if name in ok:
                modules.setdefault(name)
        failed |= {n for n in events if n not in ok}
        files.update(dict.fromkeys(kinds["file"]))
        dirs.update(dict.fromkeys(kinds["dir"]))
        for pair in kinds["source"]:
            where, reader = pair.split("\t")
            sources.setdefault(where, set()).add(reader)
    failed -= set(modules)
    for name in virtual:
        modules.pop(name, None)
    # Only what exists: importlib.metadata, for one, tries entry_points.txt in every
    # dist-info, and a failed open is no need.
    def exists(entry: str, test) -> bool:
        area, rel = entry.split(":", 1)
        return any(test(folder + rel) for a, folder in _areas() if a == area)

    files = {f: None for f in files if exists(f, os.path.isfile)}
    source_reads, sources_not_needed = [], {}
    for where, readers in sorted(sources.items()):
        reasons = {SOURCE_READERS_NOT_NEEDED.get(r.split(":", 1)[-1] if r.startswith("root:")
                                                 else r) for r in readers}
        if None in reasons:
            source_reads.append(where)
        else:
            sources_not_needed[where] = "; ".join(sorted(reasons))
    dirs = {d: None for d in dirs if exists(d, os.path.isdir)}
    required, not_needed = _split_metadata(list(files), list(modules))
    # Folders the session wrote (the temporary library, HOME) lie outside the three areas;
    # what is left are places the app looks at in its own installation.
    from app import __version__

    manifest = {
        "made_by": "packaging/session_manifest.py",
        "recorded": time.strftime("%Y-%m-%d %H:%M:%S"),
        "python": sys.version.split()[0],
        "folio": __version__,
        "phases": ["cli: ingest, search, ask"] + ([] if args.no_window else [
            "window: start, ingest notes, ask, viewer (PDF, DOCX), settings, models, close"]),
        "model_host_children": child_count,
        "modules": list(modules),
        "virtual_modules": dict(sorted(virtual.items())),
        "files": sorted(required),
        "files_not_needed": not_needed,
        "dirs": sorted(dirs),
        "source_reads": sorted(source_reads),
        "sources_not_needed": sources_not_needed,
        "source_readers": sorted({r for rs in sources.values() for r in rs}),
        "failed_imports": sorted(failed),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(manifest, indent=1) + "\n", "utf-8")
    import shutil

    shutil.rmtree(temp, ignore_errors=True)
    print(f"session manifest: {args.out}: {len(modules)} modules ({child_count} model-host "
          f"children recorded), {len(files)} data files, {len(dirs)} folders, "
          f"{len(failed)} failed optional imports ({time.perf_counter() - started:.0f} s)")
    if child_count == 0:
        print("session: no model-host child was recorded", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
