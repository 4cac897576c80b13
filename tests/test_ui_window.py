"""The window driven through its real widgets with pytest-qt (offscreen), on the real
embedder, LanceDB and the starter model. No sleeps: every wait is on a signal or a condition."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from docgen import make_docx, make_pdf
from PySide6.QtCore import QMimeData, QPointF, QSettings, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from app.ui.main_window import MainWindow

ROOT = Path(__file__).resolve().parents[1]
INGEST_TIMEOUT = 180_000  # ms: real embedder on two shared cores
ANSWER_TIMEOUT = 120_000


@pytest.fixture
def qsettings(tmp_path, monkeypatch):
    path = tmp_path / "folio.ini"
    monkeypatch.setenv("FOLIO_QSETTINGS", str(path))
    return path


@pytest.fixture
def make_window(qtbot, qsettings, starter_model):
    windows = []

    def make(**kw):
        w = MainWindow(**kw)
        qtbot.addWidget(w)
        w.show()
        w.start()
        windows.append(w)
        return w

    yield make
    for w in windows:
        w.close()


def drop(widget, paths) -> None:
    """A real drag-enter and drop carrying file URLs, as a file manager sends them."""
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    centre = widget.rect().center()
    enter = QDragEnterEvent(centre, Qt.DropAction.CopyAction, mime,
                            Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, enter)
    assert enter.isAccepted()
    event = QDropEvent(QPointF(centre), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)
    assert event.isAccepted()


def ask(qtbot, window, question: str) -> None:
    box = window.chat.input
    box.setFocus()
    qtbot.keyClicks(box, question)
    qtbot.keyClick(box, Qt.Key.Key_Return)


def chat_setting(window, key: str):
    return (window.folio.store.get_chat(window.chat.chat_id).settings or {}).get(key)


def set_max_tokens(window, n: int, qtbot=None) -> None:
    """The real spin box: the chat keeps the value once the box rests, and at the latest
    when the next answer starts."""
    window.model.max_tokens.setValue(n)
    if qtbot is not None:
        qtbot.waitUntil(lambda: chat_setting(window, "max_tokens") == n)


def test_window_shows_before_heavy_imports():
    code = ("import sys; import app.ui.main_window, app.ui.workers; "
            "heavy = [m for m in ('torch', 'llama_cpp', 'lancedb', 'sentence_transformers') "
            "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_first_run_shows_empty_state_and_loads_model_in_background(qtbot, make_window):
    window = make_window()
    assert window.model_status.text() == "Loading model…"  # shown, not blocked on the load
    assert window.library.stack.currentIndex() == 0
    assert "Drop documents here" in window.library.empty_label.text()
    with qtbot.waitSignal(window.model_loaded, timeout=ANSWER_TIMEOUT) as blocker:
        pass
    info = blocker.args[0]
    qtbot.waitUntil(lambda: info.name in window.model_status.text())
    assert window.model.name.text() == info.name
    assert str(info.n_ctx) in window.model.context.text().replace(",", "")
    assert "AVX2" in window.model.cpu.text().split()  # the portable build, shown
    assert "AVX512" not in window.model.cpu.text()
    qtbot.waitUntil(lambda: window.library.opened)
    assert window.library_status.text().startswith("0 documents")
    assert not window.banner.isVisible()
    for w in (window.library.add_files_btn, window.chat.input, window.chat.send_btn,
              window.chat.scope, window.library.tree):
        assert w.accessibleName()


@pytest.mark.slow
def test_drop_index_ask_stream_sources_and_open(qtbot, make_window, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    pdf = make_pdf(docs / "garden.pdf", [
        "Watering. Water tomato plants deeply twice a week, early in the morning.",
        "Pruning. Remove the side shoots of tomatoes when they are five centimetres long.",
    ], title="Garden Guide")
    docx = make_docx(docs / "kitchen.docx", {
        "Bread": ["Let the dough rise for two hours in a warm place before baking."]})
    corrupt = docs / "broken.pdf"
    corrupt.write_bytes(b"%PDF-1.7\nthis is not really a PDF\n")

    window = make_window()
    qtbot.waitUntil(lambda: window.library.opened, timeout=60_000)
    # Dropped onto the conversation view: "anywhere on the window" includes text widgets.
    drop(window.chat.view.viewport(), [pdf, docx, corrupt])
    lib = window.library
    assert window.library.stack.currentIndex() == 1
    assert lib.progress_box.isVisible()
    final = ("ready", "failed")
    qtbot.waitUntil(lambda: all(lib.status_of(str(p)) in final for p in (pdf, docx, corrupt))
                    and not lib.indexing, timeout=INGEST_TIMEOUT)
    assert lib.status_of(str(pdf)) == "ready"
    assert lib.status_of(str(docx)) == "ready"
    assert lib.status_of(str(corrupt)) == "failed"
    reason = lib.error_of(str(corrupt))
    assert reason
    assert window.banner.isVisible() and "broken.pdf" in window.banner.text.text()
    def rows():
        top = lib.tree.topLevelItem(0)
        if top is None:
            return {}
        return {top.child(i).data(0, Qt.ItemDataRole.UserRole): top.child(i)
                for i in range(top.childCount())}

    # The rows fill in as the library's listing catches up: wait on what they show.
    qtbot.waitUntil(lambda: str(pdf) in rows() and rows()[str(pdf)].text(1) == "2"
                    and str(corrupt) in rows() and reason in rows()[str(corrupt)].toolTip(2),
                    timeout=30_000)  # pages, and why the broken one failed
    assert not lib.progress_box.isVisible()
    qtbot.waitUntil(lambda: "3 documents" in window.library_status.text())

    # Ask: sources arrive, tokens stream, the answer lists its sources as links.
    window.chat.new_chat()
    set_max_tokens(window, 16, qtbot)
    tokens: list[str] = []
    shown: list[str] = []  # what the conversation view showed, at each of its renders
    window.chat.token_received.connect(tokens.append)
    window.chat.view.textChanged.connect(lambda: shown.append(window.chat.view.toPlainText()))
    with qtbot.waitSignal(window.chat.sources_received, timeout=ANSWER_TIMEOUT) as got:
        ask(qtbot, window, "How often should tomato plants be watered?")
    assert window.chat.stop_btn.isVisible()
    sources = got.args[0]
    assert sources and sources[0]["path"] == str(pdf) and sources[0]["page"] == 1
    with qtbot.waitSignal(window.chat.answer_finished, timeout=ANSWER_TIMEOUT):
        pass
    window.chat.view.textChanged.disconnect()
    assert tokens
    messages = window.chat.messages
    assert [m.role for m in messages] == ["user", "assistant"]
    answer = messages[-1]
    assert answer.content and answer.sources
    assert "".join(tokens).strip() == answer.content
    # Streamed: several token events, and the view showed the answer growing before it ended.
    assert len(tokens) > 1
    start = answer.content.split()[0]
    assert any(start in text and answer.content not in text for text in shown), shown
    html = window.chat.conversation_html()
    assert f"src:{answer.id}:1" in html and "garden.pdf" in html

    # Clicking a source link opens it at its page.
    with qtbot.waitSignal(window.source_opened, timeout=10_000) as opened:
        window.chat.view.anchorClicked.emit(QUrl(f"src:{answer.id}:1"))
    assert opened.args[0]["path"] == str(pdf)
    assert opened.args[0]["page"] == 1


def test_stop_stops_streaming(qtbot, make_window):
    window = make_window()
    window.chat.new_chat()
    window.chat.set_scope({"mode": "none"})
    set_max_tokens(window, 400, qtbot)
    # Greedy decoding: a sampled answer could end by itself after a few tokens, before Esc.
    window.model.temperature.setValue(0.0)
    qtbot.waitUntil(lambda: chat_setting(window, "temperature") == 0.0)
    with qtbot.waitSignal(window.chat.token_received, timeout=ANSWER_TIMEOUT):
        ask(qtbot, window, "Write a long story about a lighthouse keeper.")
    with qtbot.waitSignal(window.chat.answer_finished, timeout=30_000) as done:
        qtbot.keyClick(window.chat.input, Qt.Key.Key_Escape)
    final = done.args[0]
    assert final is not None and final.stats["finish_reason"] == "cancelled"
    assert final.stats["completion_tokens"] < 400
    answer = window.chat.messages[-1]
    assert answer.role == "assistant" and answer.status == "cancelled"
    assert window.chat.send_btn.isVisible() and not window.chat.stop_btn.isVisible()
    assert "(stopped)" in window.chat.conversation_html()


def test_chats_and_layout_persist_across_restart(qtbot, make_window, qsettings):
    first = make_window()
    chat_id = first.chat.new_chat()
    first.chat.set_scope({"mode": "none"})
    set_max_tokens(first, 8)  # saved when the answer starts, not waited for
    with qtbot.waitSignal(first.chat.answer_finished, timeout=ANSWER_TIMEOUT):
        ask(qtbot, first, "Say hello to the lighthouse")
    other = first.chat.new_chat()  # a second chat, so "last chat" is a real choice
    first.chat.open_chat(chat_id)
    # The offscreen screen is small: restoreGeometry() would shrink a wider window to fit it.
    width = first.minimumSizeHint().width()
    first.resize(width, 700)
    qtbot.waitUntil(lambda: first.width() == width)
    first.splitter.setSizes([300, width - 560, 260])
    first.sidebar.splitter.setSizes([200, 300, 120])
    first.sidebar.section("Models").set_expanded(False)  # folds; its height goes to Library
    first.library.sort_by(3, Qt.SortOrder.DescendingOrder)  # newest first
    first.library.show_column(1)  # Pages, hidden until asked for
    saved, saved_side = first.splitter.sizes(), first.sidebar.splitter.sizes()
    assert saved_side[2] < 60 and saved_side[1] > 300
    first.close()
    assert qsettings.exists()
    stored = QSettings(str(qsettings), QSettings.Format.IniFormat)
    assert [int(v) for v in stored.value("window/splitter")] == saved

    second = make_window()
    assert second.chat.chat_id == chat_id
    assert second.chat.chat_list.count() == 2
    assert other != chat_id
    messages = second.chat.messages
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[0].content == "Say hello to the lighthouse"
    assert "Say hello to the lighthouse" in second.chat.view.toPlainText()
    assert second.folio.store.get_chat(chat_id).scope["mode"] == "none"
    assert second.model.max_tokens.value() == 8
    assert second.chat.scope.currentData() == "none"
    qtbot.waitUntil(lambda: second.isVisible())
    # Same proportions (the small offscreen screen may shrink the restored window a little).
    assert not second.sidebar.section("Models").expanded()
    assert second.sidebar.section("Library").expanded()
    header = second.library.tree.header()
    assert header.sortIndicatorSection() == 3
    assert header.sortIndicatorOrder() == Qt.SortOrder.DescendingOrder
    assert 1 in second.library.wanted_columns  # shown where the sidebar has room for it
    side_now = second.sidebar.splitter.sizes()
    second.sidebar.section("Models").set_expanded(True)  # unfolds at the height it had
    assert second.sidebar.splitter.sizes()[2] > 60
    for now, before in ((second.splitter.sizes(), saved), (side_now[:2], saved_side[:2])):
        for a, b in zip(now, before, strict=True):
            assert abs(a / sum(now) - b / sum(before)) < 0.08, (now, before)


def test_export_markdown(qtbot, make_window, tmp_path):
    window = make_window()
    chat_id = window.chat.new_chat()
    store = window.folio.store
    store.add_message(chat_id, "user", "What is **this**?")
    store.add_message(chat_id, "assistant", "It is the Karnvik lighthouse [1].",
                      sources=[{"n": 1, "path": "/docs/karnvik-guide.pdf", "page": 2,
                                "text": "The Karnvik lighthouse was built in 1894."}])
    window.chat.reload_messages()
    out = window.chat.export_markdown(str(tmp_path / "chat.md"))
    text = Path(out).read_text("utf-8")
    assert "**You**\n\nWhat is **this**?\n" in text
    assert "**Folio**\n\nIt is the Karnvik lighthouse [1].\n" in text
    assert "Sources:\n\n- [1] /docs/karnvik-guide.pdf, p. 2\n" in text


def test_cli_help_still_works():
    out = subprocess.run([sys.executable, "-m", "app", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0 and "ingest" in out.stdout and "window" in out.stdout


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL", "SIGSEGV"])
def test_the_window_survives_the_model_process_dying_mid_answer(qtbot, make_window, how,
                                                                monkeypatch):
    """The model process is killed (SIGKILL from outside) or segfaults (the test switch)
    mid-answer: the window stays, the answer so far is kept and marked cut off, the banner
    says what happened, and the next question gets an answer from a new model process."""
    import os
    import signal

    if how == "SIGSEGV":
        monkeypatch.setenv("FOLIO_MODEL_HOST_CRASH", "segv@token:3")
    window = make_window()
    qtbot.waitUntil(lambda: window.library.opened, timeout=60_000)
    window.chat.new_chat()
    window.chat.set_scope({"mode": "none"})
    set_max_tokens(window, 300, qtbot)
    window.model.temperature.setValue(0.0)
    qtbot.waitUntil(lambda: chat_setting(window, "temperature") == 0.0)
    tokens: list[str] = []
    window.chat.token_received.connect(tokens.append)
    with qtbot.waitSignal(window.chat.answer_finished, timeout=ANSWER_TIMEOUT):
        if how == "SIGKILL":
            with qtbot.waitSignal(window.chat.token_received, timeout=ANSWER_TIMEOUT):
                ask(qtbot, window, "Write a long story about a lighthouse keeper.")
            pid = window.folio.runtime.pid
            assert pid and pid != os.getpid()
            os.kill(pid, signal.SIGKILL)
        else:
            ask(qtbot, window, "Write a long story about a lighthouse keeper.")
    expected = "signal 9 (SIGKILL)" if how == "SIGKILL" else "signal 11 (SIGSEGV)"
    assert window.isVisible()
    assert window.banner.isVisible() and expected in window.banner.text.text()
    answer = window.chat.messages[-1]
    assert answer.role == "assistant" and answer.status == "error"
    assert answer.content and answer.content == "".join(tokens).strip()
    assert expected in answer.error and "cut off" in answer.error
    assert "(cut off)" in window.chat.conversation_html()
    assert window.chat.send_btn.isVisible()

    monkeypatch.delenv("FOLIO_MODEL_HOST_CRASH", raising=False)
    set_max_tokens(window, 8, qtbot)
    with qtbot.waitSignal(window.chat.answer_finished, timeout=ANSWER_TIMEOUT) as done:
        ask(qtbot, window, "Say hello.")
    assert done.args[0] is not None and done.args[0].kind == "done"
    assert [m.role for m in window.chat.messages] == ["user", "assistant"] * 2
    assert window.chat.messages[-1].status == "complete"
    assert window.folio.runtime.restarts >= 1


@pytest.mark.slow
def test_a_model_that_crashes_llama_cpp_on_load_leaves_a_usable_window(qtbot, make_window,
                                                                       monkeypatch):
    """llama.cpp aborts while loading the model (the test switch sends a real SIGABRT to the
    model process): the window shows why, stays usable, and answers once the model loads."""
    monkeypatch.setenv("FOLIO_MODEL_HOST_CRASH", "abort@load")
    window = make_window()
    qtbot.waitUntil(lambda: window.banner.isVisible()
                    and "signal 6 (SIGABRT)" in window.banner.text.text(),
                    timeout=ANSWER_TIMEOUT)
    assert window.isVisible()
    qtbot.waitUntil(lambda: window.library.opened, timeout=60_000)
    monkeypatch.delenv("FOLIO_MODEL_HOST_CRASH")
    window.chat.new_chat()
    window.chat.set_scope({"mode": "none"})
    set_max_tokens(window, 8, qtbot)
    with qtbot.waitSignal(window.chat.answer_finished, timeout=ANSWER_TIMEOUT) as done:
        ask(qtbot, window, "Say hello.")
    assert done.args[0] is not None and done.args[0].kind == "done"
    assert window.chat.messages[-1].status == "complete"


def test_the_side_panel_opens_when_asked_and_closes_again(qtbot, make_window):
    window = make_window()
    assert window.right.isHidden()  # a new window gives the conversation the width
    window.activateWindow()  # shortcuts reach the active window only
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window.chat.input, Qt.Key.Key_M,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert not window.right.isHidden() and window.right.currentWidget() is window.model
    assert window.side_action.isChecked()
    qtbot.mouseClick(window.close_side_btn, Qt.MouseButton.LeftButton)
    assert window.right.isHidden() and not window.side_action.isChecked()
    window.toggle_model_panel()
    window.close()

    again = make_window()  # left open: open again
    assert not again.right.isHidden()
    again.show_side_panel(False)


def test_the_sidebar_holds_chats_library_and_models_and_each_folds(qtbot, make_window):
    window = make_window(load_model=False)
    sidebar = window.sidebar
    assert [s.title for s in sidebar.sections] == ["Chats", "Library", "Models"]
    chats, library, models = sidebar.sections
    assert sidebar.isAncestorOf(window.chat.chat_list) and sidebar.isAncestorOf(window.library)
    assert not sidebar.isAncestorOf(window.chat.view)
    assert window.chat.new_btn.parent() is chats.header
    assert window.library.add_files_btn.parent() is library.header
    # The conversation takes most of the width; the side panel is closed.
    window.resize(1400, 900)
    qtbot.waitUntil(lambda: window.chat.width() > 0.55 * window.width())
    assert window.chat.width() > 2 * window.sidebar.width()

    # A click on a section's header folds it to the header; another unfolds it.
    qtbot.mouseClick(chats.button, Qt.MouseButton.LeftButton)
    assert not chats.expanded() and chats.body.isHidden()
    assert chats.height() <= chats.header.sizeHint().height() + 2
    assert chats.button.arrowType() == Qt.ArrowType.RightArrow
    qtbot.mouseClick(chats.button, Qt.MouseButton.LeftButton)
    assert chats.expanded() and not chats.body.isHidden()

    # Models: what is loaded and the way to the settings and the manager.
    assert models.body is window.model_box
    qtbot.mouseClick(window.model_box.settings_btn, Qt.MouseButton.LeftButton)
    assert not window.right.isHidden() and window.right.currentWidget() is window.model

    # Ctrl+B hides and shows the whole sidebar.
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window.chat.input, Qt.Key.Key_B, Qt.KeyboardModifier.ControlModifier)
    assert window.sidebar.isHidden() and not window.sidebar_action.isChecked()
    qtbot.keyClick(window.chat.input, Qt.Key.Key_B, Qt.KeyboardModifier.ControlModifier)
    assert not window.sidebar.isHidden()


def test_tab_follows_the_layout_and_every_control_has_a_name(qtbot, make_window):
    window = make_window(load_model=False)
    chain = window.focus_chain()
    # Following the focus chain from the first control meets the others in layout order.
    seen, widget = [], chain[0]
    for _ in range(400):
        if widget in chain and widget not in seen:
            seen.append(widget)
        widget = widget.nextInFocusChain()
        if widget is chain[0]:
            break
    assert seen == chain
    for w in chain:
        assert w.accessibleName() or w.text(), w
