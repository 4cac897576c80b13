"""The conversation view through the real window (pytest-qt, offscreen): a streamed answer
replaces only its own block in a long chat, and an [n] marker inside an answer opens the
built-in PDF viewer at the cited page with the passage highlighted."""

from __future__ import annotations

import pytest
from PySide6.QtCore import QUrl
from PySide6.QtGui import QTextDocument
from test_ui_progress import window_on  # noqa: F401  (fixture)

pytest.importorskip("PySide6.QtPdfWidgets")


def plain(html: str, style: str) -> str:
    doc = QTextDocument()
    doc.setDefaultStyleSheet(style)
    doc.setHtml(html)
    return doc.toPlainText()


def test_streaming_replaces_only_the_answer_block_of_a_long_chat(qtbot, window_on, tmp_path,
                                                                  monkeypatch):
    window = window_on(tmp_path / "library")
    chat = window.chat
    chat_id = chat.new_chat()
    store = window.folio.store
    for i in range(40):
        store.add_message(chat_id, "user", f"Question {i} about the harbour?")
        store.add_message(chat_id, "assistant", f"Answer {i}: the crane lifts **{i}** tonnes.\n\n"
                          f"- first point {i}\n- second point {i}")
    chat.reload_messages()
    resets = []
    real = chat.view.setHtml
    monkeypatch.setattr(chat.view, "setHtml", lambda h: (resets.append(1), real(h)))

    # What _start does, without a model: a question being answered, tokens arriving.
    chat.stream = {"question": "How heavy is crane 41?", "text": "", "sources": [],
                   "status": "streaming", "hide_from": None, "message_id": None, "error": ""}
    chat.render(scroll=True)
    assert len(resets) == 1
    words = "Crane 41 lifts forty tonnes [1] on a calm day, less in wind.".split()
    chat.stream["sources"] = [{"n": 1, "path": str(tmp_path / "cranes.pdf"), "page": 4,
                               "text": "Crane 41: forty tonnes."}]
    for n in range(1, len(words) + 1):
        chat.stream["text"] = " ".join(words[:n])
        chat.render()
        shown = chat.view.toPlainText()
        assert shown == plain(chat.conversation_html(), chat._style()), n
        assert "Answer 39" in shown and "How heavy is crane 41?" in shown
    assert len(resets) == 1  # the 40 earlier turns were laid out once
    assert shown.rstrip().endswith("cranes.pdf, p. 4")
    # The live [1] marker and source are links the view routes to the source.
    opened = []
    chat.open_source.connect(opened.append)
    chat.view.anchorClicked.emit(QUrl("src:live:1"))
    assert opened and opened[0]["page"] == 4

    # The stream ends: the stored chat is shown whole again, with nothing of the live block.
    chat.stream = None
    chat.render()
    assert len(resets) == 2
    assert "How heavy is crane 41?" not in chat.view.toPlainText()
    assert chat.view.toPlainText() == plain(chat.conversation_html(), chat._style())


def test_a_marker_in_an_answer_opens_the_viewer_at_the_cited_page(qtbot, window_on, tmp_path):
    from test_ui_viewer import make_pdf, source_for

    pdf = make_pdf(tmp_path / "manual.pdf", pages=4)
    cited = source_for(pdf, page=3)
    window = window_on(tmp_path / "library")
    chat = window.chat
    chat_id = chat.new_chat()
    store = window.folio.store
    store.add_message(chat_id, "user", "How tight is valve 337?")
    answer = store.add_message(
        chat_id, "assistant", "Tighten valve 337 to 15 newton metres [1]. In code: `x[1]`.",
        sources=[{"n": 1, "path": str(pdf), "page": 3, "text": cited["text"],
                  "section": "Chapter 3"}])
    chat.reload_messages()
    html = chat.conversation_html()
    link = f"src:{answer.id}:1"
    body = html.split("Sources:", 1)[0]
    assert f"href='{link}'" in body or f'href="{link}"' in body  # the marker in the text
    assert "x[1]" in body  # inside code it stays code

    with qtbot.waitSignal(window.source_opened, timeout=10_000):
        chat.view.anchorClicked.emit(QUrl(link))
    viewer = window.viewer
    assert viewer is not None and window.right.currentWidget() is viewer
    qtbot.waitUntil(lambda: viewer.mode == "pdf", timeout=30_000)
    nav = viewer.pdf_view.pageNavigator()
    # Page 3, counted from 0; the view lays the page out once its tab is shown.
    qtbot.waitUntil(lambda: nav.currentPage() == 2, timeout=5_000)
    qtbot.waitUntil(lambda: viewer.pdf_view.currentSearchResultIndex() >= 0, timeout=30_000)
    hit = viewer.search_model.resultAtIndex(viewer.pdf_view.currentSearchResultIndex())
    assert hit.page() == 2
    assert "337" in viewer.search_model.searchString()
    assert "manual.pdf" in window.right.tabText(window.right.currentIndex())


def test_code_blocks_copy_and_an_answer_says_when_it_cites_nothing(qtbot, window_on, tmp_path):
    from PySide6.QtGui import QGuiApplication

    from app.core.chat.history import Source

    window = window_on(tmp_path / "library")
    chat = window.chat
    chat_id = chat.new_chat()
    store = window.folio.store
    src = Source(n=1, path=str(tmp_path / "cranes.pdf"), page=4, text="Crane 41: forty tonnes.")
    store.add_message(chat_id, "user", "How do I lift it?")
    code = "crane.lift(41)  # x[1] is an index, not a citation\n" + "y = 2 " * 60
    store.add_message(chat_id, "assistant",
                      f"Call it like this [1]:\n\n```python\n{code}\n```\n", sources=[src])
    store.add_message(chat_id, "user", "And the wind?")
    store.add_message(chat_id, "assistant", "Less in wind.", sources=[src])
    store.add_message(chat_id, "user", "Tell me a joke.")
    store.add_message(chat_id, "assistant", "A crane walks into a bar.")
    chat.reload_messages()
    shown = chat.view.toPlainText()
    assert shown.count("Copy code") == 1
    assert shown.count("cites none of the passages") == 1  # the second answer only
    assert "Answered without your documents." in shown
    answer = chat.messages[1]
    chat.view.anchorClicked.emit(QUrl(f"code:{answer.id}:0"))
    assert QGuiApplication.clipboard().text() == code + "\n"
    # The long line wraps: nothing scrolls the conversation sideways.
    assert chat.view.horizontalScrollBar().maximum() == 0
    chat.view.anchorClicked.emit(QUrl(f"code:{answer.id}:7"))  # no such block: nothing
    assert QGuiApplication.clipboard().text() == code + "\n"


def test_hovering_a_source_or_a_marker_shows_its_passage(qtbot, window_on, tmp_path):
    from PySide6.QtCore import QEvent, QPoint
    from PySide6.QtGui import QHelpEvent
    from PySide6.QtWidgets import QApplication, QToolTip

    from app.core.chat.history import Source

    window = window_on(tmp_path / "library")
    chat = window.chat
    chat_id = chat.new_chat()
    store = window.folio.store
    src = Source(n=1, path=str(tmp_path / "cranes.pdf"), page=4, section="Port > Cranes",
                 text="Crane 41 lifts <b>forty</b> tonnes on a calm day. " * 30)
    store.add_message(chat_id, "user", "How heavy?")
    store.add_message(chat_id, "assistant", "Forty tonnes [1].", sources=[src])
    chat.reload_messages()
    answer = chat.messages[1]
    text = chat.source_preview(f"src:{answer.id}:1")
    assert "cranes.pdf, p. 4" in text and "Port › Cranes" in text
    assert "&lt;b&gt;forty&lt;/b&gt;" in text  # the passage stays text
    assert text.count("Crane 41") < 30 and "…" in text  # a long passage is cut
    assert chat.source_preview(f"src:{answer.id}:9") == ""  # no such source
    assert chat.source_preview(f"code:{answer.id}:0") == ""
    # Hovering the [1] marker in the answer: the tooltip shows the passage.
    doc = chat.view.document()
    at = doc.toPlainText().index("[1]")
    cursor = chat.view.textCursor()
    cursor.setPosition(at + 1)
    rect = chat.view.cursorRect(cursor)
    pos = QPoint(rect.x() + 1, rect.center().y())
    assert chat.view.anchorAt(pos) == f"src:{answer.id}:1"
    viewport = chat.view.viewport()
    event = QHelpEvent(QEvent.Type.ToolTip, pos, viewport.mapToGlobal(pos))
    QApplication.sendEvent(viewport, event)
    qtbot.waitUntil(lambda: "Crane 41" in QToolTip.text())
