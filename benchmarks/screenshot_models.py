"""Screenshots of the model manager for the docs (docs/screenshots/models*.png).

    xvfb-run -a .venv/bin/python benchmarks/screenshot_models.py --platform xcb

Builds a throw-away Folio home whose models folder holds the real starter model (hard-linked
from the test cache or assembled), two small GGUFs written with the `gguf` package (one with a
chat template, one whose header asks for a context that cannot fit) and a truncated file;
loads the starter model for real; pauses a download from a local HTTP server half-way so the
Download tab shows a resumable partial; then grabs the manager window.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def prepare(home: Path) -> Path:
    from app.core.models.starter import STARTER_MODEL_FILE, ensure_starter_model

    models = home / "models"
    models.mkdir(parents=True)
    cache = Path(os.environ.get("FOLIO_TEST_MODELS", Path.home() / ".cache/folio-test-models"))
    shared = ensure_starter_model(cache)
    try:
        os.link(shared, models / STARTER_MODEL_FILE)
    except OSError:
        shutil.copy2(shared, models / STARTER_MODEL_FILE)
    sidecar = shared.with_name(shared.name + ".sha256")
    if sidecar.exists():
        shutil.copyfile(sidecar, models / sidecar.name)
    from test_ui_models import write_gguf

    write_gguf(models / "tiny-chat-f16.gguf", name="Tiny Chat", context=8192,
               template="{% for m in messages %}{{ m.content }}{% endfor %}",
               license="apache-2.0", tensor_bytes=4 * 1024 * 1024)
    write_gguf(models / "long-context-test.gguf", name="Long Context Test",
               context=1_048_576, layers=200, heads_kv=64, head_dim=256, license="mit")
    (models / "broken-download.gguf").write_bytes(
        (models / "tiny-chat-f16.gguf").read_bytes()[:300])
    return models


def serve(data: bytes) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", '"shot"')
            self.end_headers()
            try:
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):
                pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--platform", default=None, help="QT_QPA_PLATFORM (xcb under xvfb-run)")
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = ap.parse_args()
    if args.platform:
        os.environ["QT_QPA_PLATFORM"] = args.platform
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    home = Path(tempfile.mkdtemp(prefix="folio-shot-"))
    os.environ.update(FOLIO_HOME=str(home), FOLIO_LIBRARY=str(home / "library"),
                      FOLIO_LOG_DIR=str(home / "logs"), FOLIO_MODELS=str(home / "models"),
                      FOLIO_QSETTINGS=str(home / "folio.ini"))
    models = prepare(home)

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication(sys.argv[:1])
    from app.core.models.starter import STARTER_MODEL_FILE
    from app.ui.main_window import MainWindow

    window = MainWindow(load_model=False)
    window.show()
    window.start()
    panel = window.model
    view = panel.open_manager()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # A partial download, paused at about 40 %, as an earlier session would leave it.
    data = (models / "tiny-chat-f16.gguf").read_bytes()
    httpd, base = serve(data)
    url = base + "tiny-chat-q8_0.gguf"
    stop = threading.Event()
    for ev in window.folio.models.download(url, should_stop=stop.is_set):
        if ev.done_bytes:
            stop.set()
    part = next(iter((models / ".downloads").glob("*.part")))
    with part.open("r+b") as f:  # cut it back so the bar shows a partial
        f.truncate(int(len(data) * 0.4))
    httpd.shutdown()

    steps = iter(["load", "installed", "downloads", "quit"])

    def step(*_a) -> None:
        what = next(steps)
        if what == "load":
            view.refresh()
            view.listed.connect(once)
        elif what == "installed":
            view.select(STARTER_MODEL_FILE)
            QTimer.singleShot(400, lambda: (view.grab().save(str(out / "models.png")),
                                            step()))
        elif what == "downloads":
            view.tabs.setCurrentIndex(1)
            QTimer.singleShot(400, lambda: (view.grab().save(str(out / "models-download.png")),
                                            step()))
        elif window.workers.running():  # let the warm-up after the load finish first
            QTimer.singleShot(200, lambda: (steps_back(), step()))
        else:
            window.close()
            app.quit()

    def steps_back() -> None:
        nonlocal steps
        steps = iter(["quit"])

    def once(_listing) -> None:
        view.listed.disconnect(once)
        panel.model_changed.connect(loaded)
        panel.load(STARTER_MODEL_FILE)

    def loaded(_info) -> None:
        panel.model_changed.disconnect(loaded)
        QTimer.singleShot(800, step)  # the listing that follows a load lands first

    QTimer.singleShot(300, step)
    QTimer.singleShot(180_000, app.quit)  # never hang a CI job
    app.exec()
    print(f"wrote {out / 'models.png'} and {out / 'models-download.png'}")
    shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
