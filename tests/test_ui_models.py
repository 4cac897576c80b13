"""The model manager view driven through its real widgets (pytest-qt, offscreen): the real
starter model and small GGUFs written with the `gguf` package, a real HTTP server on
127.0.0.1 for downloads, the real llama.cpp for loading. No sleeps in the tests: every wait is
on a signal or a condition (the test server throttles itself; that is the server being slow,
not the test waiting).

Each test gets its own models folder holding a hard link to the shared starter model (so
removing it or adding beside it never touches the shared cache, and nothing is assembled)."""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_MODELS
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QDialogButtonBox,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QTextBrowser,
    QToolButton,
    QTreeWidget,
)
from test_ui_window import drop

from app.core.base.units import human_bytes
from app.core.models.gguf import read_gguf_info
from app.core.models.starter import STARTER_MODEL_FILE
from app.ui.main_window import MainWindow
from app.ui.models import common, listing
from app.ui.models.common import (
    COL_ARCH,
    COL_CTX,
    COL_LICENSE,
    COL_MEMORY,
    COL_NAME,
    COL_NOTES,
    COL_PARAMS,
    COL_QUANT,
    COL_SIZE,
    COL_STATE,
    COL_TEMPLATE,
    NAME_ROLE,
    UrlDialog,
)
from app.ui.models.downloads import DownloadRow

gguf = pytest.importorskip("gguf", reason="the gguf package writes the test models")

LIST_TIMEOUT = 60_000  # ms: header reads on two shared cores
LOAD_TIMEOUT = 120_000
DOWNLOAD_TIMEOUT = 60_000


# -- model files ------------------------------------------------------------------------------

def write_gguf(path: Path, *, name: str = "Tiny Chat", arch: str = "llama",
               context: int = 2048, template: str | None = "{{ messages }}",
               license: str | None = "apache-2.0", tensor_bytes: int = 64 * 1024,
               layers: int = 2, heads_kv: int = 2, head_dim: int = 16) -> Path:
    """A small, well-formed GGUF (not loadable by llama.cpp: one placeholder tensor)."""
    w = gguf.GGUFWriter(str(path), arch)
    w.add_name(name)
    w.add_context_length(context)
    w.add_block_count(layers)
    w.add_embedding_length(heads_kv * head_dim)
    w.add_head_count(heads_kv)
    w.add_head_count_kv(heads_kv)
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    if template is not None:
        w.add_chat_template(template)
    if license is not None:
        w.add_license(license)
    w.add_tensor("token_embd.weight", np.zeros(tensor_bytes // 4, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def models_dir(tmp_path, monkeypatch) -> Path:
    """A models folder of its own with the starter model in it (a hard link to the shared
    cache where the file system allows it, else a copy) and its sha256 sidecar."""
    from app.core.models.starter import ensure_starter_model

    shared = ensure_starter_model(SHARED_MODELS)
    folder = tmp_path / "models"
    folder.mkdir()
    target = folder / STARTER_MODEL_FILE
    try:
        os.link(shared, target)
    except OSError:
        shutil.copy2(shared, target)
    sidecar = shared.with_name(shared.name + ".sha256")
    if sidecar.exists():
        shutil.copyfile(sidecar, folder / sidecar.name)
    monkeypatch.setenv("FOLIO_MODELS", str(folder))
    return folder


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch, models_dir):
    monkeypatch.setenv("FOLIO_QSETTINGS", str(tmp_path / "folio.ini"))
    w = MainWindow(load_model=False)
    qtbot.addWidget(w)
    w.show()
    w.start()
    yield w
    w.close()


def open_view(qtbot, window):
    """The manager window, after its first listing."""
    view = window.model.manager_view()
    qtbot.waitUntil(lambda: not view._refreshing and bool(view.listing.entries),
                    timeout=LIST_TIMEOUT)
    window.model.open_manager()
    return view


def wait_listed(qtbot, view, predicate, timeout=LIST_TIMEOUT):
    """Wait for a listing (a fresh one) that satisfies `predicate(listing)`."""
    view.refresh()
    qtbot.waitUntil(lambda: not view._refreshing and bool(predicate(view.listing)),
                    timeout=timeout)


def row(view, name: str):
    item = view.rows.get(name)
    assert item is not None, f"{name} not listed: {sorted(view.rows)}"
    return item


def click(qtbot, button) -> None:
    assert button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


# -- a slow HTTP server -------------------------------------------------------------------------

class ModelServer:
    """Serves one file on 127.0.0.1 with Range support, in 32 KB pieces. A full (non-Range)
    request stops after `gate_at` bytes until `gate` is set, so a test can act while a
    download is certainly in the middle."""

    def __init__(self, data: bytes, *, gate_at: int | None = None, status: int = 200,
                 headers: dict[str, str] | None = None):
        self.data = data
        self.status = status
        self.headers = dict(headers or {})  # added to every answer (e.g. X-Linked-Etag)
        self.gate_at = gate_at
        self.gate = threading.Event()
        self.ranges: list[str | None] = []
        self.served = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_GET(self):
                rng = self.headers.get("Range")
                server.ranges.append(rng)
                if server.status != 200:
                    self.send_error(server.status)
                    return
                start = 0
                if rng and rng.startswith("bytes="):
                    start = int(rng[len("bytes="):].split("-")[0])
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(server.data) - 1}/{len(server.data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(server.data) - start))
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("ETag", '"test-model-1"')
                self.send_header("Accept-Ranges", "bytes")
                for k, v in server.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                pos = start
                try:
                    while pos < len(server.data):
                        held = rng is None and server.gate_at is not None
                        if held and pos >= server.gate_at and not server.gate.wait(60):
                            return
                        piece = server.data[pos:pos + 32 * 1024]
                        self.wfile.write(piece)
                        server.served += len(piece)
                        pos += len(piece)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client paused

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/models/"

    def close(self) -> None:
        self.gate.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def serve():
    servers: list[ModelServer] = []

    def start(data: bytes, **kw) -> ModelServer:
        s = ModelServer(data, **kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.close()


# -- tests --------------------------------------------------------------------------------------

def test_lists_the_starter_model_with_what_its_header_says(qtbot, window, models_dir):
    broken = models_dir / "broken.gguf"
    broken.write_bytes(read_gguf_prefix(models_dir / STARTER_MODEL_FILE))
    view = open_view(qtbot, window)
    assert view.isVisible()
    wait_listed(qtbot, view, lambda lst: "broken.gguf" in {e.name for e in lst.entries})

    info = read_gguf_info(models_dir / STARTER_MODEL_FILE)
    item = row(view, STARTER_MODEL_FILE)
    assert item.text(COL_ARCH) == info.architecture
    assert item.text(COL_PARAMS) == info.parameters_label()
    assert item.text(COL_QUANT) == info.quantization
    assert item.text(COL_CTX).replace(",", "") == str(info.context_length)
    assert item.text(COL_TEMPLATE) == ("Yes" if info.has_chat_template else "No")
    assert item.text(COL_LICENSE) == (info.license or "–")
    assert item.text(COL_SIZE) == human_bytes(info.file_size)
    assert "Default" in item.text(COL_STATE)  # nothing chosen: the starter is the default
    est = window.folio.models.estimate_memory(info, context_length=window.folio.n_ctx)
    assert item.text(COL_MEMORY).startswith(human_bytes(est.total_bytes))
    assert ("fits" if est.fits else "will not fit") in item.text(COL_MEMORY)
    assert "KV cache" in item.toolTip(COL_MEMORY)

    # Selecting it shows its details and its settings, with the estimate for the context.
    view.table.setCurrentItem(item)
    details = view.details.toPlainText()
    assert str(models_dir / STARTER_MODEL_FILE) in details
    assert info.architecture in details and f"{info.context_length:,}" in details
    assert view.editor_box.isEnabled()
    assert human_bytes(est.total_bytes) in view.estimate.text()

    # The unreadable file is listed with its error.
    bad = row(view, "broken.gguf")
    entry = view.entry("broken.gguf")
    assert entry.error and "Unreadable" in bad.text(COL_STATE)
    assert bad.text(COL_NOTES).lower() in entry.error.lower()
    view.table.setCurrentItem(bad)
    assert entry.error in view.details.toPlainText()
    assert not view.load_btn.isEnabled() and view.remove_btn.isEnabled()

    # The catalog, with what each needs against the free RAM, and a Download button each.
    catalog = window.folio.models.catalog()
    assert view.catalog.topLevelItemCount() == len(catalog) > 0
    free = view.listing.free_ram
    for i, c in enumerate(catalog):
        item = view.catalog.topLevelItem(i)
        assert item.text(common.CAT_NAME) == c.name
        assert item.text(common.CAT_SIZE) == human_bytes(c.size_bytes)
        assert item.text(common.CAT_LICENSE) == c.license
        assert ("Fits" in item.text(common.CAT_FITS)) == (c.ram_bytes <= free)
        button = view.catalog.itemWidget(item, common.CAT_BUTTON)
        assert button.text() == "Download" and button.isEnabled()
        assert button.accessibleName() == f"Download {c.name}"

    # The tab sums it up and offers the models to this chat.
    assert "2 models" in window.model.summary.text() and "1 unreadable" in \
        window.model.summary.text()
    combo = window.model.chat_model
    assert [combo.itemData(i) for i in range(combo.count())] == [None, STARTER_MODEL_FILE]

    # Every control has an accessible name and takes keyboard focus.
    kinds = (QPushButton, QToolButton, QAbstractSpinBox, QPlainTextEdit, QTreeWidget,
             QComboBox, QTextBrowser)
    for widget in (view, window.model):
        for w in [c for kind in kinds for c in widget.findChildren(kind)]:
            assert w.accessibleName(), f"{type(w).__name__} {getattr(w, 'text', str)()!r}"
            assert w.focusPolicy() & Qt.FocusPolicy.TabFocus, w.accessibleName()


def read_gguf_prefix(path: Path, n: int = 4096) -> bytes:
    """The first bytes of a real GGUF: the right magic, a header that stops mid-way."""
    with path.open("rb") as f:
        return f.read(n)


def test_drop_gguf_on_window_adds_it_and_a_non_gguf_is_refused(qtbot, window, tmp_path,
                                                               models_dir, monkeypatch):
    src = write_gguf(tmp_path / "tiny-chat.gguf", context=8192, license="mit")
    view = open_view(qtbot, window)
    # Dropped on the chat, as a file manager would: it goes to the models, not the library.
    with qtbot.waitSignal(view.added, timeout=LIST_TIMEOUT) as added:
        drop(window.chat.view.viewport(), [src])
    assert added.args[0].name == "tiny-chat.gguf"
    assert (models_dir / "tiny-chat.gguf").is_file() and src.is_file()  # a copy
    qtbot.waitUntil(lambda: "tiny-chat.gguf" in view.rows, timeout=LIST_TIMEOUT)
    item = row(view, "tiny-chat.gguf")
    assert item.text(COL_ARCH) == "llama"
    assert item.text(COL_CTX) == "8,192"
    assert item.text(COL_TEMPLATE) == "Yes"
    assert item.text(COL_LICENSE) == "mit"
    # The new model is shown (a listing the folder watcher started may have had its row
    # before the add finished: wait on the selection, not only on the row).
    qtbot.waitUntil(lambda: view.selected_name() == "tiny-chat.gguf", timeout=LIST_TIMEOUT)

    # Set as default: remembered by the manager, shown in the table and the chat's choice.
    with qtbot.waitSignal(view.default_changed, timeout=LIST_TIMEOUT):
        click(qtbot, view.default_btn)
    assert window.folio.models.default_name() == "tiny-chat.gguf"
    qtbot.waitUntil(lambda: "Default" in row(view, "tiny-chat.gguf").text(COL_STATE),
                    timeout=LIST_TIMEOUT)
    assert "Default" not in row(view, STARTER_MODEL_FILE).text(COL_STATE)
    assert "tiny-chat" in window.model.chat_model.itemText(0)
    assert window.library.status_of(str(src)) is None  # not indexed as a document
    assert view.isVisible()

    # Not a GGUF (right name, wrong bytes), dropped on the manager: refused with the reason.
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04 this is a zip file, not a model" * 100)
    with qtbot.waitSignal(view.add_refused, timeout=LIST_TIMEOUT) as refused:
        drop(view.table.viewport(), [fake])
    path, reason = refused.args
    assert path == str(fake) and reason
    assert "fake.gguf" in view.message.text.text() and reason in view.message.text.text()
    assert view.message.isVisible()
    assert window.banner.isVisible() and reason in window.banner.text.text()
    assert not (models_dir / "fake.gguf").exists()
    assert not [p for p in models_dir.iterdir() if p.name.startswith(".")
                and p.name != ".downloads"]  # no temp file left

    # Add…: the file dialog, then "Link" (the only dialogs here; their answers are given).
    linked = write_gguf(tmp_path / "linked.gguf", name="Linked")
    monkeypatch.setattr(listing.QFileDialog, "getOpenFileName",
                        lambda *a, **k: (str(linked), "GGUF models (*.gguf)"))
    monkeypatch.setattr(listing, "ask_copy_or_link", lambda parent, name: True)
    with qtbot.waitSignal(view.added, timeout=LIST_TIMEOUT):
        click(qtbot, view.add_btn)
    assert (models_dir / "linked.gguf").is_symlink()
    assert (models_dir / "linked.gguf").resolve() == linked.resolve()
    qtbot.waitUntil(lambda: "linked.gguf" in view.rows, timeout=LIST_TIMEOUT)
    assert "Link to" in row(view, "linked.gguf").text(COL_NOTES)

    # A truncated GGUF dropped on the model tab: refused too, nothing left behind.
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(src.read_bytes()[:200])
    with qtbot.waitSignal(view.add_refused, timeout=LIST_TIMEOUT) as refused:
        drop(window.model, [cut])
    assert "cut.gguf" in view.message.text.text()
    assert not (models_dir / "cut.gguf").exists()


def test_download_with_progress_pause_resume_then_listed(qtbot, window, tmp_path, models_dir,
                                                         serve):
    data = write_gguf(tmp_path / "served.gguf", name="Served Chat",
                      tensor_bytes=3 * 1024 * 1024).read_bytes()
    server = serve(data, gate_at=1536 * 1024)
    url = server.url + "served-chat.gguf"
    view = open_view(qtbot, window)

    # "Download from URL…": the real dialog, filled in and accepted.
    click(qtbot, view.url_btn)
    dialog = view.findChild(UrlDialog)
    assert dialog is not None and dialog.isVisible()
    qtbot.keyClicks(dialog.url, url)
    qtbot.keyClicks(dialog.sha256, hashlib.sha256(data).hexdigest())
    click(qtbot, dialog.findChild(QDialogButtonBox).button(QDialogButtonBox.StandardButton.Ok))
    qtbot.waitUntil(lambda: url in view.downloads)
    dl = view.downloads[url]
    assert view.tabs.currentIndex() == 1 and dl.isVisible()

    # Progress arrives while the server holds back the second half.
    qtbot.waitUntil(lambda: dl.done_bytes >= 1024 * 1024, timeout=DOWNLOAD_TIMEOUT)
    assert dl.total_bytes == len(data)
    assert 0 < dl.bar.value() < 1000
    assert "/s" in dl.status.text() and "of" in dl.status.text()
    assert dl.pause_btn.text() == "Pause"

    # Pause: the partial stays; the row offers Resume.
    with qtbot.waitSignal(view.download_paused, timeout=DOWNLOAD_TIMEOUT):
        click(qtbot, dl.pause_btn)
        server.gate.set()
    assert dl.state == "paused" and dl.pause_btn.text() == "Resume"
    partials = window.folio.models.partial_downloads()
    assert [p.url for p in partials] == [url]
    paused_at = partials[0].done_bytes
    assert 0 < paused_at < len(data)
    assert not (models_dir / "served-chat.gguf").exists()

    # Resume: an HTTP Range request for the rest; verified; listed.
    with qtbot.waitSignal(view.download_finished, timeout=DOWNLOAD_TIMEOUT) as finished:
        click(qtbot, dl.pause_btn)
    assert finished.args[0].path == models_dir / "served-chat.gguf"
    assert server.ranges[-1] == f"bytes={paused_at}-"
    assert server.served < 2 * len(data)
    assert (models_dir / "served-chat.gguf").read_bytes() == data
    assert dl.state == "done" and dl.bar.value() == 1000
    assert dl.verified is True and "verified: sha256 matches the one given" in dl.status.text()
    qtbot.waitUntil(lambda: "served-chat.gguf" in view.rows, timeout=LIST_TIMEOUT)
    assert row(view, "served-chat.gguf").text(COL_TEMPLATE) == "Yes"
    assert not window.folio.models.partial_downloads()


def test_partial_download_found_at_start_is_resumable_and_cancel_deletes_it(
        qtbot, window, tmp_path, models_dir, serve):
    data = write_gguf(tmp_path / "served.gguf", tensor_bytes=3 * 1024 * 1024).read_bytes()
    server = serve(data, gate_at=1536 * 1024)
    url = server.url + "later.gguf"
    # An earlier session paused this download (the engine, as a previous run would have).
    manager = window.folio.models
    stop = threading.Event()
    for ev in manager.download(url, should_stop=stop.is_set):
        if ev.done_bytes >= 1024 * 1024:
            stop.set()
            server.gate.set()
    assert manager.partial_downloads()

    view = open_view(qtbot, window)
    # The window's first listing may have caught the partial file while it was being written
    # (0 B); the one opening the view brings the row up to date: wait on what it shows.
    qtbot.waitUntil(lambda: url in view.downloads and view.downloads[url].bar.value() > 0,
                    timeout=LIST_TIMEOUT)
    dl = view.downloads[url]
    assert dl.state == "paused" and dl.pause_btn.text() == "Resume"
    assert "Paused" in dl.status.text() and "of 3.0 MB downloaded" in dl.status.text()

    click(qtbot, dl.cancel_btn)
    qtbot.waitUntil(lambda: url not in view.downloads, timeout=LIST_TIMEOUT)
    assert not manager.partial_downloads()
    assert not any((models_dir / ".downloads").iterdir())


def test_download_errors_are_shown_without_a_dialog(qtbot, window, serve, monkeypatch):
    server = serve(b"", status=404)
    view = open_view(qtbot, window)
    modal: list[str] = []
    for name in ("critical", "warning", "information", "question"):
        monkeypatch.setattr(QMessageBox, name, lambda *a, _n=name, **k: modal.append(_n))

    # A 404.
    url = server.url + "missing.gguf"
    with qtbot.waitSignal(view.download_failed, timeout=DOWNLOAD_TIMEOUT) as failed:
        view.download(url)
    assert "404" in failed.args[1]
    dl = view.downloads[url]
    assert dl.state == "failed" and "404" in dl.status.text()
    assert dl.pause_btn.text() == "Retry"
    assert "404" in view.message.text.text() and "404" in window.banner.text.text()

    # The wrong checksum: refused, and no file among the models.
    good = serve(b"GGUF" + bytes(4096))
    with qtbot.waitSignal(view.download_failed, timeout=DOWNLOAD_TIMEOUT) as failed:
        view.download(good.url + "wrong-sum.gguf", sha256="0" * 64)
    assert "checksum" in failed.args[1]
    assert not (Path(window.folio.models.models_dir) / "wrong-sum.gguf").exists()
    downloads = window.folio.models.downloads_dir  # the hidden partials: none kept
    assert downloads.is_dir() and not any(downloads.iterdir())

    # No server listening: "no network" in so many words.
    server.close()
    with qtbot.waitSignal(view.download_failed, timeout=DOWNLOAD_TIMEOUT) as failed:
        view.download(server.url + "gone.gguf")
    assert "refused" in failed.args[1] or "Cannot connect" in failed.args[1]
    assert not modal and QApplication.activeModalWidget() is None


def test_remove_asks_first_and_deletes_the_file(qtbot, window, tmp_path, models_dir,
                                                monkeypatch):
    write_gguf(models_dir / "spare.gguf")
    view = open_view(qtbot, window)
    qtbot.waitUntil(lambda: "spare.gguf" in view.rows, timeout=LIST_TIMEOUT)
    view.select("spare.gguf")
    asked: list[str] = []

    def answer(reply):
        def question(parent, title, text, *a, **k):
            asked.append(text)
            return reply
        return question

    # "No" keeps it.
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.No))
    click(qtbot, view.remove_btn)
    assert asked and "spare.gguf" in asked[-1] and "deleted" in asked[-1]
    assert (models_dir / "spare.gguf").exists()

    # "Yes" removes it.
    monkeypatch.setattr(QMessageBox, "question", answer(QMessageBox.StandardButton.Yes))
    with qtbot.waitSignal(view.removed, timeout=LIST_TIMEOUT):
        click(qtbot, view.remove_btn)
    assert not (models_dir / "spare.gguf").exists()
    qtbot.waitUntil(lambda: "spare.gguf" not in view.rows, timeout=LIST_TIMEOUT)
    assert STARTER_MODEL_FILE in view.rows


def test_load_settings_reload_unload_and_the_chats_model(qtbot, window, models_dir,
                                                         monkeypatch):
    view = open_view(qtbot, window)
    panel = window.model
    view.select(STARTER_MODEL_FILE)
    assert panel.name.text() != STARTER_MODEL_FILE

    # Load: progress while it loads, then where it runs.
    with qtbot.waitSignal(panel.model_changed, timeout=LOAD_TIMEOUT) as loaded:
        click(qtbot, view.load_btn)
        # (the Model tab may be closed: its progress bar is shown within it all the same)
        assert not panel.load_progress.isHidden() or panel.info is not None
    info = loaded.args[0]
    assert info is not None and Path(info.path).name == STARTER_MODEL_FILE
    assert panel.device.text().startswith(info.device.upper())
    assert info.name in window.model_status.text()
    qtbot.waitUntil(lambda: "Loaded" in row(view, STARTER_MODEL_FILE).text(COL_STATE))
    assert info.device.upper() in row(view, STARTER_MODEL_FILE).text(COL_STATE)
    assert view.load_btn.text() == "Reload" and view.unload_btn.isEnabled()

    # Per-model settings: saved by the manager, applied by "Save and reload".
    view.select(STARTER_MODEL_FILE)
    view.ctx_spin.setValue(1024)
    view.prompt_edit.setPlainText("Answer like a lighthouse keeper.")
    with qtbot.waitSignal(panel.model_changed, timeout=LOAD_TIMEOUT) as reloaded:
        click(qtbot, view.reload_btn)
    assert reloaded.args[0].n_ctx == 1024
    saved = window.folio.models.settings_for(STARTER_MODEL_FILE)
    assert saved.context_length == 1024
    assert saved.system_prompt == "Answer like a lighthouse keeper."
    assert "1,024" in panel.context.text()

    # Unload.
    with qtbot.waitSignal(panel.model_changed, timeout=LOAD_TIMEOUT) as unloaded:
        click(qtbot, view.unload_btn)
    assert unloaded.args[0] is None
    assert window.model_status.text() == "No model loaded"
    assert "Loaded" not in row(view, STARTER_MODEL_FILE).text(COL_STATE)
    assert not view.unload_btn.isEnabled()

    # A chat's model: chosen in the tab, stored with the chat, and loaded.
    chat_id = window.chat.new_chat()
    combo = panel.chat_model
    assert combo.isEnabled() and combo.currentData() is None
    with qtbot.waitSignal(panel.model_changed, timeout=LOAD_TIMEOUT):
        combo.setCurrentIndex(combo.findData(STARTER_MODEL_FILE))
    assert window.folio.store.get_chat(chat_id).model == STARTER_MODEL_FILE
    other = window.chat.new_chat()
    assert combo.currentData() is None  # a new chat follows the default
    window.chat.open_chat(chat_id)
    assert combo.currentData() == STARTER_MODEL_FILE
    assert other != chat_id

    # Removing the model in use unloads it first.
    qtbot.waitUntil(lambda: panel.info is not None, timeout=LOAD_TIMEOUT)
    view.refresh()
    qtbot.waitUntil(lambda: not view._refreshing, timeout=LIST_TIMEOUT)
    view.select(STARTER_MODEL_FILE)
    monkeypatch.setattr(QMessageBox, "question", lambda parent, title, text, *a, **k: (
        QMessageBox.StandardButton.Yes if "unloaded first" in text
        else QMessageBox.StandardButton.No))
    with qtbot.waitSignal(view.removed, timeout=LOAD_TIMEOUT):
        click(qtbot, view.remove_btn)
    assert panel.info is None and window.model_status.text() == "No model loaded"
    assert window.folio.model_name is None
    assert not (models_dir / STARTER_MODEL_FILE).exists()


def test_a_model_that_will_not_fit_says_so_before_loading(qtbot, window, models_dir):
    # A header that claims a 1M-token context with big attention: its KV cache alone is
    # terabytes at full context.
    write_gguf(models_dir / "huge-context.gguf", context=1_048_576, layers=200, heads_kv=64,
               head_dim=256)
    view = open_view(qtbot, window)
    qtbot.waitUntil(lambda: "huge-context.gguf" in view.rows, timeout=LIST_TIMEOUT)
    view.select("huge-context.gguf")
    view.ctx_spin.setValue(view.ctx_spin.maximum())
    assert view.ctx_spin.value() == 1_048_576
    assert "Will not fit" in view.estimate.text()
    with qtbot.waitSignal(view.settings_saved, timeout=LIST_TIMEOUT):
        click(qtbot, view.save_btn)
    qtbot.waitUntil(lambda: "will not fit" in row(view, "huge-context.gguf").text(COL_MEMORY),
                    timeout=LIST_TIMEOUT)
    item = row(view, "huge-context.gguf")
    assert "Will not fit" in item.toolTip(COL_MEMORY)
    assert not item.icon(COL_MEMORY).isNull()
    assert item.data(COL_NAME, NAME_ROLE) == "huge-context.gguf"

    # Loading it anyway is refused before llama.cpp allocates, with the reason.
    with qtbot.waitSignal(window.model.load_failed, timeout=LOAD_TIMEOUT) as failed:
        click(qtbot, view.load_btn)
    assert "will not fit" in failed.args[1]
    assert "will not fit" in view.message.text.text()


# -- estimates, verification, sizes and "Load anyway" ------------------------------------------

def test_estimates_follow_the_saved_batch_and_context(qtbot, window, models_dir):
    from app.core.models.manager import ModelSettings

    # 2,048-wide embeddings: the compute buffers (64 x n_batch x n_embd) show the batch.
    write_gguf(models_dir / "wide.gguf", context=8192, heads_kv=8, head_dim=256)
    manager = window.folio.models
    manager.save_settings("wide.gguf", ModelSettings(batch_size=2048, context_length=6144))
    view = open_view(qtbot, window)
    wait_listed(qtbot, view, lambda lst: "wide.gguf" in lst.estimates)
    entry = manager.get("wide.gguf")
    saved = manager.estimate_memory(entry)  # the saved context and batch
    plain = manager.estimate_memory(entry.info, context_length=6144)  # the default batch
    assert saved.overhead_bytes - plain.overhead_bytes == 64 * (2048 - 512) * 2048
    assert view.listing.estimates["wide.gguf"].total_bytes == saved.total_bytes
    assert view.listing.contexts["wide.gguf"] == 6144
    assert row(view, "wide.gguf").text(COL_MEMORY).startswith(
        human_bytes(saved.total_bytes))

    # The editor estimates what it shows, saved or not.
    view.select("wide.gguf")
    assert view.batch_spin.value() == 2048 and view.ctx_spin.value() == 6144
    assert human_bytes(saved.total_bytes) in view.estimate.text()
    view.batch_spin.setValue(0)  # "Default (512)"
    assert human_bytes(plain.total_bytes) in view.estimate.text()
    assert human_bytes(saved.total_bytes) not in view.estimate.text()


def test_memory_cell_says_when_vram_is_unknown(tmp_path, monkeypatch):
    from app.core.models import fit

    monkeypatch.setattr(fit, "_gpu_offload_supported", lambda: True)
    monkeypatch.setattr(fit, "_unified_memory", lambda: False)
    monkeypatch.setattr(fit, "_free_vram", lambda read=True: None)
    info = read_gguf_info(write_gguf(tmp_path / "m.gguf"))
    est = fit.estimate_memory(info, 2048)
    assert est.vram_unknown and est.fits
    assert common.memory_text(est).endswith("· fits in RAM, VRAM unknown")
    tip = common.memory_tooltip(est, 2048)
    assert "Free VRAM: unknown" in tip and "Fits." not in tip

    monkeypatch.setattr(fit, "_free_vram", lambda read=True: 1024)  # 1 KB of VRAM free
    est = fit.estimate_memory(info, 2048)
    assert common.memory_text(est).endswith("· will not fit")
    assert "Free VRAM: 1 KB" in common.memory_tooltip(est, 2048)


def test_download_row_shows_speed_and_eta(qtbot):
    from app.core.models.download import DownloadProgress

    row = DownloadRow("http://127.0.0.1/x.gguf", "x.gguf", None)
    qtbot.addWidget(row)
    mb = 1024 * 1024
    row.show_progress(DownloadProgress(mb, 4 * mb, float(mb), 3.0, 0))
    assert row.status.text() == "1.0 MB of 4.0 MB · 1.0 MB/s · 3 s left"
    assert row.bar.value() == 250 and row.bar.format() == "25%"
    row.show_progress(DownloadProgress(2 * mb, 200 * mb, 1.6 * mb, 125.0, mb))
    assert row.status.text() == ("2.0 MB of 200.0 MB · 1.6 MB/s · 2 min 05 s left · "
                                 "resumed at 1.0 MB")
    row.show_progress(DownloadProgress(3 * mb, 200 * mb, 0.0, None, 0))  # no ETA yet
    assert "left" not in row.status.text()


def test_catalog_download_is_verified_and_its_size_checked(qtbot, window, tmp_path, serve,
                                                           monkeypatch):
    from app.core.models.catalog import CatalogEntry
    from app.core.models.manager import ModelManager

    data = write_gguf(tmp_path / "cat.gguf", tensor_bytes=2 * 1024 * 1024).read_bytes()
    server = serve(data, headers={"X-Linked-Etag": f'"{hashlib.sha256(data).hexdigest()}"'})
    # Built as load_catalog builds entries: a catalog file would refuse these loopback URLs,
    # as it lists only pinned huggingface.co ones (test_model_manager covers that refusal).
    commit = "0123456789abcdef0123456789abcdef01234567"
    entry = {"revision": commit, "sha256": None, "license": "mit", "ram_bytes": 1,
             "description": "test"}
    entries = [
        CatalogEntry(**entry, id="good", name="Good", url=server.url + "good.gguf",
                     filename="good.gguf", size_bytes=len(data) + 300_000),  # rounded
        CatalogEntry(**entry, id="odd", name="Odd", url=server.url + "odd.gguf",
                     filename="odd.gguf", size_bytes=len(data) + 40_000_000),
    ]
    monkeypatch.setattr(ModelManager, "catalog", lambda self: list(entries))
    view = open_view(qtbot, window)
    wait_listed(qtbot, view, lambda lst: [c.id for c in lst.catalog] == ["good", "odd"])
    assert "server publishes" in view.catalog.topLevelItem(0).toolTip(0)

    def button(i):
        return view.catalog.itemWidget(view.catalog.topLevelItem(i), common.CAT_BUTTON)

    view.tabs.setCurrentIndex(1)  # the catalog's page: its buttons can be clicked
    qtbot.waitUntil(lambda: button(0).isVisible())

    with qtbot.waitSignal(view.download_finished, timeout=DOWNLOAD_TIMEOUT) as finished:
        click(qtbot, button(0))
    done = finished.args[0]
    assert done.verified and done.checksum_source == "server"
    dl = view.downloads[server.url + "good.gguf"]
    assert dl.verified is True
    assert "verified: sha256 matches the one the server published" in dl.status.text()

    # The catalog says 40 MB more than the server has: refused before the body is read.
    with qtbot.waitSignal(view.download_failed, timeout=DOWNLOAD_TIMEOUT) as failed:
        click(qtbot, button(1))
    assert "odd.gguf is the wrong size: the server reports" in failed.args[1]
    assert view.downloads[server.url + "odd.gguf"].state == "failed"
    models = window.folio.models
    assert not (models.models_dir / "odd.gguf").exists()
    assert not any(models.downloads_dir.iterdir())


def test_load_anyway_after_will_not_fit(qtbot, window, monkeypatch):
    """A 64 MB machine: the starter model "will not fit". "Load anyway" in the manager's
    message loads it; after the window's own load is refused, the Model tab offers it."""
    from app.core.models import fit

    monkeypatch.setattr(fit, "_gpu_offload_supported", lambda: False)
    monkeypatch.setattr(fit, "available_ram", lambda: 64 * 1024 * 1024)
    view = open_view(qtbot, window)
    panel = window.model
    view.select(STARTER_MODEL_FILE)
    with qtbot.waitSignal(panel.load_failed, timeout=LOAD_TIMEOUT) as failed:
        click(qtbot, view.load_btn)
    assert "will not fit" in failed.args[1] and "“Load anyway”" in failed.args[1]
    bar = view.message
    assert bar.action_btn.isVisible() and bar.action_btn.text() == "Load anyway"
    assert bar.action_btn.accessibleName() == "Load anyway"
    assert not panel.load_anyway_btn.isHidden()
    with qtbot.waitSignal(panel.model_changed, timeout=LOAD_TIMEOUT) as loaded:
        click(qtbot, bar.action_btn)
    info = loaded.args[0]
    assert info is not None and Path(info.path).name == STARTER_MODEL_FILE
    assert not bar.isVisible() and panel.load_anyway_btn.isHidden()
    assert info.name in window.model_status.text()

    # The window's own load (as at start-up) is refused too; the tab offers "Load anyway".
    with qtbot.waitSignal(panel.model_changed, timeout=LOAD_TIMEOUT):
        click(qtbot, panel.unload_btn)
    with qtbot.waitSignal(window.model_failed, timeout=LOAD_TIMEOUT) as refused:
        window.load_model()
    assert "will not fit" in refused.args[0] and "will not fit" in window.banner.text.text()
    window.right.setCurrentWidget(panel)
    assert panel.load_anyway_btn.isVisible()
    banner = window.banner  # the window's message offers it as well
    assert banner.action_btn.isVisible() and banner.action_btn.text() == "Load anyway"
    with qtbot.waitSignal(panel.model_changed, timeout=LOAD_TIMEOUT) as loaded:
        click(qtbot, banner.action_btn)
    assert not banner.isVisible()
    assert loaded.args[0] is not None and window.folio.model_name == STARTER_MODEL_FILE
    assert panel.load_anyway_btn.isHidden()
    assert loaded.args[0].name in window.model_status.text()
