"""Opening a source never runs it, through the real widgets (pytest-qt, offscreen): a cited or
listed script is shown in Folio's viewer or its folder, never handed to the desktop's default
app, and a failing viewer no longer falls back to the default app. Only the desktop's "open
this URL" is replaced, by a recorder."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QDesktopServices
from test_ui_actions import doc_item, wait_ready
from test_ui_progress import window_on  # noqa: F401  (fixture)

pytest.importorskip("PySide6.QtPdfWidgets")

from app.ui import viewer as viewer_mod  # noqa: E402

SCRIPT = "@echo off\r\nREM Nightly backup of the harbour ledger\r\ndel /q C:\\ledger\\*\r\n"
NOTES = "# Harbour\n\nThe harbour crane lifts containers onto ships at dawn.\n"


@pytest.fixture
def opened(monkeypatch):
    """What Folio asked the desktop to open, as local paths (nothing is opened)."""
    urls: list[QUrl] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: urls.append(url) or True)
    return urls


@pytest.fixture
def files(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "backup.bat").write_text(SCRIPT, "utf-8")
    (folder / "notes.md").write_text(NOTES, "utf-8")
    return folder


def test_the_viewer_never_opens_a_script_with_the_default_app(qtbot, opened, files):
    w = viewer_mod.SourceViewer()
    qtbot.addWidget(w)
    w.show()
    script = files / "backup.bat"
    with qtbot.waitSignal(w.source_shown, timeout=30_000) as shown:
        w.show_source({"path": str(script), "text": "Nightly backup of the harbour ledger"})
    assert shown.args[0]["mode"] == "text" and "Nightly backup" in w.text_view.toPlainText()
    assert not w.open_action.isEnabled() and "could run" in w.open_action.toolTip()
    w.open_externally()  # the action's slot, as a shortcut or a stale button would call it
    assert [u.toLocalFile() for u in opened] == [str(files)]  # its folder, not the file
    assert "backup.bat is not opened with another app" in w.notice_text()

    notes = files / "notes.md"
    with qtbot.waitSignal(w.source_shown, timeout=30_000):
        w.show_source({"path": str(notes), "text": "The harbour crane"})
    assert w.open_action.isEnabled()
    w.open_action.trigger()
    assert opened[-1].toLocalFile() == str(notes)
    w.wait_for_workers()


def test_the_library_shows_a_script_in_folio_and_a_failing_viewer_opens_nothing(
        qtbot, window_on, opened, files, tmp_path, monkeypatch):  # noqa: F811
    window = window_on(tmp_path / "library")
    script, notes = files / "backup.bat", files / "notes.md"
    window.library.ingest([str(script), str(notes)], None)
    wait_ready(qtbot, window, [script, notes])
    tree = window.library.tree

    def double_click(path: Path) -> None:
        """As a user double-clicks: a click, then the second click that makes it double (the
        window's first event alone is not taken as a double-click by QTest), on the row where
        it is now (opening the viewer re-lays the window out)."""
        item = doc_item(window.library, str(path))
        tree.scrollToItem(item)
        qtbot.waitUntil(lambda: tree.itemAt(tree.visualItemRect(item).center()) is item)
        pos = tree.visualItemRect(item).center()
        qtbot.mouseClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=pos)
        qtbot.mouseDClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=pos)

    double_click(script)
    qtbot.waitUntil(lambda: window.viewer is not None and window.viewer.mode == "text",
                    timeout=30_000)
    assert window.viewer._path == str(script) and opened == []
    assert window.right.currentWidget() is window.viewer
    double_click(notes)  # a document the default app shows still opens there
    assert [u.toLocalFile() for u in opened] == [str(notes)]

    # The viewer failing says why; it no longer hands the cited file to the desktop.
    def broken(self, source):
        raise RuntimeError("viewer broke")

    monkeypatch.setattr(viewer_mod.SourceViewer, "show_source", broken)
    window.open_source({"path": str(script), "page": None, "text": "Nightly backup"})
    assert [u.toLocalFile() for u in opened] == [str(notes)]
    assert "viewer broke" in window.banner.text.text()
    window.viewer.wait_for_workers()
