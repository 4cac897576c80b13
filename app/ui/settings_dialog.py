"""The Settings dialog: library folder, embedder, chunking, retrieval, theme, prompt templates,
the local server.

The widgets only offer valid values (their ranges come from `app.core.settings`), so OK
never has to refuse a number. Prompt templates are files of their own (PromptSet): Save
stores one at once after checking that it parses; edits not yet saved are kept while the
dialog is open and saved by OK, which stays open and shows the error if one does not parse.
"""

from __future__ import annotations

import dataclasses
import logging
import shlex
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app.core.chat.prompts import TEMPLATES, PromptError, PromptSet
from app.core.settings import (
    CHUNK_TOKENS_RANGE,
    FILE_TIME_LIMIT_RANGE,
    DEFAULT_EMBEDDER,
    RETRIEVAL_K_RANGE,
    SECTION_TOKENS_RANGE,
    SERVER_PORT_RANGE,
    THEMES,
    AppSettings,
    mcp_server_problem,
)
from app.core.base.units import human_bytes
from app.ui.providers_tab import ProvidersTab

log = logging.getLogger(__name__)

OTHER_FOLDER = "Other folder…"
REINDEX_NOTE = (
    "Changing the embedder means the library must be re-indexed: every document is "
    "embedded again with the new model."
)
CHUNKING_NOTE = (
    "New chunk sizes apply to documents indexed from now on; re-index to apply "
    "them to the whole library."
)
THEME_LABELS = {"system": "Follow the system", "light": "Light", "dark": "Dark"}


_R = QPalette.ColorRole
# Fusion draws every role from the palette; native styles (Windows, macOS) may ignore some.
# (role, active/inactive colour, disabled colour or None for the same)
_DARK = [
    (_R.Window, "#2d2d2d", None), (_R.WindowText, "#e8e8e8", "#7f7f7f"),
    (_R.Base, "#1f1f1f", "#2a2a2a"), (_R.AlternateBase, "#383838", None),
    (_R.Text, "#e8e8e8", "#7f7f7f"), (_R.PlaceholderText, "#a0a0a0", "#6a6a6a"),
    (_R.Button, "#3a3a3a", "#333333"), (_R.ButtonText, "#e8e8e8", "#7f7f7f"),
    (_R.BrightText, "#ff6b6b", None),
    (_R.Highlight, "#2f6fc9", "#4a4a4a"), (_R.HighlightedText, "#ffffff", "#9a9a9a"),
    (_R.Link, "#79b8ff", "#5c7a99"), (_R.LinkVisited, "#c29bff", "#7a6a99"),
    (_R.ToolTipBase, "#45433a", None), (_R.ToolTipText, "#f0f0f0", None),
    (_R.Light, "#4e4e4e", None), (_R.Midlight, "#424242", None), (_R.Mid, "#262626", None),
    (_R.Dark, "#1a1a1a", None), (_R.Shadow, "#0a0a0a", None),
]
_LIGHT = [
    (_R.Window, "#efefef", None), (_R.WindowText, "#1a1a1a", "#9a9a9a"),
    (_R.Base, "#ffffff", "#f4f4f4"), (_R.AlternateBase, "#eef1f5", None),
    (_R.Text, "#1a1a1a", "#9a9a9a"), (_R.PlaceholderText, "#6e6e6e", "#a8a8a8"),
    (_R.Button, "#e8e8e8", "#ececec"), (_R.ButtonText, "#1a1a1a", "#9a9a9a"),
    (_R.BrightText, "#d00000", None),
    (_R.Highlight, "#3072c4", "#c8c8c8"), (_R.HighlightedText, "#ffffff", "#f4f4f4"),
    (_R.Link, "#0b57d0", "#7f9fd0"), (_R.LinkVisited, "#6a35b5", "#a08fc0"),
    (_R.ToolTipBase, "#fff8d6", None), (_R.ToolTipText, "#1a1a1a", None),
    (_R.Light, "#ffffff", None), (_R.Midlight, "#f4f4f4", None), (_R.Mid, "#b8b8b8", None),
    (_R.Dark, "#9f9f9f", None), (_R.Shadow, "#767676", None),
]
_start: tuple[QPalette, str] | None = None  # the application's palette and style before any theme
_overridden = False  # whether apply_theme set a palette of its own


def theme_palette(dark: bool) -> QPalette:
    """The palette Folio uses when the platform will not switch light/dark for it."""
    pal = QPalette()
    for role, color, disabled in _DARK if dark else _LIGHT:
        pal.setColor(QPalette.ColorGroup.Active, role, QColor(color))
        pal.setColor(QPalette.ColorGroup.Inactive, role, QColor(color))
        pal.setColor(QPalette.ColorGroup.Disabled, role, QColor(disabled or color))
    return pal


def is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Window).lightness() < 128


def apply_theme(theme: str) -> None:
    """Ask Qt for a light or dark palette, or go back to following the system.

    `QStyleHints.setColorScheme` is only a request: a platform without a colour-scheme
    setting (X11 without a desktop portal, offscreen, older Windows styles) ignores it and
    "Dark" would change nothing. So the result is checked, and where the palette is not the
    one asked for, Folio sets its own on the Fusion style (which draws every role from it).
    """
    global _start, _overridden
    app = QApplication.instance()
    if app is None:
        return
    if _start is None:
        _start = (QPalette(app.palette()), app.style().name())
    hints = QGuiApplication.styleHints()
    if theme not in ("light", "dark"):
        hints.unsetColorScheme()
        if _overridden:
            palette, style = _start
            if app.style().name() != style:
                app.setStyle(style)
            # The platform's own palette (nothing set by the app) is restored by resetting,
            # so it keeps following the system's later light/dark switches.
            app.setPalette(QPalette() if not palette.resolveMask() else palette)
            _overridden = False
        return
    dark = theme == "dark"
    hints.setColorScheme(Qt.ColorScheme.Dark if dark else Qt.ColorScheme.Light)
    if _overridden:  # our palette hides the platform's: look at the platform's own again
        app.setPalette(QPalette() if not _start[0].resolveMask() else _start[0])
        _overridden = False
    if is_dark(app.palette()) == dark:
        return
    log.info("theme: the platform kept its palette for %r; using Folio's own", theme)
    if app.style().name().lower() != "fusion":
        app.setStyle("Fusion")  # before the palette: a new style resets an unset palette
    app.setPalette(theme_palette(dark))
    _overridden = True


def _known_embedders() -> list[str]:
    try:
        from app.core.index.embedder import known_specs

        return list(known_specs())
    except Exception as exc:  # noqa: BLE001 - a missing model package must not stop Settings
        log.warning("settings: could not list embedders: %s", exc)
        return [DEFAULT_EMBEDDER]


def _not_installed(name: str | None) -> int | None:
    """For a downloadable embedder not on this machine: its download size (0 if unknown);
    None when `name` is installed, or is no downloadable embedder."""
    try:
        from app.core.index.embedder_install import to_download

        item = to_download(name)
        return None if item is None else item.download_size or 0
    except Exception as exc:  # noqa: BLE001 - Settings must open whatever happens here
        log.warning("settings: could not check embedder %s: %s", name, exc)
        return None


def _note(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setTextFormat(Qt.TextFormat.PlainText)
    label.setAutoFillBackground(True)
    label.setBackgroundRole(QPalette.ColorRole.ToolTipBase)
    label.setForegroundRole(QPalette.ColorRole.ToolTipText)
    label.setContentsMargins(6, 4, 6, 4)
    label.hide()
    return label


class SettingsDialog(QDialog):
    """Edits a copy of AppSettings; OK saves it (and any template edits), Cancel discards."""

    settings_changed = Signal(object)  # AppSettings, after it has been saved
    install_embedder_requested = Signal(str)  # a downloadable embedder's name

    def __init__(
        self,
        settings: AppSettings | None = None,
        parent: QWidget | None = None,
        *,
        prompts: PromptSet | None = None,
        path: Path | str | None = None,
    ):
        super().__init__(parent)
        self.setWindowTitle("Settings — Folio")
        self.setAccessibleName("Settings")
        self._original = settings if settings is not None else AppSettings.load(path)
        self._path = path
        self.prompts = prompts if prompts is not None else PromptSet()
        self._drafts: dict[str, str] = {}  # template -> unsaved text
        self._current_template: str | None = None
        # Tests replace this; it returns a folder path or "".
        self.choose_folder = lambda title, start: QFileDialog.getExistingDirectory(
            self, title, start
        )

        self.tabs = QTabWidget(self)
        self.tabs.addTab(self._general_tab(), "General")
        self.tabs.addTab(self._search_tab(), "Indexing && search")
        self.tabs.addTab(self._prompts_tab(), "Prompts")
        self.tabs.addTab(self._server_tab(), "Local server")
        self.tabs.addTab(self._tools_tab(), "Tools")
        self.providers_tab = ProvidersTab()
        self.tabs.addTab(self.providers_tab, "Providers")

        self.button_box = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        self.button_box.accepted.connect(self.accept)
        self.button_box.rejected.connect(self.reject)
        self.ok_button = self.button_box.button(QDialogButtonBox.StandardButton.Ok)
        self.ok_button.setAccessibleName("Save settings")
        self.button_box.button(QDialogButtonBox.StandardButton.Cancel).setAccessibleName(
            "Discard changes"
        )

        # Why Save did not work (the settings file could not be written...): said here, in
        # the dialog, rather than in a second modal box on top of it.
        self.save_error = QLabel()
        self.save_error.setWordWrap(True)
        self.save_error.setAccessibleName("Settings error")
        self.save_error.setStyleSheet("color: #c5221f;")
        self.save_error.hide()

        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs)
        layout.addWidget(self.save_error)
        layout.addWidget(self.button_box)
        self.resize(720, 560)
        self._load_values(self._original)

    # -- tabs -----------------------------------------------------------------------------

    def _general_tab(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)

        self.library_edit = QLineEdit()
        self.library_edit.setAccessibleName("Library folder")
        self.library_edit.setClearButtonEnabled(True)
        self.library_edit.setPlaceholderText("a folder, or s3://bucket/prefix for a shared one")
        self.library_edit.setToolTip(
            "A library folder on this computer, or an S3 bucket shared with other machines "
            "(s3://bucket/prefix; credentials and endpoint from the AWS_* variables)")
        browse = self.browse_button = QPushButton("Browse…")
        browse.setAccessibleName("Choose the library folder")
        browse.clicked.connect(self._browse_library)
        row = QHBoxLayout()
        row.addWidget(self.library_edit, 1)
        row.addWidget(browse)
        label = QLabel("&Library folder:")
        label.setBuddy(self.library_edit)
        form.addRow(label, row)

        self.embedder_combo = QComboBox()
        self.embedder_combo.setAccessibleName("Embedder")
        self.embedder_combo.currentIndexChanged.connect(self._embedder_chosen)
        self.embedder_install_btn = QPushButton("Install…")
        self.embedder_install_btn.setAccessibleName("Install the chosen embedder")
        self.embedder_install_btn.clicked.connect(
            lambda: self.install_embedder_requested.emit(self.embedder_combo.currentData()))
        self.embedder_install_btn.hide()
        row = QHBoxLayout()
        row.addWidget(self.embedder_combo, 1)
        row.addWidget(self.embedder_install_btn)
        label = QLabel("&Embedder:")
        label.setBuddy(self.embedder_combo)
        form.addRow(label, row)
        self.embedder_note = _note(REINDEX_NOTE)
        self.embedder_note.setAccessibleName("Embedder note")
        form.addRow("", self.embedder_note)

        self.theme_combo = QComboBox()
        self.theme_combo.setAccessibleName("Theme")
        for theme in THEMES:
            self.theme_combo.addItem(THEME_LABELS[theme], theme)
        form.addRow("&Theme:", self.theme_combo)
        return page

    def _search_tab(self) -> QWidget:
        page = QWidget()
        form = QFormLayout(page)
        self.chunk_spin = QSpinBox()
        self.chunk_spin.setAccessibleName("Chunk size in tokens")
        self.chunk_spin.setRange(*CHUNK_TOKENS_RANGE)
        self.chunk_spin.setSingleStep(50)
        self.chunk_spin.setSuffix(" tokens")
        self.chunk_spin.valueChanged.connect(self._chunk_changed)
        form.addRow("&Chunk size:", self.chunk_spin)

        self.overlap_spin = QSpinBox()
        self.overlap_spin.setAccessibleName("Overlap in tokens")
        self.overlap_spin.setRange(0, CHUNK_TOKENS_RANGE[1] - 1)
        self.overlap_spin.setSingleStep(10)
        self.overlap_spin.setSuffix(" tokens")
        self.overlap_spin.setToolTip("Always less than the chunk size")
        self.overlap_spin.valueChanged.connect(self._update_notes)
        form.addRow("&Overlap:", self.overlap_spin)
        self.chunk_note = _note(CHUNKING_NOTE)
        form.addRow("", self.chunk_note)

        self.time_limit_spin = QSpinBox()
        self.time_limit_spin.setAccessibleName("Time limit per file in seconds")
        self.time_limit_spin.setRange(*FILE_TIME_LIMIT_RANGE)
        self.time_limit_spin.setSingleStep(30)
        self.time_limit_spin.setSuffix(" s")
        self.time_limit_spin.setToolTip(
            "A file that takes longer than this to read and split fails alone with that reason;"
            " the rest of the batch goes on")
        form.addRow("&Time limit per file:", self.time_limit_spin)

        self.k_spin = QSpinBox()
        self.k_spin.setAccessibleName("Sources per answer")
        self.k_spin.setRange(*RETRIEVAL_K_RANGE)
        form.addRow("&Sources per answer:", self.k_spin)

        self.section_spin = QSpinBox()
        self.section_spin.setAccessibleName("Section read per source in tokens")
        self.section_spin.setRange(*SECTION_TOKENS_RANGE)
        self.section_spin.setSingleStep(100)
        self.section_spin.setSuffix(" tokens")
        self.section_spin.setSpecialValueText("Off: the passage alone")
        self.section_spin.setToolTip(
            "The model reads each found passage with the rest of its section around it, up to"
            " this many tokens, while the model's context has room. The passage is still what"
            " is cited and highlighted.")
        form.addRow("Section read &per source:", self.section_spin)

        self.mmr_check = QCheckBox("Prefer &varied sources (MMR)")
        self.mmr_check.setAccessibleName("Prefer varied sources")
        form.addRow("", self.mmr_check)

        # The reranking stage (core/index/rerank.py): off until a reranker is installed.
        from app.core.index import rerank

        self.reranker_combo = QComboBox()
        self.reranker_combo.setAccessibleName("Reranker")
        found = [p.name for p in rerank.installed()]
        self.reranker_combo.addItem(
            f"Automatic ({found[0]})" if found else "Automatic (none installed: off)", "auto")
        self.reranker_combo.addItem("Off", "off")
        for name in found:
            self.reranker_combo.addItem(name, name)
        self.reranker_combo.setToolTip(
            "A cross-encoder reads the question beside each of the best 20 passages and "
            f"orders them again. Install one as a folder in {rerank.rerankers_dir()}.")
        form.addRow("&Reranker:", self.reranker_combo)
        return page

    def _server_tab(self) -> QWidget:
        """The local OpenAI-compatible server (app/server/): on or off with the window, its
        port, and the API key its clients send."""
        page = QWidget()
        form = QFormLayout(page)
        self.server_check = QCheckBox("Serve this library to other apps while Folio is open")
        self.server_check.setAccessibleName("Local server")
        form.addRow(self.server_check)
        self.server_port_spin = QSpinBox()
        self.server_port_spin.setAccessibleName("Local server port")
        self.server_port_spin.setRange(*SERVER_PORT_RANGE)
        self.server_port_spin.valueChanged.connect(self._update_server_note)
        form.addRow("&Port:", self.server_port_spin)
        self.server_key_edit = QLineEdit()
        self.server_key_edit.setReadOnly(True)
        self.server_key_edit.setAccessibleName("API key")
        copy = self.server_key_copy = QPushButton("Copy")
        copy.setAccessibleName("Copy the API key")
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(
            self.server_key_edit.text()))
        renew = self.server_key_new = QPushButton("New key")
        renew.setAccessibleName("Make a new API key")
        renew.clicked.connect(self._new_server_key)
        row = QHBoxLayout()
        row.addWidget(self.server_key_edit, 1)
        row.addWidget(copy)
        row.addWidget(renew)
        label = QLabel("API &key:")
        label.setBuddy(self.server_key_edit)
        form.addRow(label, row)
        self.server_note = _note()
        self.server_note.setAccessibleName("Local server note")
        self.server_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        form.addRow("", self.server_note)
        return page

    def _tools_tab(self) -> QWidget:
        """MCP servers whose tools the chat may call (app/core/tools/mcp_source.py)."""
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.addWidget(_note("MCP servers add tools to Folio's chat. Folio starts each one "
                               "(a command on this computer) and asks you before any of its "
                               "tools runs."))
        self.mcp_list = QListWidget()
        self.mcp_list.setAccessibleName("MCP servers")
        layout.addWidget(self.mcp_list, 1)
        form = QFormLayout()
        self.mcp_name_edit = QLineEdit()
        self.mcp_name_edit.setAccessibleName("MCP server name")
        self.mcp_name_edit.setPlaceholderText("docs (letters, digits, _ or -)")
        form.addRow("&Name:", self.mcp_name_edit)
        self.mcp_command_edit = QLineEdit()
        self.mcp_command_edit.setAccessibleName("MCP server command")
        self.mcp_command_edit.setPlaceholderText("npx -y some-mcp-server --flag")
        form.addRow("&Command:", self.mcp_command_edit)
        self.mcp_env_edit = QLineEdit()
        self.mcp_env_edit.setAccessibleName("MCP server environment")
        self.mcp_env_edit.setPlaceholderText("NAME=value OTHER=value (optional)")
        form.addRow("&Environment:", self.mcp_env_edit)
        layout.addLayout(form)
        row = QHBoxLayout()
        self.mcp_add_button = QPushButton("&Add server")
        self.mcp_add_button.clicked.connect(self._add_mcp_server)
        self.mcp_remove_button = QPushButton("&Remove server")
        self.mcp_remove_button.clicked.connect(self._remove_mcp_server)
        row.addWidget(self.mcp_add_button)
        row.addWidget(self.mcp_remove_button)
        row.addStretch(1)
        layout.addLayout(row)
        self.mcp_note = _note()
        self.mcp_note.setAccessibleName("MCP server note")
        layout.addWidget(self.mcp_note)
        return page

    def _mcp_servers(self) -> list[dict]:
        return [self.mcp_list.item(i).data(Qt.ItemDataRole.UserRole)
                for i in range(self.mcp_list.count())]

    def _show_mcp_server(self, entry: dict) -> None:
        env = " ".join(sorted(entry.get("env", {})))
        item = QListWidgetItem(f"{entry['name']}: {shlex.join([entry['command'], *entry['args']])}"
                               + (f"  (env: {env})" if env else ""))
        item.setData(Qt.ItemDataRole.UserRole, entry)
        self.mcp_list.addItem(item)

    def _add_mcp_server(self) -> None:
        try:
            command = shlex.split(self.mcp_command_edit.text())
            env_items = shlex.split(self.mcp_env_edit.text())
        except ValueError as exc:  # an unclosed quote
            self.mcp_note.setText(f"Cannot read that line: {exc}.")
            return
        bad = [e for e in env_items if "=" not in e]
        if bad:
            self.mcp_note.setText(f"Environment entries are NAME=value; {bad[0]!r} is not.")
            return
        entry = {"name": self.mcp_name_edit.text().strip(),
                 "command": command[0] if command else "", "args": command[1:],
                 "env": dict(e.split("=", 1) for e in env_items)}
        problem = mcp_server_problem(entry, self._mcp_servers())
        if problem:
            self.mcp_note.setText(f"Not added: {problem}.")
            return
        self._show_mcp_server(entry)
        for edit in (self.mcp_name_edit, self.mcp_command_edit, self.mcp_env_edit):
            edit.clear()
        self.mcp_note.setText(f"Added {entry['name']!r}; its tools are offered in new chats.")

    def _remove_mcp_server(self) -> None:
        row = self.mcp_list.currentRow()
        if row < 0:
            self.mcp_note.setText("Choose a server in the list to remove.")
            return
        entry = self.mcp_list.takeItem(row).data(Qt.ItemDataRole.UserRole)
        self.mcp_note.setText(f"Removed {entry['name']!r}.")

    def _new_server_key(self) -> None:
        from app.server.runner import new_api_key

        self.server_key_edit.setText(new_api_key())

    def _update_server_note(self, *_args) -> None:
        port = self.server_port_spin.value()
        self.server_note.setText(
            f"An OpenAI-compatible API at http://127.0.0.1:{port}/v1, on this computer only. "
            "Model 'folio' answers from this library with its sources; the model loaded in "
            "the window chats without documents. Clients send the key as a bearer token. "
            "`folio serve` starts the same server without the window.")

    def _prompts_tab(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        intro = QLabel(
            "Prompt templates are Jinja2. Your version replaces the default; if it "
            "ever fails, the default is used and the error is shown here."
        )
        intro.setWordWrap(True)
        layout.addWidget(intro)

        split = QSplitter(Qt.Orientation.Horizontal)
        self.template_list = QListWidget()
        self.template_list.setAccessibleName("Prompt templates")
        for name in TEMPLATES:
            item = QListWidgetItem(name)
            item.setData(Qt.ItemDataRole.UserRole, name)
            self.template_list.addItem(item)
        self.template_list.currentItemChanged.connect(self._template_selected)
        split.addWidget(self.template_list)

        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        self.template_state = QLabel()
        self.template_state.setAccessibleName("Template state")
        rl.addWidget(self.template_state)
        self.template_edit = QPlainTextEdit()
        self.template_edit.setAccessibleName("Template text")
        self.template_edit.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        font = self.template_edit.font()
        font.setFamily("monospace")
        font.setStyleHint(font.StyleHint.Monospace)
        self.template_edit.setFont(font)
        self.template_edit.textChanged.connect(self._template_edited)
        rl.addWidget(self.template_edit, 1)
        self.template_error = _note()
        self.template_error.setAccessibleName("Template error")
        self.template_error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        rl.addWidget(self.template_error)
        buttons = QHBoxLayout()
        self.template_save = QPushButton("&Save template")
        self.template_save.setAccessibleName("Save template")
        self.template_save.clicked.connect(self.save_current_template)
        self.template_reset = QPushButton("&Reset to default")
        self.template_reset.setAccessibleName("Reset template to default")
        self.template_reset.clicked.connect(self.reset_current_template)
        buttons.addStretch(1)
        buttons.addWidget(self.template_reset)
        buttons.addWidget(self.template_save)
        rl.addLayout(buttons)
        split.addWidget(right)
        split.setStretchFactor(1, 1)
        split.setSizes([160, 520])
        layout.addWidget(split, 1)
        return page

    # -- values ---------------------------------------------------------------------------

    def _load_values(self, s: AppSettings) -> None:
        self.library_edit.setText(s.library)
        self.embedder_combo.blockSignals(True)
        self.embedder_combo.clear()
        for name in _known_embedders():
            missing = _not_installed(name)
            self.embedder_combo.addItem(f"{name} (not installed)" if missing else name, name)
        for c in s.provider_embedders():
            self.embedder_combo.addItem(f"{c.embedder_model} from {c.name} (remote)",
                                        f"provider:{c.name}")
        if self.embedder_combo.findData(s.embedder) < 0:
            self.embedder_combo.addItem(s.embedder, s.embedder)
        self.embedder_combo.addItem(OTHER_FOLDER, None)
        self.embedder_combo.setCurrentIndex(self.embedder_combo.findData(s.embedder))
        self._embedder_index = self.embedder_combo.currentIndex()
        self.embedder_combo.blockSignals(False)
        self.theme_combo.setCurrentIndex(max(0, self.theme_combo.findData(s.theme)))
        self.chunk_spin.setValue(s.chunk_tokens)
        self.overlap_spin.setMaximum(s.chunk_tokens - 1)
        self.overlap_spin.setValue(s.overlap_tokens)
        self.time_limit_spin.setValue(s.file_time_limit)
        self.k_spin.setValue(s.retrieval_k)
        self.section_spin.setValue(s.section_tokens)
        self.mmr_check.setChecked(s.mmr)
        at = self.reranker_combo.findData(s.reranker)
        if at < 0:  # a folder path, or a reranker no longer installed: shown as it is
            self.reranker_combo.addItem(s.reranker, s.reranker)
            at = self.reranker_combo.count() - 1
        self.reranker_combo.setCurrentIndex(at)
        self.server_check.setChecked(s.server_enabled)
        self.server_port_spin.setValue(s.server_port)
        if s.server_api_key:
            self.server_key_edit.setText(s.server_api_key)
        else:  # the first time: made now, kept when the settings are saved
            self._new_server_key()
        self._update_server_note()
        self.mcp_list.clear()
        for entry in s.mcp_servers:
            self._show_mcp_server(entry)
        self.providers_tab.load(s)
        self.template_list.setCurrentRow(0)
        self._update_notes()

    def settings(self) -> AppSettings:
        """The settings as the widgets show them now (fields not in the dialog unchanged)."""
        return dataclasses.replace(
            self._original,
            library=self.library_edit.text().strip() or self._original.library,
            embedder=self.embedder_combo.currentData() or self._original.embedder,
            chunk_tokens=self.chunk_spin.value(),
            overlap_tokens=self.overlap_spin.value(),
            file_time_limit=self.time_limit_spin.value(),
            retrieval_k=self.k_spin.value(),
            section_tokens=self.section_spin.value(),
            mmr=self.mmr_check.isChecked(),
            reranker=self.reranker_combo.currentData() or "auto",
            theme=self.theme_combo.currentData(),
            server_enabled=self.server_check.isChecked(),
            server_port=self.server_port_spin.value(),
            server_api_key=self.server_key_edit.text(),
            mcp_servers=self._mcp_servers(),
            **self.providers_tab.values(),
        )

    def _browse_library(self) -> None:
        folder = self.choose_folder("Library folder", self.library_edit.text())
        if folder:
            self.library_edit.setText(folder)

    def _embedder_chosen(self, index: int) -> None:
        if self.embedder_combo.itemData(index) is None:  # "Other folder…"
            folder = self.choose_folder("Embedder model folder", str(Path.home()))
            self.embedder_combo.blockSignals(True)
            if folder:
                at = self.embedder_combo.findData(folder)
                if at < 0:
                    at = self.embedder_combo.count() - 1
                    self.embedder_combo.insertItem(at, folder, folder)
                self.embedder_combo.setCurrentIndex(at)
            else:
                self.embedder_combo.setCurrentIndex(self._embedder_index)
            self.embedder_combo.blockSignals(False)
        self._embedder_index = self.embedder_combo.currentIndex()
        self._update_notes()

    def _chunk_changed(self, value: int) -> None:
        # Lowering the maximum clamps the overlap: it can never reach the chunk size.
        self.overlap_spin.setMaximum(value - 1)
        self._update_notes()

    def _update_notes(self) -> None:
        chosen = self.embedder_combo.currentData() or self._original.embedder
        missing = _not_installed(chosen)
        self.embedder_install_btn.setVisible(missing is not None)
        if missing is not None:
            size = f" (about {human_bytes(missing)})" if missing else ""
            self.embedder_note.setText(
                f"{chosen} is not installed yet. Install downloads it{size} from PyPI, the "
                "only download Folio makes; then re-index the library to use it.")
        elif isinstance(chosen, str) and chosen.startswith("provider:"):
            self.embedder_note.setText(
                f"{REINDEX_NOTE} With {chosen.split(':', 1)[1]}'s embedder, the text of every "
                "passage and every question is sent to that provider to be embedded.")
        else:
            self.embedder_note.setText(REINDEX_NOTE)
        self.embedder_note.setVisible(chosen != self._original.embedder or missing is not None)

    def embedder_installed(self, name: str) -> None:
        """After an install: show the embedder as ready to choose."""
        at = self.embedder_combo.findData(name)
        if at >= 0:
            self.embedder_combo.setItemText(at, name)
        self._update_notes()
        self.chunk_note.setVisible(
            (self.chunk_spin.value(), self.overlap_spin.value())
            != (self._original.chunk_tokens, self._original.overlap_tokens)
        )

    # -- templates ------------------------------------------------------------------------

    def _template_selected(self, current: QListWidgetItem | None, _previous=None) -> None:
        if current is None:
            return
        name = current.data(Qt.ItemDataRole.UserRole)
        self._current_template = name
        text = self._drafts.get(name)
        if text is None:
            try:
                text = self.prompts.source(name)
            except PromptError as exc:
                text = ""
                self._show_template_error(str(exc))
        self.template_edit.blockSignals(True)
        self.template_edit.setPlainText(text)
        self.template_edit.blockSignals(False)
        self._show_template_error(self.prompts.errors.get(name, ""))
        self._refresh_template_state()

    def _template_edited(self) -> None:
        name = self._current_template
        if name is None:
            return
        self._drafts[name] = self.template_edit.toPlainText()
        self._refresh_template_state()

    def _refresh_template_state(self) -> None:
        for i in range(self.template_list.count()):
            item = self.template_list.item(i)
            name = item.data(Qt.ItemDataRole.UserRole)
            marks = []
            if self.prompts.is_customised(name):
                marks.append("yours")
            if name in self._drafts:
                marks.append("unsaved")
            item.setText(f"{name}  ({', '.join(marks)})" if marks else name)
        name = self._current_template
        if name is None:
            return
        state = "Your version" if self.prompts.is_customised(name) else "The default"
        if name in self._drafts:
            state += " — edited, not saved yet"
        self.template_state.setText(f"{name}.j2: {state}")
        self.template_reset.setEnabled(self.prompts.is_customised(name) or name in self._drafts)

    def _show_template_error(self, message: str) -> None:
        self.template_error.setText(message)
        self.template_error.setVisible(bool(message))

    def save_current_template(self) -> bool:
        name = self._current_template
        if name is None:
            return True
        return self._save_template(name, self.template_edit.toPlainText())

    def _save_template(self, name: str, text: str) -> bool:
        try:
            self.prompts.save_user_template(name, text)
        except PromptError as exc:
            self._show_template_error(f"{name}.j2 was not saved: {exc}")
            return False
        except OSError as exc:
            self._show_template_error(f"{name}.j2 could not be written: {exc}")
            return False
        self._drafts.pop(name, None)
        self.prompts.errors.pop(name, None)
        self._show_template_error("")
        self._refresh_template_state()
        return True

    def reset_current_template(self) -> None:
        name = self._current_template
        if name is None:
            return
        self.prompts.reset_user_template(name)
        self._drafts.pop(name, None)
        self._template_selected(self.template_list.currentItem())

    # -- OK / Cancel ----------------------------------------------------------------------

    def _show_save_error(self, message: str) -> None:
        log.warning("settings: %s", message)
        self.save_error.setText(message)
        self.save_error.show()

    def accept(self) -> None:
        for name, text in list(self._drafts.items()):
            if not self._save_template(name, text):
                message = self.template_error.text()
                self.tabs.setCurrentIndex(2)
                self.template_list.setCurrentRow(TEMPLATES.index(name))
                self._show_template_error(message)
                return
        new = self.settings()
        problems = new.problems()
        if problems:  # the widgets' ranges should make this impossible
            self._show_save_error("; ".join(f"{k}: {v}" for k, v in problems.items()))
            return
        try:
            new.save(self._path)
        except OSError as exc:
            self._show_save_error(f"The settings could not be saved: {exc}")
            return
        self.save_error.hide()
        self._original = new
        self.settings_changed.emit(new)
        super().accept()
