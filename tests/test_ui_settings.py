"""The Settings dialog, driven through its real widgets."""

from __future__ import annotations

from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QApplication, QMessageBox

from app.core.chat.prompts import PromptSet
from app.core.settings import AppSettings
from app.ui.settings_dialog import REINDEX_NOTE, SettingsDialog


def make_dialog(qtbot, **kwargs):
    dialog = SettingsDialog(**kwargs)
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    return dialog


def test_ok_persists_edited_values(qtbot, tmp_path):
    dialog = make_dialog(qtbot)
    new_library = str(tmp_path / "my library")
    dialog.library_edit.clear()
    qtbot.keyClicks(dialog.library_edit, new_library)
    dialog.tabs.setCurrentIndex(1)
    dialog.chunk_spin.setValue(300)
    dialog.overlap_spin.setValue(50)
    assert dialog.time_limit_spin.value() == 300
    dialog.time_limit_spin.setValue(90)
    dialog.k_spin.setValue(8)
    assert dialog.section_spin.value() == 600
    dialog.section_spin.setValue(dialog.section_spin.minimum())
    assert dialog.section_spin.text() == "Off: the passage alone"
    box = dialog.mmr_check
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))
    assert not box.isChecked()
    dialog.tabs.setCurrentIndex(0)
    dialog.theme_combo.setCurrentIndex(dialog.theme_combo.findData("dark"))
    with qtbot.waitSignal(dialog.settings_changed) as changed:
        qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert dialog.result() == dialog.DialogCode.Accepted
    saved = AppSettings.load()
    assert changed.args[0] == saved
    assert saved.library == new_library
    assert (saved.chunk_tokens, saved.overlap_tokens, saved.retrieval_k) == (300, 50, 8)
    assert saved.mmr is False and saved.theme == "dark"
    assert saved.file_time_limit == 90
    assert saved.section_tokens == 0 and saved.chat_config().section_tokens == 0
    # Fields the dialog does not show are kept.
    assert saved.n_ctx == AppSettings().n_ctx


def test_cancel_discards(qtbot):
    AppSettings(retrieval_k=6).save()
    dialog = make_dialog(qtbot)
    assert dialog.k_spin.value() == 6
    dialog.k_spin.setValue(12)
    qtbot.keyClick(dialog, Qt.Key.Key_Escape)
    assert dialog.result() == dialog.DialogCode.Rejected
    assert AppSettings.load().retrieval_k == 6


def test_overlap_is_kept_below_chunk_size(qtbot):
    dialog = make_dialog(qtbot)
    dialog.chunk_spin.setValue(100)
    dialog.overlap_spin.setValue(150)
    assert dialog.overlap_spin.value() == 99
    dialog.overlap_spin.setValue(80)
    dialog.chunk_spin.setValue(64)
    assert dialog.overlap_spin.value() == 63
    # Typing a too-large overlap is refused by the spin box too.
    dialog.overlap_spin.selectAll()
    qtbot.keyClicks(dialog.overlap_spin, "500")
    dialog.overlap_spin.interpretText()
    assert dialog.overlap_spin.value() < dialog.chunk_spin.value()
    assert dialog.chunk_note.isVisible() or dialog.tabs.currentIndex() != 1
    dialog.accept()
    saved = AppSettings.load()
    assert saved.overlap_tokens < saved.chunk_tokens == 64
    saved.splitter_config()


def test_embedder_change_shows_reindex_note(qtbot, tmp_path):
    dialog = make_dialog(qtbot)
    combo = dialog.embedder_combo
    assert combo.currentData() == "all-MiniLM-L6-v2"
    assert not dialog.embedder_note.isVisible()
    combo.setCurrentIndex(combo.findData("all-mpnet-base-v2"))  # not installed in tests
    assert dialog.embedder_note.isVisible()
    assert dialog.embedder_note.text().startswith("all-mpnet-base-v2 is not installed yet.")
    assert not dialog.embedder_install_btn.isHidden()
    # "Other folder…" asks for a folder; cancelling keeps the previous choice.
    dialog.choose_folder = lambda *_: ""
    combo.setCurrentIndex(combo.count() - 1)
    assert combo.currentData() == "all-mpnet-base-v2"
    model_dir = tmp_path / "my-embedder"
    model_dir.mkdir()
    dialog.choose_folder = lambda *_: str(model_dir)
    combo.setCurrentIndex(combo.count() - 1)
    assert combo.currentData() == str(model_dir)
    assert dialog.embedder_note.text() == REINDEX_NOTE
    assert dialog.embedder_install_btn.isHidden()
    dialog.accept()
    assert AppSettings.load().embedder == str(model_dir)
    combo.setCurrentIndex(combo.findData("all-MiniLM-L6-v2"))


def test_browse_sets_library_folder(qtbot, tmp_path):
    dialog = make_dialog(qtbot)
    dialog.choose_folder = lambda *_: str(tmp_path)
    qtbot.mouseClick(dialog.browse_button, Qt.MouseButton.LeftButton)
    assert dialog.library_edit.text() == str(tmp_path)


def test_broken_template_is_not_saved_and_error_is_shown(qtbot):
    prompts = PromptSet()
    dialog = make_dialog(qtbot, prompts=prompts)
    dialog.tabs.setCurrentIndex(2)
    dialog.template_list.setCurrentRow(0)
    name = dialog.template_list.currentItem().data(Qt.ItemDataRole.UserRole)
    assert dialog.template_edit.toPlainText() == prompts.source(name, default=True)
    dialog.template_edit.selectAll()
    qtbot.keyClicks(dialog.template_edit, "Hello {% if %} broken")
    qtbot.mouseClick(dialog.template_save, Qt.MouseButton.LeftButton)
    assert dialog.template_error.isVisible()
    assert "does not parse" in dialog.template_error.text()
    assert not prompts.is_customised(name)
    # OK does not close over a broken template either.
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert dialog.isVisible() and dialog.template_error.isVisible()
    assert not prompts.is_customised(name)

    # A good template saves; Reset goes back to the default.
    dialog.template_edit.setPlainText("You answer from the documents. {{ 1 + 1 }}")
    qtbot.mouseClick(dialog.template_save, Qt.MouseButton.LeftButton)
    assert not dialog.template_error.isVisible()
    assert prompts.source(name) == "You answer from the documents. {{ 1 + 1 }}"
    assert "yours" in dialog.template_list.item(0).text()
    qtbot.mouseClick(dialog.template_reset, Qt.MouseButton.LeftButton)
    assert not prompts.is_customised(name)
    assert dialog.template_edit.toPlainText() == prompts.source(name, default=True)


def test_unsaved_template_edit_is_saved_by_ok(qtbot):
    prompts = PromptSet()
    dialog = make_dialog(qtbot, prompts=prompts)
    dialog.tabs.setCurrentIndex(2)
    dialog.template_list.setCurrentRow(1)
    name = dialog.template_list.currentItem().data(Qt.ItemDataRole.UserRole)
    dialog.template_edit.setPlainText("Sources:\n{{ sources | length }}")
    dialog.template_list.setCurrentRow(0)  # switching keeps the draft
    dialog.template_list.setCurrentRow(1)
    assert dialog.template_edit.toPlainText() == "Sources:\n{{ sources | length }}"
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert not dialog.isVisible()
    assert prompts.source(name) == "Sources:\n{{ sources | length }}"


def test_a_failed_save_is_said_in_the_dialog_and_it_stays_open(qtbot, tmp_path):
    in_the_way = tmp_path / "config"
    in_the_way.write_text("a file where the settings folder should be")
    blocked = in_the_way / "settings.json"  # writing it fails: its folder is a file
    dialog = make_dialog(qtbot, path=blocked)
    dialog.tabs.setCurrentIndex(1)
    dialog.k_spin.setValue(9)
    changed = []
    dialog.settings_changed.connect(changed.append)
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert dialog.isVisible() and dialog.result() != dialog.DialogCode.Accepted
    assert not changed
    assert dialog.save_error.isVisible()
    assert dialog.save_error.text().startswith("The settings could not be saved:")
    assert not [w for w in QApplication.topLevelWidgets()  # no second dialog on top
                if isinstance(w, QMessageBox) and w.isVisible()]
    in_the_way.unlink()  # out of the way: the same OK now saves, and the message goes
    with qtbot.waitSignal(dialog.settings_changed):
        qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert AppSettings.load(blocked).retrieval_k == 9
    assert not dialog.save_error.isVisible()


def test_mcp_servers_are_added_and_removed_in_the_tools_tab(qtbot):
    AppSettings(mcp_servers=[{"name": "old", "command": "old-server", "args": [],
                              "env": {}}]).save()
    dialog = make_dialog(qtbot)
    dialog.tabs.setCurrentIndex(dialog.tabs.count() - 1)
    assert dialog.mcp_list.count() == 1
    qtbot.keyClicks(dialog.mcp_name_edit, "docs")
    qtbot.keyClicks(dialog.mcp_command_edit, 'npx -y "docs server" --flag')
    qtbot.keyClicks(dialog.mcp_env_edit, "TOKEN=abc")
    qtbot.mouseClick(dialog.mcp_add_button, Qt.MouseButton.LeftButton)
    assert dialog.mcp_list.count() == 2 and "Added 'docs'" in dialog.mcp_note.text()
    qtbot.keyClicks(dialog.mcp_name_edit, "docs")  # the same name again is refused
    qtbot.keyClicks(dialog.mcp_command_edit, "x")
    qtbot.mouseClick(dialog.mcp_add_button, Qt.MouseButton.LeftButton)
    assert dialog.mcp_list.count() == 2 and "used twice" in dialog.mcp_note.text()
    dialog.mcp_list.setCurrentRow(0)
    qtbot.mouseClick(dialog.mcp_remove_button, Qt.MouseButton.LeftButton)
    assert "Removed 'old'" in dialog.mcp_note.text()
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert AppSettings.load().mcp_servers == [
        {"name": "docs", "command": "npx", "args": ["-y", "docs server", "--flag"],
         "env": {"TOKEN": "abc"}}]


def test_a_providers_embedder_model_is_offered_and_says_what_it_sends(qtbot):
    from app.core.llm.remote import ProviderConfig

    settings = AppSettings()
    settings.add_provider(ProviderConfig("gpubox", "http://127.0.0.1:9/v1", "qwen",
                                         embedder_model="nomic-embed"))
    settings.add_provider(ProviderConfig("chatonly", "http://127.0.0.1:9/v1", "qwen"))
    settings.save()
    dialog = make_dialog(qtbot)
    combo = dialog.embedder_combo
    at = combo.findData("provider:gpubox")
    assert at >= 0 and combo.itemText(at) == "nomic-embed from gpubox (remote)"
    assert combo.findData("provider:chatonly") < 0  # no embedder model, nothing to offer
    combo.setCurrentIndex(at)
    assert dialog.embedder_note.isVisible()
    assert "sent to that provider" in dialog.embedder_note.text()
    assert dialog.embedder_install_btn.isHidden()
    dialog.accept()
    assert AppSettings.load().embedder == "provider:gpubox"


def test_the_reranker_is_automatic_until_chosen_and_lists_the_installed_ones(
        qtbot, tmp_path, monkeypatch):
    from test_rerank import make_cross_encoder

    monkeypatch.setenv("FOLIO_RERANKERS", str(tmp_path / "rerankers"))
    dialog = make_dialog(qtbot)
    combo = dialog.reranker_combo
    assert combo.currentData() == "auto" and "none installed" in combo.currentText()
    dialog.close()

    make_cross_encoder(tmp_path / "rerankers" / "tiny")
    dialog = make_dialog(qtbot)
    combo = dialog.reranker_combo
    assert combo.itemText(0) == "Automatic (tiny)"
    assert [combo.itemData(i) for i in range(combo.count())] == ["auto", "off", "tiny"]
    combo.setCurrentIndex(combo.findData("off"))
    with qtbot.waitSignal(dialog.settings_changed):
        qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    assert AppSettings.load().reranker == "off"
    assert AppSettings.load().chat_config().reranker == "off"
