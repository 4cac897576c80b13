"""The window's remaining paths, through real widgets (pytest-qt, offscreen): answering from
chosen documents only, a light-to-dark palette switch, accessible names on every control,
and toolbar icons drawn for a 2x screen."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSlider,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QDialog,
    QLineEdit,
    QListView,
    QPlainTextEdit,
    QScrollBar,
    QTabWidget,
    QTextEdit,
    QTreeView,
    QWidget,
)
from test_ui_actions import answer_question, choose_scope, fresh_chat
from test_ui_window import ANSWER_TIMEOUT, INGEST_TIMEOUT

from app.core.service import Folio
from app.core.index.library import Library
from app.ui.chat_panel import ChecklistDialog
from app.ui.main_window import MainWindow

ROOT = Path(__file__).resolve().parents[1]

GARDEN = "# Garden\n\nWatering. Water tomato plants deeply twice a week, early in the morning.\n"
KITCHEN = ("# Kitchen\n\nBread. Let the bread dough rise for two hours in a warm place before "
           "baking.\n\nSoup. Simmer the vegetable soup for forty minutes.\n")
BAKERY = ("# Bakery\n\nHow long should bread dough rise? Bread dough should rise for about one "
          "hour, until the bread dough has doubled; a cold bread dough rises overnight.\n")


@pytest.fixture
def plain_window(qtbot, tmp_path, monkeypatch):
    """A window with no model: for what does not need one."""
    monkeypatch.setenv("FOLIO_QSETTINGS", str(tmp_path / "folio.ini"))
    w = MainWindow(load_model=False)
    qtbot.addWidget(w)
    w.show()
    w.start()
    qtbot.waitUntil(lambda: w.library.opened, timeout=60_000)
    yield w
    w.close()


# -- scope: chosen documents ----------------------------------------------------------------

def test_chosen_documents_scope_answers_only_from_them(qtbot, tmp_path, monkeypatch, embedder,
                                                       starter_model):
    monkeypatch.setenv("FOLIO_QSETTINGS", str(tmp_path / "folio.ini"))
    docs = tmp_path / "docs"
    docs.mkdir()
    paths = {}
    for name, text in (("garden.md", GARDEN), ("kitchen.md", KITCHEN), ("bakery.md", BAKERY)):
        paths[name] = str(docs / name)
        Path(paths[name]).write_text(text, "utf-8")
    root = tmp_path / "library"
    folio = Folio(root)
    folio._library = Library.open(root, embedder)  # the session's loaded embedder
    window = MainWindow(folio=folio)
    qtbot.addWidget(window)
    window.show()
    window.start()
    try:
        with qtbot.waitSignal(window.model_loaded, timeout=ANSWER_TIMEOUT):
            pass
        lib = window.library
        lib.ingest(list(paths.values()), None)
        qtbot.waitUntil(lambda: not lib.indexing and sum(d.status == "ready" for d in lib.docs)
                        == 3, timeout=INGEST_TIMEOUT)
        question = "How long should bread dough rise?"

        # All documents: the bakery note is the best match.
        fresh_chat(qtbot, window)
        everywhere = answer_question(qtbot, window, question)
        assert paths["bakery.md"] in {s.path for s in everywhere.sources}

        offered = []
        chosen = {paths["garden.md"], paths["kitchen.md"]}

        def exec_checklist(dialog):
            items = [dialog.list.item(i) for i in range(dialog.list.count())]
            offered.extend(i.data(Qt.ItemDataRole.UserRole) for i in items)
            for item in items:
                if item.data(Qt.ItemDataRole.UserRole) in chosen:
                    item.setCheckState(Qt.CheckState.Checked)
            return QDialog.DialogCode.Accepted.value

        monkeypatch.setattr(ChecklistDialog, "exec", exec_checklist)
        chat_id = fresh_chat(qtbot, window)
        choose_scope(qtbot, window, "documents")
        assert set(offered) == set(paths.values())  # every ready document was offered
        scope = window.folio.store.get_chat(chat_id).scope
        assert scope["mode"] == "documents" and set(scope["documents"]) == chosen
        assert window.chat.scope.currentText().startswith("2 document(s): ")
        answer = answer_question(qtbot, window, question)
        used = {s.path for s in answer.sources}
        assert used and used <= chosen, used
        assert paths["kitchen.md"] in used
    finally:
        window.close()


# -- palette ---------------------------------------------------------------------------------

def dark_palette() -> QPalette:
    pal = QPalette()
    for role, color in ((QPalette.ColorRole.Window, "#202124"),
                        (QPalette.ColorRole.WindowText, "#e8eaed"),
                        (QPalette.ColorRole.Base, "#171717"),
                        (QPalette.ColorRole.AlternateBase, "#2b2c30"),
                        (QPalette.ColorRole.Text, "#e8eaed"),
                        (QPalette.ColorRole.PlaceholderText, "#9aa0a6"),
                        (QPalette.ColorRole.Button, "#2b2c30"),
                        (QPalette.ColorRole.ButtonText, "#e8eaed"),
                        (QPalette.ColorRole.Highlight, "#8ab4f8"),
                        (QPalette.ColorRole.HighlightedText, "#202124")):
        pal.setColor(role, QColor(color))
    return pal


def icon_ink(window) -> set[str]:
    """The opaque colours of the first toolbar icon, as #rrggbb."""
    icon = window.toolbar.actions()[0].icon()
    image = icon.pixmap(QSize(24, 24), 1.0).toImage()
    inks = set()
    for y in range(image.height()):
        for x in range(image.width()):
            c = image.pixelColor(x, y)
            if c.alpha() == 255:
                inks.add(c.name())
    return inks


def test_palette_switch_recolours_the_conversation_and_icons(qtbot, plain_window):
    window = plain_window
    chat = window.chat
    chat_id = chat.new_chat()
    store = window.folio.store
    store.add_message(chat_id, "user", "Where is the lighthouse?")
    store.add_message(chat_id, "assistant", "On the **north** cape.")
    chat.reload_messages()
    app = QApplication.instance()
    light = app.palette()
    light_bubble = light.color(QPalette.ColorRole.AlternateBase).name()
    light_muted = light.color(QPalette.ColorRole.PlaceholderText).name()
    assert light_bubble in chat.view.toHtml()
    assert light.color(QPalette.ColorRole.ButtonText).name() in icon_ink(window)

    dark = dark_palette()
    try:
        app.setPalette(dark)  # what Qt does when the system switches to dark
        dark_bubble = dark.color(QPalette.ColorRole.AlternateBase).name()
        qtbot.waitUntil(lambda: dark_bubble in chat.view.toHtml())
        rendered = chat.view.toHtml()
        assert light_bubble not in rendered
        assert dark.color(QPalette.ColorRole.PlaceholderText).name() in chat.conversation_html()
        assert light_muted not in chat.conversation_html()
        assert "north" in chat.view.toPlainText()  # same conversation, new colours
        qtbot.waitUntil(lambda: "#e8eaed" in icon_ink(window))
        assert light.color(QPalette.ColorRole.ButtonText).name() not in icon_ink(window)
    finally:
        app.setPalette(light)
    qtbot.waitUntil(lambda: light_bubble in chat.view.toHtml())


# -- accessibility ---------------------------------------------------------------------------

CONTROLS = (QAbstractButton, QLineEdit, QTextEdit, QPlainTextEdit, QComboBox, QListView,
            QTreeView, QAbstractItemView, QAbstractSpinBox, QAbstractSlider, QTabWidget)


def _control_parent(widget: QWidget, window: QWidget) -> QWidget | None:
    """The nearest enclosing control: Qt's own parts (a spin box's line edit, a combo box's
    popup list, a line edit's clear button, a tree's header) belong to it."""
    parent = widget.parentWidget()
    while parent is not None and parent is not window:
        if isinstance(parent, CONTROLS) or parent.metaObject().className() == "QMenuBar":
            return parent
        parent = parent.parentWidget()
    return None


def test_every_control_has_an_accessible_name(qtbot, plain_window):
    window = plain_window
    missing, checked = [], 0
    for widget in window.findChildren(QWidget):
        if not isinstance(widget, CONTROLS) or isinstance(widget, QScrollBar):
            continue
        owner = _control_parent(widget, window)
        if owner is not None:  # a part of a control: the control carries the name
            widget = owner
        text = widget.text() if isinstance(widget, QAbstractButton) else ""
        checked += 1
        if not (widget.accessibleName().strip() or text.strip()):
            missing.append(f"{type(widget).__name__} {widget.objectName()!r} in "
                           f"{type(widget.parentWidget()).__name__}")
    assert checked > 20
    assert not missing, missing
    for action in window.toolbar.actions():
        button = window.toolbar.widgetForAction(action)
        assert button.text().strip() or button.accessibleName().strip()


# -- high DPI --------------------------------------------------------------------------------

HIDPI_PROBE = """
import json
from PySide6.QtWidgets import QApplication
app = QApplication([])
from app.ui.main_window import MainWindow
w = MainWindow(load_model=False)
w.show()
app.processEvents()
dpr = w.devicePixelRatio()
out = {"dpr": dpr, "icons": []}
for action in w.toolbar.actions():
    size = w.toolbar.iconSize()
    icon = action.icon()
    sharp = icon.pixmap(size, dpr).toImage()
    # What a 1x bitmap scaled up to the same pixels would look like.
    blown = icon.pixmap(size, 1.0).scaled(sharp.size()).toImage()
    differ = sum(sharp.pixelColor(x, y) != blown.pixelColor(x, y)
                 for y in range(sharp.height()) for x in range(sharp.width()))
    button = w.toolbar.widgetForAction(action)
    out["icons"].append({"text": action.text(), "logical": size.width(),
                         "pixels": sharp.width(), "dpr": icon.pixmap(size, dpr).devicePixelRatio(),
                         "grab_dpr": button.grab().devicePixelRatio(), "differ": differ})
print("PROBE " + json.dumps(out))
w.close()
"""


def test_toolbar_icons_are_drawn_for_a_2x_screen(tmp_path):
    env = dict(os.environ, QT_SCALE_FACTOR="2", QT_QPA_PLATFORM="offscreen",
               FOLIO_QSETTINGS=str(tmp_path / "folio.ini"))
    env.pop("QT_ENABLE_HIGHDPI_SCALING", None)
    out = subprocess.run([sys.executable, "-c", HIDPI_PROBE], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("PROBE ")), None)
    assert out.returncode == 0 and line, out.stdout + out.stderr
    probe = json.loads(line[len("PROBE "):])
    assert probe["dpr"] == 2
    assert len(probe["icons"]) == 4
    for icon in probe["icons"]:
        assert icon["dpr"] == 2 and icon["grab_dpr"] == 2, icon
        assert icon["pixels"] == 2 * icon["logical"], icon  # device pixels, not upscaled
        assert icon["differ"] > 0, icon  # drawn at 2x, not a 1x bitmap blown up


# -- closing while the model loads ------------------------------------------------------------

def test_closing_during_model_load_hides_at_once_and_releases_later(qtbot, tmp_path,
                                                                    monkeypatch, starter_model):
    monkeypatch.setenv("FOLIO_QSETTINGS", str(tmp_path / "folio.ini"))
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    window.start()
    assert window.model_job is not None  # the starter model is loading in the LLM pool
    window.close()  # returns without waiting for llama.cpp
    assert not window.isVisible()
    if not window.released:  # the load was still running: it finishes in the background
        assert window.workers.running()
        with qtbot.waitSignal(window.shut_down, timeout=ANSWER_TIMEOUT):
            pass
    assert window.released
    assert window.folio._runtime is None  # the model it loaded was closed, not leaked
    assert window.model_info is None  # a load landing after the close changes nothing
    assert window._workers_idle()  # every pool thread has finished


def test_a_long_model_name_is_elided_not_cut(qtbot):
    """The chat's model box in the narrow side panel ends a long file name with "…"; at a
    width that fits, the whole name shows."""
    from app.ui.widgets import ElidingComboBox

    name = "Default (qwen2.5-1.5b-instruct-q4_k_m-with-a-long-suffix)"
    combo = ElidingComboBox()
    combo.addItem(name, None)
    qtbot.addWidget(combo)
    combo.show()
    qtbot.waitExposed(combo)

    combo.setFixedWidth(140)
    shown = combo.displayed_text()
    assert shown.endswith("…") and len(shown) < len(name)
    assert name.startswith(shown[:-1])
    assert combo.itemText(0) == name  # the list keeps the whole name
    assert not combo.grab().isNull()  # the eliding paint path runs

    combo.setFixedWidth(combo.fontMetrics().horizontalAdvance(name) + 120)
    assert combo.displayed_text() == name


def test_the_indexing_status_line_is_elided_not_cut(qtbot):
    """The status line under the progress bar names the file being indexed last; in a narrow
    library panel it ends with "…" and keeps the whole text for its accessors."""
    from app.ui.widgets import ElidedLabel

    text = "3 of 5 files · 274 passages · 17.8 passages/s · ETA 3 min 53 s · octave.pdf"
    label = ElidedLabel(text)
    qtbot.addWidget(label)
    label.show()
    qtbot.waitExposed(label)
    label.setFixedWidth(label.fontMetrics().horizontalAdvance(text) // 2)
    shown = label.displayed_text()
    assert shown.endswith("…") and text.startswith(shown[:-1]) and label.text() == text
    assert not label.grab().isNull()
    label.setFixedWidth(label.fontMetrics().horizontalAdvance(text) + 40)
    assert label.displayed_text() == text


def test_source_links_say_where_the_passage_is():
    """A source link names the page, the page range, or for a file without pages the
    innermost heading the passage sits under (shortened), so two passages of one DOCX can be
    told apart; a streaming answer's dict sources read the same as stored ones."""
    from app.core.chat.history import Source
    from app.ui.chat_panel import SECTION_IN_LINK, source_link_text

    assert source_link_text(Source(n=1, path="/d/guide.pdf", page=3)) == "[1] guide.pdf, p. 3"
    assert source_link_text({"n": 2, "path": "/d/guide.pdf", "page": 3, "page_end": 5}) == \
        "[2] guide.pdf, pp. 3–5"
    docx = Source(n=3, path="/d/notes.docx", section="Ferries > Winter  timetable")
    assert source_link_text(docx) == "[3] notes.docx, “Winter timetable”"
    long = "A very long heading that goes on and on about the harbour and its boats"
    text = source_link_text({"n": 4, "path": "/d/notes.docx", "page": None, "section": long})
    inner = text.split("“", 1)[1].rstrip("”")
    assert inner.endswith("…") and len(inner) <= SECTION_IN_LINK and long.startswith(inner[:-1])
    assert source_link_text(Source(n=5, path="/d/plain.txt")) == "[5] plain.txt"
