"""Screenshots of the main window for the docs (docs/screenshots/*.png).

    xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python benchmarks/screenshots.py --platform xcb
    ... benchmarks/screenshots.py --platform xcb --only answer,viewer
    ... benchmarks/screenshots.py --platform xcb --only models   # runs screenshot_models.py

Drives the real `MainWindow` (1400x900) in a throw-away FOLIO_HOME, library and QSettings file,
with the real starter model (hard-linked from the test cache, FOLIO_TEST_MODELS or
~/.cache/folio-test-models, as screenshot_models.py does) and the real embedder:

- first-run.png: the empty library ("Drop documents here"), the starter model loaded, and the
  getting-started guide at its model step (a screen grab: the guide is its own window);
- answer.png: the two sample documents (resources/samples) indexed, a question about them
  asked through the chat box (temperature 0, seed 1), the answer with its source chips under
  it and the first chip's hover preview (a real tooltip event; a screen grab);
- viewer.png: the answer's cited PDF page opened in the source viewer, passage highlighted;
- crash.png: the model process killed (SIGKILL) twelve tokens into an answer: the answer so
  far kept and marked cut off, the banner naming the signal, the window still there;
- indexing.png: three small generated PDFs (tests/docgen.py), the Octave manual and its library
  reference (benchmarks/.corpus, copied; generated 400- and 200-page PDFs without the corpus)
  dropped on the library, grabbed once the manual's own progress bar (5 % or more) and the
  overall bar with rate and ETA show; the ingest is then cancelled.

`--only` picks some of them (comma-separated; steps a shot needs still run, unsaved); "models"
runs benchmarks/screenshot_models.py (the model manager: models.png, models-download.png) in its
own process, "all" takes all six. Without `--only`, the four main-window shots are taken.

`--theme dark` (or light) applies that theme as the Settings dialog does (apply_theme: Folio's
own palette where the platform ignores the request, as Xvfb does) and names the files
`<shot>-dark.png`; docs/screenshots/dark.png is the answer shot taken that way.
docs/screenshots/scale-200.png is the answer shot at 200 % scale:
`QT_SCALE_FACTOR=2 xvfb-run -a -s "-screen 0 3200x2000x24" .venv/bin/python
benchmarks/screenshots.py --platform xcb --only answer --out DIR`, DIR/answer.png.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

MAIN_SHOTS = ["first-run", "answer", "viewer", "crash", "indexing"]
QUESTION = "Tell me about the Karnvik lighthouse."
ANSWER_TOKENS = 46
SAMPLES = ["karnvik-guide.pdf", "ferry-notes.docx"]
SIZE = (1400, 900)
PANES = [440, 960, 320]  # sidebar, conversation, side panel (closed until a source opens it)
VIEWER_PANES = [330, 540, 530]  # the chat keeps its minimum (~515)


def link_starter_model(models: Path) -> None:
    """The real starter model in `models`, hard-linked from the shared test cache."""
    from app.core.models.starter import STARTER_MODEL_FILE, ensure_starter_model

    models.mkdir(parents=True, exist_ok=True)
    cache = Path(os.environ.get("FOLIO_TEST_MODELS", Path.home() / ".cache/folio-test-models"))
    shared = ensure_starter_model(cache)
    try:
        os.link(shared, models / STARTER_MODEL_FILE)
    except OSError:
        shutil.copy2(shared, models / STARTER_MODEL_FILE)
    sidecar = shared.with_name(shared.name + ".sha256")
    if sidecar.exists():
        shutil.copyfile(sidecar, models / sidecar.name)


def to_index(home: Path) -> tuple[list[Path], Path]:
    """What the indexing shot drops, and the big PDF it waits on: three small generated PDFs
    (done by the time of the shot, so the overall bar has moved), the Octave manual (being
    indexed) and its library reference (queued); generated stand-ins without the corpus."""
    from docgen import long_pages, make_pdf

    out = home / "Documents"
    small = [make_pdf(out / f"{name}.pdf", long_pages(6, name), title=title)
             for name, title in (("minutes", "Board minutes 2025"),
                                 ("handbook", "Staff handbook"),
                                 ("invoices", "Invoices Q3"))]
    corpus = ROOT / "benchmarks" / ".corpus"
    big = [Path(shutil.copy2(p, out / p.name))  # in Documents, like the rest
           for p in (corpus / "octave.pdf", corpus / "liboctave.pdf") if p.exists()]
    if not big:
        big = [make_pdf(out / "manual.pdf", long_pages(400, "manual"), title="Manual"),
               make_pdf(out / "reference.pdf", long_pages(200, "reference"), title="Reference")]
    return small + big, big[0]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--platform", default=None, help="QT_QPA_PLATFORM (xcb under xvfb-run)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    ap.add_argument("--only", default=",".join(MAIN_SHOTS),
                    help="comma-separated: first-run, answer, viewer, indexing, models, all")
    ap.add_argument("--keep", action="store_true", help="keep the temporary Folio home")
    ap.add_argument("--theme", default="system", choices=["system", "light", "dark"],
                    help="the theme setting to take the shots in (main-window shots only)")
    args = ap.parse_args()
    only = {s.strip() for s in args.only.split(",") if s.strip()}
    if "all" in only:
        only = set(MAIN_SHOTS) | {"models"}
    unknown = only - set(MAIN_SHOTS) - {"models"}
    if unknown:
        ap.error(f"unknown shot(s): {', '.join(sorted(unknown))}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rc = 0
    if only & set(MAIN_SHOTS):
        rc = shoot_main_window(only, out, args.platform, args.keep, args.theme)
    if "models" in only and rc == 0:
        cmd = [sys.executable, str(ROOT / "benchmarks" / "screenshot_models.py"), "--out", str(out)]
        if args.platform:
            cmd += ["--platform", args.platform]
        rc = subprocess.call(cmd)
    return rc


def shoot_main_window(only: set[str], out: Path, platform: str | None, keep: bool,
                      theme: str = "system") -> int:
    if platform:
        os.environ["QT_QPA_PLATFORM"] = platform
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    home = Path(tempfile.mkdtemp(prefix="folio-screenshots-"))
    os.environ.update(FOLIO_HOME=str(home), FOLIO_LIBRARY=str(home / "library"),
                      FOLIO_LOG_DIR=str(home / "logs"), FOLIO_MODELS=str(home / "models"),
                      FOLIO_QSETTINGS=str(home / "folio.ini"))
    link_starter_model(home / "models")
    docs = home / "Documents"
    docs.mkdir()
    samples = [Path(shutil.copy2(ROOT / "resources" / "samples" / n, docs / n)) for n in SAMPLES]
    dropped, big = to_index(home)

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    from app.ui.main_window import MainWindow

    window = MainWindow(guide=True)  # the starter model and the guide, as a first start
    window.resize(*SIZE)
    window.show()
    window.splitter.setSizes(PANES)
    window.start()
    if theme != "system":
        from app.ui.settings_dialog import apply_theme

        apply_theme(theme)
    suffix = "" if theme == "system" else f"-{theme}"
    lib, chat = window.library, window.chat
    wrote: list[str] = []
    failed: list[str] = []
    state: dict = {"sources": []}
    chat.sources_received.connect(lambda s: state.__setitem__("sources", s))

    def grab(name: str, then, screen: bool = False) -> None:
        """Save the window; `screen`: the screen where the window is, with the windows
        above it (a dialog, a tooltip), which grabbing the window alone leaves out."""
        def do() -> None:
            window.statusBar().clearMessage()  # no 5-second message left from the step before
            app.processEvents()
            path = out / f"{name}{suffix}.png"
            if screen:
                g = window.frameGeometry()
                image = window.screen().grabWindow(0, g.x(), g.y(), g.width(), g.height())
            else:
                image = window.grab()
            if image.save(str(path)):
                wrote.append(str(path))
            else:
                failed.append(f"{name}: could not save {path}")
            then()
        QTimer.singleShot(700, do)  # let the last layout, repaint and render timer land

    def when(cond, then, what: str, timeout_s: float = 300, every_ms: int = 100) -> None:
        left = [int(timeout_s * 1000 / every_ms)]

        def check() -> None:
            if cond():
                then()
            elif left[0] <= 0:
                failed.append(f"timed out waiting for {what}")
                finish()
            else:
                left[0] -= 1
                QTimer.singleShot(every_ms, check)
        check()

    def select(path: Path) -> None:  # fills the details pane under the list
        items = lib.doc_items(str(Path(path).resolve()))
        if items:
            lib.tree.setCurrentItem(items[0])

    def idle() -> bool:
        return not window.workers.running()

    # -- the steps, in order ---------------------------------------------------------------

    def first_run() -> None:
        def shown() -> None:
            window.guide.show_step(1)  # the model step: what the starter model is, the others
            grab("first-run", skip_guide, screen=True) if "first-run" in only else skip_guide()

        def skip_guide() -> None:
            window.guide.finish()
            answer()

        when(lambda: window.model_info is not None and lib.opened and idle()
             and window.guide is not None and window.guide.isVisible(), shown,
             "the model, the library and the guide")

    def answer() -> None:
        if not only & {"answer", "viewer"}:
            return crash()
        done = {"ingest": False, "answer": None}
        lib.ingest_finished.connect(lambda _s: done.__setitem__("ingest", True))
        lib.ingest([str(p) for p in samples])

        def ask() -> None:
            chat.answer_finished.connect(lambda ev: done.__setitem__("answer", ev or False))
            chat_id = chat.new_chat()
            # The likeliest words with a fixed seed: the same answer every run, cut where the
            # starter model's first paragraph ends (it wanders after it).
            window.model.temperature.setValue(0.0)
            window.model.max_tokens.setValue(ANSWER_TOKENS)
            settings = chat.store.get_chat(chat_id).settings or {}
            chat.store.update_chat(chat_id, settings={**settings, "seed": 1})
            chat.ask(QUESTION)
            when(lambda: done["answer"] is not None and idle(), answered, "the answer")

        def answered() -> None:
            if not done["answer"] or not state["sources"]:
                failed.append("the answer failed or listed no sources")
                return finish()
            chat.view.verticalScrollBar().setValue(0)
            select(samples[0])
            hover_first_source()
            grab("answer", viewer, screen=True) if "answer" in only else viewer()

        when(lambda: done["ingest"] and not lib.indexing and idle()
             and all(lib.status_of(str(p)) == "ready" for p in samples), ask, "the samples")

    def hover_first_source() -> None:
        """A tooltip event over the first source chip, as resting the mouse there sends."""
        from PySide6.QtCore import QEvent, QPoint
        from PySide6.QtGui import QHelpEvent, QTextCursor

        view = chat.view
        cursor = QTextCursor(view.document())
        for pos in range(1, view.document().characterCount()):
            cursor.setPosition(pos)
            if cursor.charFormat().anchorHref().startswith("src:"):
                at = view.cursorRect(cursor).center() + QPoint(4, 0)
                event = QHelpEvent(QEvent.Type.ToolTip, at, view.viewport().mapToGlobal(at))
                app.sendEvent(view.viewport(), event)
                return
        failed.append("no source chip to hover")

    def viewer() -> None:
        from PySide6.QtWidgets import QToolTip

        QToolTip.hideText()
        if "viewer" not in only:
            return crash()
        pdf = str(samples[0])
        cited = [s for s in state["sources"] if s.get("path") == pdf and s.get("page")]
        source = (cited or state["sources"])[0]
        shown: list = []
        window.splitter.setSizes(VIEWER_PANES)
        window.open_source(source)
        window.viewer.source_shown.connect(shown.append)
        when(lambda: shown or window.viewer.mode == "pdf", lambda: grab("viewer", crash),
             "the source viewer")

    def crash() -> None:
        if "crash" not in only:
            return indexing()
        import signal

        window.show_side_panel(False)
        window.splitter.setSizes(PANES)
        done = {"answer": None, "tokens": 0}
        chat.answer_finished.connect(lambda ev: done.__setitem__("answer", ev or False))

        def on_token(_t: str) -> None:
            done["tokens"] += 1
            if done["tokens"] == 12:
                os.kill(window.folio.runtime.pid, signal.SIGKILL)

        chat.token_received.connect(on_token)
        chat.new_chat()
        chat.set_scope({"mode": "none"})
        window.model.temperature.setValue(0.0)
        window.model.max_tokens.setValue(300)
        chat.ask("Write a long story about a lighthouse keeper.")

        def crashed() -> None:
            chat.token_received.disconnect(on_token)
            grab("crash", indexing)

        when(lambda: done["answer"] is not None and idle(), crashed, "the cut-off answer")

    def indexing() -> None:
        if "indexing" not in only:
            return finish()
        window.show_side_panel(False)  # the library is the subject
        window.splitter.setSizes(PANES)
        first = str(big.resolve())
        lib.ingest([str(p) for p in dropped])

        def showing() -> bool:
            done, total = lib.file_progress.get(first, (0, 0))
            text = lib.progress_label.text()
            return (total > 0 and done / total >= 0.05 and "passages/s" in text
                    and "ETA" in text and "ETA –" not in text)

        def stop() -> None:
            lib.cancel_ingest()
            when(lambda: lib.ingest_job is None and idle(), finish, "the cancelled ingest", 120)

        when(showing, lambda: (select(big), grab("indexing", stop)), "the indexing progress",
             600, 50)

    def finish() -> None:
        window.close()
        app.quit()

    QTimer.singleShot(300, first_run)
    QTimer.singleShot(1_200_000, lambda: (failed.append("gave up after 20 min"), app.quit()))
    app.exec()
    for path in wrote:
        print(f"wrote {path}")
    for why in failed:
        print(f"FAILED: {why}", file=sys.stderr)
    if keep:
        print(f"kept {home}")
    else:
        shutil.rmtree(home, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
