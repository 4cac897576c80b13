"""The window's actions driven through their real widgets (pytest-qt, offscreen): the library's
context menu, chat actions and shortcuts, the per-chat scope, Settings, and a model that will
not load. Real embedder, LanceDB and starter model; no sleeps.

Most tests share one window on one ingested library (built once for the module) to keep the
file quick; each test makes its own chat and its own documents where it changes them. Only
what would block or leave the process is patched: the answer of a confirmation or input dialog,
the menu's event loop (the test picks the action the user would click), and the desktop's
"open this URL".
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QContextMenuEvent, QDesktopServices
from PySide6.QtWidgets import (
    QApplication,
    QDialog,
    QFileDialog,
    QInputDialog,
    QMenu,
    QMessageBox,
)
from pytestqt.qtbot import QtBot
from test_ui_window import ANSWER_TIMEOUT, INGEST_TIMEOUT, ask, drop, set_max_tokens

from app.core.settings import AppSettings
from app.ui import chat_panel, library_panel, settings_dialog
from app.ui.chat_panel import CHAT_ROLE, ChecklistDialog
from app.ui.library_panel import COLLECTION_ROLE, DOC_ROLE
from app.ui.main_window import MainWindow
from app.core.index.search import hybrid_search

GARDEN = ("# Garden\n\nWatering. Water tomato plants deeply twice a week, early in the morning."
          "\n\nGreenhouse bread. In the warm greenhouse, bread dough rises in one hour.\n")
KITCHEN = ("# Kitchen\n\nBread. Let the bread dough rise for two hours in a warm place before "
           "baking.\n\nSoup. Simmer the vegetable soup for forty minutes.\n")
NOTES = "Lighthouse notes.\n\nThe keeper cleans the lamp every Sunday and logs the weather.\n"
LONG = " ".join(f"Sentence {i} tells how the harbour crane number {i} lifts containers onto "
                f"ships at dawn." for i in range(120))


# -- the shared window ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def shared(request, qapp, starter_model, tmp_path_factory):
    """One window on a library with garden.md (Garden), kitchen.md (Kitchen), notes.txt and
    long_a.txt (unsorted), the starter model loaded."""
    from conftest import SHARED_MODELS

    home = tmp_path_factory.mktemp("actions-home")
    docs = tmp_path_factory.mktemp("actions-docs")
    with pytest.MonkeyPatch.context() as mp:
        # The function-scoped folio_home fixture does not exist yet at module scope.
        mp.setenv("FOLIO_HOME", str(home))
        mp.setenv("FOLIO_LIBRARY", str(home / "library"))
        mp.setenv("FOLIO_LOG_DIR", str(home / "logs"))
        mp.setenv("FOLIO_MODELS", str(SHARED_MODELS))
        mp.setenv("FOLIO_QSETTINGS", str(home / "folio.ini"))
        bot = QtBot(request)
        window = MainWindow()
        window.show()
        window.start()
        with bot.waitSignal(window.model_loaded, timeout=ANSWER_TIMEOUT):
            pass
        bot.waitUntil(lambda: window.library.opened, timeout=60_000)
        paths = {}
        for name, text in (("garden.md", GARDEN), ("kitchen.md", KITCHEN),
                           ("notes.txt", NOTES), ("long_a.txt", LONG)):
            paths[name] = docs / name
            paths[name].write_text(text, "utf-8")
        lib = window.library
        lib.ingest([str(paths["garden.md"])], "Garden")
        lib.ingest([str(paths["kitchen.md"])], "Kitchen")
        lib.ingest([str(paths["notes.txt"]), str(paths["long_a.txt"])], None)
        wait_ready(bot, window, [paths[n] for n in paths])
        window.docs_dir = docs
        window.paths = {k: str(v) for k, v in paths.items()}
        yield window
        window.close()


def wait_ready(qtbot, window, paths) -> None:
    lib = window.library
    qtbot.waitUntil(lambda: not lib.indexing and all(
        any(d.path == str(p) and d.status == "ready" for d in lib.docs) for p in paths),
        timeout=INGEST_TIMEOUT)


def listed(lib) -> dict[str, set[str]]:
    """Path -> the collections (top-level rows; "" for Unsorted) the tree lists it under."""
    out: dict[str, set[str]] = {}
    for i in range(lib.tree.topLevelItemCount()):
        top = lib.tree.topLevelItem(i)
        for j in range(top.childCount()):
            out.setdefault(top.child(j).data(0, DOC_ROLE), set()).add(
                top.data(0, COLLECTION_ROLE))
    return out


def doc_item(lib, path: str, collection: str | None = None):
    for i in range(lib.tree.topLevelItemCount()):
        top = lib.tree.topLevelItem(i)
        if collection is not None and top.data(0, COLLECTION_ROLE) != collection:
            continue
        for j in range(top.childCount()):
            if top.child(j).data(0, DOC_ROLE) == path:
                return top.child(j)
    raise AssertionError(f"{path} is not in the tree under {collection!r}")


def record(window, path: str):
    return next((d for d in window.folio.library.documents() if d.path == path), None)


def choose_from_context_menu(qtbot, monkeypatch, module, view, rect, text: str) -> None:
    """Right-click at `rect` in an item view and pick `text` from the menu the code builds.

    The menu's own event loop would wait for a person, so the module's QMenu is swapped for a
    subclass whose exec() triggers the chosen real QAction, as a click on it would. (Patching
    QMenu.exec itself does not work: PySide finds the C++ method on instances first.)"""
    chosen = []

    class PickingMenu(QMenu):
        def exec(self, *_args, **_kw):
            actions = {a.text(): a for a in self.actions() if not a.isSeparator()}
            assert text in actions, list(actions)
            assert actions[text].isEnabled(), text
            chosen.append(text)
            actions[text].trigger()
            return actions[text]

    monkeypatch.setattr(module, "QMenu", PickingMenu)
    pos = rect.center()
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.RightButton, pos=pos)  # selects the row
    if not chosen:  # offscreen, a right-click sends no context-menu event: send it
        QApplication.sendEvent(view.viewport(), QContextMenuEvent(
            QContextMenuEvent.Reason.Mouse, pos, view.viewport().mapToGlobal(pos)))
    assert chosen == [text]


def doc_menu(qtbot, monkeypatch, window, path, text, collection=None) -> None:
    lib = window.library
    item = doc_item(lib, path, collection)
    lib.tree.scrollToItem(item)
    rect = lib.tree.visualItemRect(item)
    choose_from_context_menu(qtbot, monkeypatch, library_panel, lib.tree, rect, text)


def answer_question(qtbot, window, question: str):
    with qtbot.waitSignal(window.chat.answer_finished, timeout=ANSWER_TIMEOUT) as done:
        ask(qtbot, window, question)
    assert done.args[0] is not None, window.banner.text.text()
    return window.chat.messages[-1]


def fresh_chat(qtbot, window, max_tokens: int = 8) -> int:
    before = window.chat.chat_id
    qtbot.mouseClick(window.chat.new_btn, Qt.MouseButton.LeftButton)
    assert window.chat.chat_id != before
    set_max_tokens(window, max_tokens)
    return window.chat.chat_id


def choose_scope(qtbot, window, mode: str) -> None:
    """Pick a scope from the combo box's popup list with the mouse, as a user does."""
    combo = window.chat.scope
    index = combo.findData(mode)
    combo.showPopup()
    view = combo.view()
    qtbot.waitUntil(view.isVisible)
    rect = view.visualRect(view.model().index(index, 0))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    qtbot.waitUntil(lambda: not view.isVisible())
    assert combo.currentData() == mode


def activate(qtbot, window) -> None:
    window.activateWindow()
    window.raise_()
    qtbot.waitUntil(window.isActiveWindow)


# -- library context menu --------------------------------------------------------------------

def test_open_and_show_in_folder(qtbot, monkeypatch, shared):
    opened: list[QUrl] = []
    monkeypatch.setattr(QDesktopServices, "openUrl", lambda url: opened.append(url) or True)
    path = shared.paths["notes.txt"]
    doc_menu(qtbot, monkeypatch, shared, path, "Open")
    doc_menu(qtbot, monkeypatch, shared, path, "Show in folder")
    assert [u.toLocalFile() for u in opened] == [path, str(shared.docs_dir)]
    # A double-click opens it too.
    tree = shared.library.tree
    rect = tree.visualItemRect(doc_item(shared.library, path))
    qtbot.mouseDClick(tree.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert opened[-1].toLocalFile() == path


def test_remove_asks_first(qtbot, monkeypatch, shared):
    scrap = shared.docs_dir / "scrap.txt"
    scrap.write_text("A scrap note about paper boats.\n", "utf-8")
    shared.library.ingest([str(scrap)], None)
    wait_ready(qtbot, shared, [scrap])
    asked: list[str] = []
    answer = QMessageBox.StandardButton.No

    def question(_parent, _title, text, *_a, **_k):
        asked.append(text)
        return answer

    monkeypatch.setattr(QMessageBox, "question", question)
    doc_menu(qtbot, monkeypatch, shared, str(scrap), "Remove from library…")
    assert asked and "scrap" in asked[0]
    assert str(scrap) in listed(shared.library)
    assert record(shared, str(scrap)) is not None

    answer = QMessageBox.StandardButton.Yes
    doc_menu(qtbot, monkeypatch, shared, str(scrap), "Remove from library…")
    qtbot.waitUntil(lambda: str(scrap) not in listed(shared.library), timeout=60_000)
    assert record(shared, str(scrap)) is None
    assert scrap.exists()  # the file itself stays


def test_reindex_goes_through_indexing_to_ready(qtbot, monkeypatch, shared):
    path = shared.paths["kitchen.md"]
    before = record(shared, path).updated_at
    seen: list[str] = []
    shared.library.document_status.connect(
        lambda p, status: seen.append(status) if p == path else None)
    with qtbot.waitSignal(shared.library.ingest_finished, timeout=INGEST_TIMEOUT):
        doc_menu(qtbot, monkeypatch, shared, path, "Re-index")
        assert shared.library.status_of(path) == "queued"
    assert seen == ["indexing", "ready"]
    qtbot.waitUntil(lambda: shared.library.status_of(path) == "ready"
                    and record(shared, path).updated_at > before, timeout=30_000)
    qtbot.waitUntil(lambda: listed(shared.library).get(path) == {"Kitchen"}, timeout=30_000)


def test_copy_and_move_to_collection(qtbot, monkeypatch, shared):
    lib = shared.library
    offered: list[list[str]] = []
    target = "Favourites"

    def get_item(_parent, _title, _label, items, *_a, **_k):
        offered.append(list(items))
        return target, True

    monkeypatch.setattr(QInputDialog, "getItem", get_item)
    garden = shared.paths["garden.md"]
    doc_menu(qtbot, monkeypatch, shared, garden, "Copy to collection…", "Garden")
    assert {"Garden", "Kitchen"} <= set(offered[0])
    qtbot.waitUntil(lambda: listed(lib).get(garden) == {"Garden", "Favourites"}, timeout=60_000)
    assert record(shared, garden).collections == ["Favourites", "Garden"]
    assert shared.folio.library.collections()["Favourites"] == 1

    # Moving from Favourites keeps Garden; moving an unsorted document takes it out of Unsorted.
    target = "Archive"
    doc_menu(qtbot, monkeypatch, shared, garden, "Move to collection…", "Favourites")
    qtbot.waitUntil(lambda: listed(lib).get(garden) == {"Garden", "Archive"}, timeout=60_000)
    notes = shared.paths["notes.txt"]
    doc_menu(qtbot, monkeypatch, shared, notes, "Move to collection…", "")
    qtbot.waitUntil(lambda: listed(lib).get(notes) == {"Archive"}, timeout=60_000)
    assert record(shared, notes).collections == ["Archive"]
    assert shared.folio.library.collections() == {"Archive": 2, "Garden": 1, "Kitchen": 1}
    # The records written were the library's own: nothing rolled back, still searchable.
    assert record(shared, garden).status == "ready" and record(shared, garden).chunks > 0
    hits = hybrid_search(shared.folio.library, "tomato plants watering", k=3)
    assert any(h.path == garden for h in hits)


def test_summarise_puts_the_summary_in_the_chat(qtbot, monkeypatch, shared):
    path = shared.paths["notes.txt"]
    chat_id = fresh_chat(qtbot, shared)
    with qtbot.waitSignal(shared.chat.answer_finished, timeout=ANSWER_TIMEOUT) as done:
        doc_menu(qtbot, monkeypatch, shared, path, "Summarise")
        assert shared.chat.busy
    final = done.args[0]
    assert final is not None and final.kind == "done" and final.text
    assert shared.chat.chat_id == chat_id
    roles = [(m.role, m.content.split("\n")[0]) for m in shared.chat.messages]
    assert roles == [("user", "Summarise notes.txt"), ("assistant", "**Summary of notes.txt**")]
    assert final.text in shared.chat.messages[-1].content
    assert "Summary of notes.txt" in shared.chat.view.toPlainText()


# -- chat actions ----------------------------------------------------------------------------

def test_regenerate_and_copy(qtbot, shared):
    chat = shared.chat
    chat_id = fresh_chat(qtbot, shared)
    chat.set_scope({"mode": "none"})
    first = answer_question(qtbot, shared, "Say hello to the keeper")
    question = chat.messages[0]
    with qtbot.waitSignal(chat.answer_finished, timeout=ANSWER_TIMEOUT) as done:
        qtbot.mouseClick(chat.regen_btn, Qt.MouseButton.LeftButton)
    assert done.args[0] is not None
    stored = shared.folio.store.messages(chat_id)
    assert [m.role for m in stored] == ["user", "assistant"]
    assert stored[0].id == question.id
    assert stored[1].id != first.id and stored[1].status == "complete"
    assert [m.id for m in chat.messages] == [m.id for m in stored]

    # Copy: the link under the answer puts it on the clipboard.
    QApplication.clipboard().setText("something else")
    assert f"copy:{stored[1].id}" in chat.conversation_html()
    chat.view.anchorClicked.emit(QUrl(f"copy:{stored[1].id}"))
    assert QApplication.clipboard().text() == stored[1].content


def test_edit_and_resend_replaces_the_later_branch(qtbot, shared):
    chat = shared.chat
    chat_id = fresh_chat(qtbot, shared)
    chat.set_scope({"mode": "none"})
    answer_question(qtbot, shared, "Name a colour")
    answer_question(qtbot, shared, "Name an animal")
    stored = shared.folio.store.messages(chat_id)
    assert len(stored) == 4
    q1 = stored[0]
    assert f"edit:{q1.id}" in chat.conversation_html()
    chat.view.anchorClicked.emit(QUrl(f"edit:{q1.id}"))
    assert chat.input.toPlainText() == "Name a colour"
    assert chat.state_label.isVisible()
    chat.input.selectAll()
    with qtbot.waitSignal(chat.answer_finished, timeout=ANSWER_TIMEOUT) as done:
        ask(qtbot, shared, "Name a fruit")
    assert done.args[0] is not None
    stored = shared.folio.store.messages(chat_id)
    assert (stored[0].role, stored[0].id) == ("user", q1.id)
    assert stored[0].content == "Name a fruit"
    assert [m.role for m in stored] == ["user", "assistant"]
    assert "Name an animal" not in chat.view.toPlainText()


def test_chat_list_rename_search_delete(qtbot, monkeypatch, shared):
    chat = shared.chat
    store = shared.folio.store
    keep = fresh_chat(qtbot, shared)
    store.add_message(keep, "user", "Where do the puffins nest?")
    target = fresh_chat(qtbot, shared)
    store.add_message(target, "user", "When is the lamp cleaned?")
    chat.reload_chats()
    row = next(i for i in range(chat.chat_list.count())
               if chat.chat_list.item(i).data(CHAT_ROLE) == target)

    # Rename through the list's context menu.
    monkeypatch.setattr(QInputDialog, "getText",
                        lambda *_a, **_k: ("Lighthouse zebra log", True))
    rect = chat.chat_list.visualItemRect(chat.chat_list.item(row))
    choose_from_context_menu(qtbot, monkeypatch, chat_panel, chat.chat_list, rect, "Rename…")
    assert store.get_chat(target).title == "Lighthouse zebra log"
    assert chat.chat_list.currentItem().text() == "Lighthouse zebra log"

    # Search: by title, then by message text.
    chat.search.setFocus()
    qtbot.keyClicks(chat.search, "zebra")
    qtbot.waitUntil(lambda: chat.chat_list.count() == 1)
    assert chat.chat_list.item(0).data(CHAT_ROLE) == target
    chat.search.clear()
    qtbot.keyClicks(chat.search, "puffins")
    qtbot.waitUntil(lambda: [chat.chat_list.item(i).data(CHAT_ROLE)
                             for i in range(chat.chat_list.count())] == [keep])
    chat.search.clear()
    qtbot.waitUntil(lambda: chat.chat_list.count() == len(store.list_chats()))

    # Delete: No keeps it, Yes deletes it and opens another chat.
    chat.open_chat(target)
    answer = QMessageBox.StandardButton.No
    monkeypatch.setattr(QMessageBox, "question", lambda *_a, **_k: answer)
    qtbot.mouseClick(chat.delete_btn, Qt.MouseButton.LeftButton)
    assert store.get_chat(target).title == "Lighthouse zebra log"
    answer = QMessageBox.StandardButton.Yes
    qtbot.mouseClick(chat.delete_btn, Qt.MouseButton.LeftButton)
    with pytest.raises(KeyError):
        store.get_chat(target)
    ids = [chat.chat_list.item(i).data(CHAT_ROLE) for i in range(chat.chat_list.count())]
    assert target not in ids and keep in ids
    assert chat.chat_id is not None and chat.chat_id != target


def test_keyboard_shortcuts(qtbot, monkeypatch, shared):
    chat = shared.chat
    activate(qtbot, shared)
    count = chat.chat_list.count()
    before = chat.chat_id
    qtbot.keyClick(chat.input, Qt.Key.Key_N, Qt.KeyboardModifier.ControlModifier)
    assert chat.chat_list.count() == count + 1 and chat.chat_id != before
    assert chat.input.hasFocus()

    qtbot.keyClick(chat.input, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert chat.search.hasFocus()
    qtbot.keyClick(chat.search, Qt.Key.Key_L, Qt.KeyboardModifier.ControlModifier)
    assert chat.input.hasFocus()  # Ctrl+L: back to the question, wherever the focus was
    qtbot.keyClick(chat.input, Qt.Key.Key_F,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    assert shared.library.filter_edit.hasFocus()
    qtbot.keyClick(shared.library.filter_edit, Qt.Key.Key_L,
                   Qt.KeyboardModifier.ControlModifier)
    assert chat.input.hasFocus()

    added = shared.docs_dir / "ctrl_o.md"
    added.write_text("# Ferry\n\nThe ferry to the island leaves at nine.\n", "utf-8")
    monkeypatch.setattr(QFileDialog, "getOpenFileNames", lambda *_a, **_k: ([str(added)], ""))
    qtbot.keyClick(chat.input, Qt.Key.Key_O, Qt.KeyboardModifier.ControlModifier)
    assert shared.library.status_of(str(added)) == "queued"
    wait_ready(qtbot, shared, [added])


def test_enter_sends_and_shift_enter_adds_a_line(qtbot, shared):
    chat = shared.chat
    chat_id = fresh_chat(qtbot, shared)
    chat.set_scope({"mode": "none"})
    box = chat.input
    box.setFocus()
    qtbot.keyClicks(box, "First line")
    qtbot.keyClick(box, Qt.Key.Key_Return, Qt.KeyboardModifier.ShiftModifier)
    assert not chat.busy and box.toPlainText() == "First line\n"
    qtbot.keyClicks(box, "second line")
    with qtbot.waitSignal(chat.answer_finished, timeout=ANSWER_TIMEOUT):
        qtbot.keyClick(box, Qt.Key.Key_Return)
        assert chat.busy and box.toPlainText() == ""
    assert shared.folio.store.messages(chat_id)[0].content == "First line\nsecond line"


# -- scope -----------------------------------------------------------------------------------

def test_scope_per_chat(qtbot, monkeypatch, shared):
    chat = shared.chat
    store = shared.folio.store

    none_chat = fresh_chat(qtbot, shared)
    choose_scope(qtbot, shared, "none")
    assert store.get_chat(none_chat).scope["mode"] == "none"
    got_sources: list = []
    chat.sources_received.connect(got_sources.append)
    answer = answer_question(qtbot, shared, "How often should tomato plants be watered?")
    chat.sources_received.disconnect(got_sources.append)
    assert answer.role == "assistant" and answer.sources == [] and not got_sources

    offered: list[list[str]] = []
    pick = "Kitchen"

    def exec_checklist(dialog):
        items = [dialog.list.item(i) for i in range(dialog.list.count())]
        offered.append([i.data(Qt.ItemDataRole.UserRole) for i in items])
        for item in items:
            if item.data(Qt.ItemDataRole.UserRole) == pick:
                item.setCheckState(Qt.CheckState.Checked)
        return QDialog.DialogCode.Accepted.value

    monkeypatch.setattr(ChecklistDialog, "exec", exec_checklist)
    by_collection = {}
    for pick in ("Kitchen", "Garden"):
        chat_id = fresh_chat(qtbot, shared)
        choose_scope(qtbot, shared, "collections")
        assert store.get_chat(chat_id).scope == {"mode": "collections", "collections": [pick],
                                                 "documents": []}
        assert chat.scope.currentText() == f"Collections: {pick}"
        answer = answer_question(qtbot, shared, "How long should bread dough rise?")
        members = {d.path for d in shared.folio.library.documents() if pick in d.collections}
        assert answer.sources and {s.path for s in answer.sources} <= members, pick
        by_collection[pick] = chat_id
    assert {"Garden", "Kitchen"} <= set(offered[0])

    # Switching chats in the list shows each chat's own scope.
    def select(chat_id):
        row = next(i for i in range(chat.chat_list.count())
                   if chat.chat_list.item(i).data(CHAT_ROLE) == chat_id)
        rect = chat.chat_list.visualItemRect(chat.chat_list.item(row))
        qtbot.mouseClick(chat.chat_list.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
        assert chat.chat_id == chat_id

    select(none_chat)
    assert chat.scope.currentData() == "none"
    select(by_collection["Kitchen"])
    assert chat.scope.currentData() == "collections"
    assert chat.scope.currentText() == "Collections: Kitchen"
    select(by_collection["Garden"])
    assert chat.scope.currentText() == "Collections: Garden"


# -- settings --------------------------------------------------------------------------------

def test_settings_dialog_saves_and_the_window_applies(qtbot, monkeypatch, shared):
    themes: list[str] = []
    monkeypatch.setattr(settings_dialog, "apply_theme", themes.append)
    try:
        shared.settings_action.trigger()  # File › Settings…
        dialog = shared.settings_dialog
        assert dialog is not None and dialog.isVisible()
        assert QApplication.activeModalWidget() in (None, dialog)  # open(), not a blocking exec
        dialog.tabs.setCurrentIndex(1)
        dialog.k_spin.setValue(2)
        dialog.chunk_spin.setValue(64)
        dialog.overlap_spin.setValue(8)
        dialog.tabs.setCurrentIndex(0)
        dialog.theme_combo.setCurrentIndex(dialog.theme_combo.findData("dark"))
        with qtbot.waitSignal(dialog.finished):
            qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
        saved = AppSettings.load()
        assert (saved.retrieval_k, saved.chunk_tokens, saved.overlap_tokens, saved.theme) == (
            2, 64, 8, "dark")
        assert shared.app_settings == saved
        assert themes == ["dark"]
        qtbot.waitUntil(lambda: shared.settings_dialog is None)

        # Retrieval: the next answer uses k = 2.
        fresh_chat(qtbot, shared)
        answer = answer_question(qtbot, shared, "How long should bread dough rise?")
        assert shared.folio.chat.config.k == 2
        assert 0 < len(answer.sources) <= 2

        # Chunking: the next ingest splits with 64-token chunks.
        long_b = shared.docs_dir / "long_b.txt"
        long_b.write_text(LONG, "utf-8")
        shared.library.ingest([str(long_b)], None)
        wait_ready(qtbot, shared, [long_b])
        default_chunks = record(shared, shared.paths["long_a.txt"]).chunks
        assert record(shared, str(long_b)).chunks > 2 * default_chunks
    finally:
        shared.apply_settings(AppSettings())
        AppSettings().save()


# -- errors ----------------------------------------------------------------------------------

def test_model_that_fails_to_load_is_a_banner_not_a_dialog(qtbot, monkeypatch, tmp_path):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"this is not a GGUF file\n" * 64)
    AppSettings(model_path=str(bad)).save()
    monkeypatch.setenv("FOLIO_QSETTINGS", str(tmp_path / "folio.ini"))
    modal: list[str] = []
    for name in ("critical", "warning", "information", "question"):
        monkeypatch.setattr(QMessageBox, name,
                            lambda *a, _n=name, **k: modal.append(_n)
                            or QMessageBox.StandardButton.Ok)
    monkeypatch.setattr(QDialog, "exec", lambda self, *a: modal.append("exec") or 0)

    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignal(window.model_failed, timeout=ANSWER_TIMEOUT) as failed:
        window.start()
    reason = failed.args[0]
    assert reason
    assert window.banner.isVisible()
    assert "could not be loaded" in window.banner.text.text()
    assert reason in window.banner.text.text()
    qtbot.mouseClick(window.banner.details_btn, Qt.MouseButton.LeftButton)
    assert window.banner.details.isVisible() and window.banner.details.toPlainText()
    assert window.model_status.text() == "No model"
    assert window.model.name.text() == "Not loaded"
    assert QApplication.activeModalWidget() is None and not modal

    # The rest works: add a document, see it ready, browse it.
    qtbot.waitUntil(lambda: window.library.opened, timeout=60_000)
    doc = tmp_path / "tide.md"
    doc.write_text("# Tides\n\nHigh tide is at noon today.\n", "utf-8")
    drop(window.library.tree.viewport(), [doc])
    wait_ready(qtbot, window, [doc])
    lib = window.library
    lib.tree.setCurrentItem(doc_item(lib, str(doc)))
    assert str(doc) in lib.details.toPlainText() and "Ready" in lib.details.toPlainText()

    # Asking says why it cannot answer, without a dialog, and keeps the question.
    window.chat.new_chat()
    with qtbot.waitSignal(window.chat.answer_finished, timeout=ANSWER_TIMEOUT) as done:
        ask(qtbot, window, "When is high tide?")
    assert done.args[0] is None
    assert "answer failed" in window.banner.text.text()
    assert "Traceback" in window.banner.details.toPlainText()  # the detail is one click away
    assert window.chat.input.toPlainText() == "When is high tide?"
    assert not modal and QApplication.activeModalWidget() is None
    window.close()


def test_stop_button_and_escape_outside_the_question_box(qtbot, shared):
    chat = shared.chat
    activate(qtbot, shared)
    for how in ("button", "escape"):
        fresh_chat(qtbot, shared, max_tokens=400)
        chat.set_scope({"mode": "none"})
        shared.model.temperature.setValue(0.0)  # greedy: it cannot end by itself early
        with qtbot.waitSignal(chat.token_received, timeout=ANSWER_TIMEOUT):
            ask(qtbot, shared, "Write a long story about a ferry captain.")
        assert chat.stop_btn.isVisible()
        with qtbot.waitSignal(chat.answer_finished, timeout=30_000) as done:
            if how == "button":
                qtbot.mouseClick(chat.stop_btn, Qt.MouseButton.LeftButton)
            else:  # Esc is the window's shortcut: it stops from the chat list too
                chat.chat_list.setFocus()
                qtbot.keyClick(chat.chat_list, Qt.Key.Key_Escape)
        final = done.args[0]
        assert final is not None and final.stats["finish_reason"] == "cancelled", how
        assert chat.messages[-1].status == "cancelled"
        assert chat.send_btn.isVisible() and not chat.stop_btn.isVisible()
