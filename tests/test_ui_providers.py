"""Remote providers in the window: the Settings dialog's Providers tab, and the window's chat
answering with the chosen provider (a real loopback server, tests/remoteservers.py)."""

from __future__ import annotations

import dataclasses

import keyring
from keyring.backends import fail
from PySide6.QtCore import Qt
from remoteservers import FakeOpenAI
from test_remote import SECRET
from test_remote import memory_keyring as ring  # noqa: F401 - a fixture

from app.core.llm import remote
from app.core.settings import AppSettings
from app.ui.settings_dialog import SettingsDialog


def fill(qtbot, tab, name, url, model, key):
    for edit, text in ((tab.name_edit, name), (tab.url_edit, url), (tab.model_edit, model),
                       (tab.key_edit, key)):
        edit.clear()
        qtbot.keyClicks(edit, text)
    qtbot.mouseClick(tab.add_button, Qt.MouseButton.LeftButton)


def test_add_choose_and_remove_a_provider(qtbot, ring, folio_home):
    dialog = SettingsDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    tab = dialog.providers_tab
    dialog.tabs.setCurrentWidget(tab)
    fill(qtbot, tab, "bad name!", "https://x/v1", "m", "")
    assert "provider name" in tab.note.text() and tab.list.count() == 0
    fill(qtbot, tab, "work", "https://api.example.com/v1", "gpt-x", SECRET)
    assert tab.list.count() == 1 and "keyring" in tab.note.text()
    assert tab.key_edit.text() == ""
    tab.chat_combo.setCurrentIndex(tab.chat_combo.findData("work"))
    with qtbot.waitSignal(dialog.settings_changed):
        qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    saved = AppSettings.load()
    assert saved.chat_provider == "work" and saved.find_provider("work").model == "gpt-x"
    assert ring.items[remote.KEYRING_SERVICE, "work"] == SECRET
    for path in folio_home.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path

    dialog = SettingsDialog()
    qtbot.addWidget(dialog)
    tab = dialog.providers_tab
    tab.list.setCurrentRow(0)
    qtbot.mouseClick(tab.remove_button, Qt.MouseButton.LeftButton)
    assert tab.values() == {"providers": [], "chat_provider": ""}
    assert (remote.KEYRING_SERVICE, "work") not in ring.items


def test_without_a_keyring_the_tab_says_the_key_is_for_this_session(qtbot, folio_home):
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())
    try:
        dialog = SettingsDialog()
        qtbot.addWidget(dialog)
        fill(qtbot, dialog.providers_tab, "work", "https://api.example.com/v1", "m", SECRET)
        assert "this session only" in dialog.providers_tab.note.text()
    finally:
        keyring.set_keyring(previous)
        remote._session_keys.clear()


def test_the_window_answers_with_the_chosen_provider(qtbot, folio_home, tmp_path,
                                                       monkeypatch):
    from app.ui.main_window import MainWindow

    monkeypatch.setenv("FOLIO_QSETTINGS", str(tmp_path / "folio.ini"))
    previous = keyring.get_keyring()
    keyring.set_keyring(fail.Keyring())  # no keyring: the window asks for the key
    remote._session_keys.clear()
    window = MainWindow(load_model=False)
    qtbot.addWidget(window)
    asked = []
    window.ask_provider_key = lambda name: asked.append(name) or SECRET
    try:
        with FakeOpenAI() as server:
            settings = AppSettings()
            settings.add_provider(remote.ProviderConfig("work", server.url("ok"), "gpt-x"))
            window.apply_settings(dataclasses.replace(settings, chat_provider="work"))
            assert asked == ["work"] and window.folio.provider.name == "work"
            store = window.folio.store
            chat = store.create_chat(scope={"mode": "none"})
            events = list(window.folio.chat.ask(chat.id, "How often?"))
            assert events[-1].kind == "done" and events[-1].text == "Water twice a week [1]."
            assert server.requests[-1]["headers"]["Authorization"] == f"Bearer {SECRET}"
            assert store.messages(chat.id)[-1].meta["remote"] is True
            window.apply_settings(settings)  # back to the local model
            assert window.folio.provider is None
    finally:
        window.close()
        keyring.set_keyring(previous)
        remote._session_keys.clear()


def test_the_chats_model_list_offers_providers_and_answers_through_the_chosen_one(
        qtbot, ring, folio_home, tmp_path, monkeypatch):
    """The Model tab's "Model" list (this chat's model) holds the providers beside the model
    files; choosing one makes this chat answer through it, marked remote, and another chat
    keeps the default."""
    from app.ui.main_window import MainWindow

    monkeypatch.setenv("FOLIO_QSETTINGS", str(tmp_path / "folio.ini"))
    window = MainWindow(load_model=False)
    qtbot.addWidget(window)
    try:
        with FakeOpenAI() as server:
            settings = AppSettings()
            settings.add_provider(remote.ProviderConfig("work", server.url("ok"), "gpt-x"))
            remote.store_key("work", SECRET)
            window.apply_settings(settings)
            first = window.chat.new_chat()
            combo = window.model.chat_model
            at = combo.findData("provider:work")
            assert at > 0 and combo.itemText(at) == "work · gpt-x (remote)"
            assert combo.itemText(0).startswith("Default")  # the local default model
            combo.setCurrentIndex(at)
            # (the window warms the embedder up meanwhile: on a busy machine that takes a while)
            qtbot.waitUntil(lambda: window.folio.provider is not None
                            and window.model.loading_name is None, timeout=60_000)
            assert window.folio.provider.name == "work"
            assert window.model.info is not None and window.model.info.device == "remote"
            assert not server.requests  # choosing sends nothing
            assert window.chat.store.get_chat(first).model == "provider:work"

            window.chat.store.update_chat(first, scope={"mode": "none"})  # no documents here
            window.chat.open_chat(first)
            window.chat.ask("How often should I water?")
            qtbot.waitUntil(lambda: window.chat.job is None, timeout=20000)
            saved = window.chat.store.messages(first)[-1]
            assert saved.content == "Water twice a week [1]." and saved.meta["remote"] is True
            assert server.requests[-1]["headers"]["Authorization"] == f"Bearer {SECRET}"
            assert "gpt-x via work (remote)" in window.chat.view.toPlainText()

            window.chat.new_chat()  # another chat: its list shows the default again
            assert window.model.chat_model.currentIndex() == 0
            assert window.chat.store.get_chat(window.chat.chat_id).model is None
    finally:
        window.close()
