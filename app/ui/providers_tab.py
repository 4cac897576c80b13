"""The Settings dialog's Providers tab: remote OpenAI-compatible providers (add, remove) and
which one the window's chat answers with (or the local model).

Settings keep a provider's name, URL and models; its API key goes to the system keyring when
the provider is added (app/core/llm/remote.py). Where there is no keyring the tab says so, the
key is kept for this session only, and the window asks for it again next time.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.llm import remote
from app.core.settings import AppSettings

LOCAL = "The local model"


class ProvidersTab(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._configs: list[remote.ProviderConfig] = []
        layout = QVBoxLayout(self)
        self.list = QListWidget()
        self.list.setAccessibleName("Providers")
        layout.addWidget(self.list, 1)
        self.remove_button = QPushButton("Remove")
        self.remove_button.setAccessibleName("Remove the provider")
        self.remove_button.clicked.connect(self._remove)
        layout.addWidget(self.remove_button)

        form = QFormLayout()
        self.name_edit = self._field(form, "&Name:", "Provider name")
        self.url_edit = self._field(form, "&URL:", "Provider URL")
        self.url_edit.setPlaceholderText("https://api.example.com/v1")
        self.model_edit = self._field(form, "&Model:", "Provider model")
        self.embedder_edit = self._field(form, "&Embedder model:", "Provider embedder model")
        self.embedder_edit.setPlaceholderText("optional")
        self.key_edit = self._field(form, "API &key:", "Provider API key")
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.add_button = QPushButton("Add provider")
        self.add_button.setAccessibleName("Add the provider")
        self.add_button.clicked.connect(self._add)
        form.addRow("", self.add_button)
        layout.addLayout(form)

        row = QHBoxLayout()
        row.addWidget(QLabel("Chat &with:"))
        self.chat_combo = QComboBox()
        self.chat_combo.setAccessibleName("Chat with")
        row.itemAt(0).widget().setBuddy(self.chat_combo)
        self.chat_combo.setToolTip("The model new chats answer with. Each chat can choose "
                                   "another in the Model tab's \"Model\" list.")
        row.addWidget(self.chat_combo, 1)
        layout.addLayout(row)
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setAccessibleName("Providers note")
        layout.addWidget(self.note)
        self._say("Nothing is sent anywhere until you add a provider and chat with it. "
                  "Questions, the passages found for them and the chat go to that server.")

    @staticmethod
    def _field(form: QFormLayout, label: str, name: str) -> QLineEdit:
        edit = QLineEdit()
        edit.setAccessibleName(name)
        text = QLabel(label)
        text.setBuddy(edit)
        form.addRow(text, edit)
        return edit

    def _say(self, text: str) -> None:
        self.note.setText(text)

    # -- values ------------------------------------------------------------------------------

    def load(self, settings: AppSettings) -> None:
        try:
            self._configs = settings.provider_configs()
        except (TypeError, ValueError, KeyError):
            self._configs = []
        self._refresh(settings.chat_provider)

    def _refresh(self, chosen: str) -> None:
        self.list.clear()
        self.chat_combo.clear()
        self.chat_combo.addItem(LOCAL, "")
        for c in self._configs:
            self.list.addItem(f"{c.name} — {c.model} at {c.base_url}")
            self.chat_combo.addItem(f"{c.name} ({c.model}, remote)", c.name)
        self.chat_combo.setCurrentIndex(max(0, self.chat_combo.findData(chosen)))
        self.remove_button.setEnabled(bool(self._configs))

    def values(self) -> dict:
        """The AppSettings fields this tab edits."""
        return {"providers": [c.to_dict() for c in self._configs],
                "chat_provider": self.chat_combo.currentData() or ""}

    # -- actions -----------------------------------------------------------------------------

    def _add(self) -> None:
        try:
            config = remote.ProviderConfig(
                name=self.name_edit.text().strip(), base_url=self.url_edit.text().strip(),
                model=self.model_edit.text().strip(),
                embedder_model=self.embedder_edit.text().strip() or None)
        except ValueError as exc:
            self._say(str(exc))
            return
        chosen = self.chat_combo.currentData() or ""
        self._configs = [c for c in self._configs if c.name != config.name] + [config]
        key = self.key_edit.text().strip()
        self.key_edit.clear()
        said = f"Added {config.name}."
        if key:
            try:
                remote.store_key(config.name, key)
                said += " Its key is in the system keyring."
            except remote.NoKeyring as exc:
                said += f" {exc}"
        self._refresh(chosen)
        self._say(said)

    def _remove(self) -> None:
        row = self.list.currentRow()
        if not 0 <= row < len(self._configs):
            self._say("Choose a provider to remove.")
            return
        gone = self._configs.pop(row)
        remote.delete_key(gone.name)
        chosen = self.chat_combo.currentData() or ""
        self._refresh("" if chosen == gone.name else chosen)
        self._say(f"Removed {gone.name} and its key.")
