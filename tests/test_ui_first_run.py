"""The first-run guide through the real window (pytest-qt, offscreen): it opens once on an
empty library, follows documents being added, lists the catalog's instruct models with their
size and memory fit, downloads one from a real HTTP server on loopback and makes it the
default, says so when a download cannot start (no network) and leaves the starter model in
place, and is skipped for good."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PySide6.QtCore import QSettings, Qt
from test_ui_models import models_dir, serve, write_gguf  # noqa: F401  (fixtures)
from test_ui_progress import wait_idle

from app.core.base.units import human_bytes
from app.core.models.catalog import CatalogEntry, load_catalog
from app.ui.first_run import COL_FITS, COL_NAME, COL_SIZE, DONE_KEY, FirstRunGuide
from app.ui.main_window import MainWindow

TIMEOUT = 60_000


@pytest.fixture
def open_window(qtbot, tmp_path, monkeypatch, models_dir):  # noqa: F811
    monkeypatch.setenv("FOLIO_QSETTINGS", str(tmp_path / "folio.ini"))
    windows = []

    def make(library: Path, **kw) -> MainWindow:
        w = MainWindow(library, load_model=False, **kw)
        qtbot.addWidget(w)
        w.show()
        w.start()
        windows.append(w)
        qtbot.waitUntil(lambda: w.library.opened, timeout=TIMEOUT)
        return w

    yield make
    for w in windows:
        w.close()


def click(qtbot, button) -> None:
    assert button.isVisible() and button.isEnabled(), button.text()
    qtbot.mouseClick(button, Qt.MouseButton.LeftButton)


def entry_for(url: str, data: bytes, name: str = "Guide Chat 0.1B") -> CatalogEntry:
    return CatalogEntry(id="guide-chat", name=name, url=url, filename=url.rsplit("/", 1)[-1],
                        size_bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
                        license="apache-2.0", ram_bytes=200_000_000,
                        description="A tiny test model", parameters="0.1B")


def test_the_guide_opens_once_on_an_empty_library_and_follows_each_step(
        qtbot, open_window, tmp_path):
    window = open_window(tmp_path / "library", guide=True)
    qtbot.waitUntil(lambda: window.guide is not None and window.guide.isVisible())
    guide = window.guide
    assert guide.step_label.text() == "Step 1 of 2"
    assert "No documents yet" in guide.library_state.text()

    # Documents added while the guide is open: it says how many.
    doc = tmp_path / "notes.md"
    doc.write_text("# Notes\n\nThe ferry leaves at nine.\n", "utf-8")
    window.library.ingest([str(doc)], None)
    wait_idle(qtbot, window.library, str(doc))
    qtbot.waitUntil(lambda: "1 document in the library" in guide.library_state.text())

    # Step 2: the starter model is called tiny; the catalog's models with size and fit.
    click(qtbot, guide.next_btn)
    assert guide.step_label.text() == "Step 2 of 2" and guide.back_btn.isVisible()
    page_text = " ".join(w.text() for w in guide.pages.currentWidget().findChildren(
        type(guide.step_label)))
    assert "starter model" in page_text and "tiny" in page_text
    catalog = load_catalog()
    assert guide.table.topLevelItemCount() == len(catalog) >= 3
    for i, entry in enumerate(catalog):
        item = guide.table.topLevelItem(i)
        assert item.text(COL_NAME) == entry.name
        assert item.text(COL_SIZE) == human_bytes(entry.size_bytes)
        assert item.text(COL_FITS) in ("✓ Fits", "⚠ Will not fit", "?")
    assert guide.chosen() is not None and guide.download_btn.isEnabled()

    click(qtbot, guide.next_btn)  # Done
    qtbot.waitUntil(lambda: window.guide is None)
    settings = QSettings(str(tmp_path / "folio.ini"), QSettings.Format.IniFormat)
    assert str(settings.value(DONE_KEY)).lower() == "true"
    window.close()

    # Not again by itself, even on an empty library; View > Getting started… still opens it.
    again = open_window(tmp_path / "empty", guide=True)  # returns once the library opened,
    assert again.guide is None                          # when the guide would have opened
    again.guide_action.trigger()
    assert again.guide is not None and again.guide.isVisible()
    click(qtbot, again.guide.skip_btn)
    qtbot.waitUntil(lambda: again.guide is None)


def test_the_guide_does_not_open_on_a_library_with_documents(qtbot, open_window, tmp_path):
    first = open_window(tmp_path / "library")  # no guide asked for (as in tests)
    doc = tmp_path / "notes.md"
    doc.write_text("# Notes\n\nThe ferry leaves at nine.\n", "utf-8")
    first.library.ingest([str(doc)], None)
    wait_idle(qtbot, first.library, str(doc))
    first.close()
    window = open_window(tmp_path / "library", guide=True)  # (the library is open)
    assert window.guide is None


def test_a_download_that_cannot_start_says_so_and_the_starter_model_stays(
        qtbot, open_window, tmp_path, serve, models_dir):  # noqa: F811
    window = open_window(tmp_path / "library")
    server = serve(b"unused")
    url = server.url + "offline-chat.gguf"
    server.close()  # nothing listens: as without a network
    guide = FirstRunGuide(window.library, window.model, window.settings,
                          catalog=[entry_for(url, b"x" * 1000)], parent=window)
    qtbot.addWidget(guide)
    guide.show()
    guide.show_step(1)
    with qtbot.waitSignal(guide.download_ended, timeout=TIMEOUT) as ended:
        click(qtbot, guide.download_btn)
    assert ended.args[1] is False
    text = guide.model_state.text()
    assert "could not be completed" in text and "starter model" in text
    assert ended.args[2] in text
    assert guide.download_btn.isEnabled() and not guide.use_btn.isVisible()
    names = {p.name for p in models_dir.glob("*.gguf")}
    assert names == {"gemma-3-270m-q4_k_m.gguf"}  # the starter, and nothing half-written


def test_the_guide_downloads_a_model_and_makes_it_the_default(
        qtbot, open_window, tmp_path, serve, models_dir):  # noqa: F811
    window = open_window(tmp_path / "library")
    data = write_gguf(tmp_path / "served.gguf", name="Guide Chat",
                      tensor_bytes=512 * 1024).read_bytes()
    server = serve(data)
    url = server.url + "guide-chat.gguf"
    guide = FirstRunGuide(window.library, window.model, window.settings,
                          catalog=[entry_for(url, data)], parent=window)
    qtbot.addWidget(guide)
    guide.show()
    guide.show_step(1)
    with qtbot.waitSignal(guide.download_ended, timeout=TIMEOUT) as ended:
        click(qtbot, guide.download_btn)
    assert ended.args[1] is True, ended.args
    assert (models_dir / "guide-chat.gguf").read_bytes() == data
    assert "is downloaded" in guide.model_state.text()
    view = window.model.manager_view()
    with qtbot.waitSignal(view.default_changed, timeout=TIMEOUT) as changed:
        click(qtbot, guide.use_btn)
    assert changed.args[0] == "guide-chat.gguf"
    assert window.folio.models.default_name() == "guide-chat.gguf"
    assert "Loading" in guide.model_state.text()
