"""The main window: a sidebar on the left (chats, library, models; each section folds), the
conversation in the centre, and a side panel on the right that opens for a source, the
document viewer or the chat's model settings, and closes again.

The window is built and shown before anything heavy is imported; `start()` (called once the
window is visible) opens the library and loads the model as jobs, so the first paint never
waits for torch or llama.cpp. Errors are shown in a banner at the top with their details a
click away; nothing on the hot path opens a modal dialog.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import os
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QKeySequence, QPalette
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QStyle,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.core.service import Folio
from app.core.settings import AppSettings
from app.ui.chat_panel import ChatPanel
from app.ui.library_panel import LibraryPanel
from app.ui.watched_folders import WatchedFolders
from app.ui.watched_folders import describe as describe_watch_batch
from app.ui.models.panel import ModelPanel
from app.ui.sidebar import ModelBox, Section, Sidebar
from app.ui.widgets import ActionButton
from app.ui.workers import Workers

log = logging.getLogger(__name__)

SETTINGS_ENV = "FOLIO_QSETTINGS"  # an .ini path: tests and portable installs
CLOSE_WAIT_MS = 0  # per pool: never block the closing window; what still runs ends in the background


def open_settings(path: str | None = None) -> QSettings:
    path = path or os.environ.get(SETTINGS_ENV)
    if path:
        return QSettings(str(path), QSettings.Format.IniFormat)
    return QSettings("Folio", "Folio")


def local_paths(mime) -> list[str]:
    if mime is None or not mime.hasUrls():
        return []
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile() and u.toLocalFile()]


class Banner(QFrame):
    """A dismissable, non-blocking message with its details one click away."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAutoFillBackground(True)
        self.setAccessibleName("Message")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        row = QHBoxLayout()
        icon = QLabel()
        icon.setPixmap(self.style().standardIcon(
            QStyle.StandardPixmap.SP_MessageBoxWarning).pixmap(20, 20))
        row.addWidget(icon)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(self.text, 1)
        self.action_btn = ActionButton("Act on the message")
        self.action_btn.acted.connect(self.hide)
        row.addWidget(self.action_btn)
        self.details_btn = QPushButton("Details")
        self.details_btn.setAccessibleName("Show error details")
        self.details_btn.setCheckable(True)
        row.addWidget(self.details_btn)
        self.close_btn = close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.setAccessibleName("Dismiss message")
        close.clicked.connect(self.hide)
        row.addWidget(close)
        layout.addLayout(row)
        self.details = QPlainTextEdit()
        self.details.setReadOnly(True)
        self.details.setAccessibleName("Error details")
        self.details.setMaximumHeight(140)
        self.details.hide()
        self.details_btn.toggled.connect(self.details.setVisible)
        layout.addWidget(self.details)
        self.history: list[tuple[str, str]] = []
        self.hide()

    def show_message(self, message: str, details: str = "", action=None) -> None:
        """`action`: (button label, callable) offered beside the message, e.g. "Re-index
        now"; clicking it runs the callable and dismisses the message."""
        self.history.append((message, details))
        self.action_btn.set_action(action)
        more = f"  (+{len(self.history) - 1} earlier)" if len(self.history) > 1 else ""
        self.text.setText(message + more)
        self.details.setPlainText("\n\n".join(f"{m}\n{d}" if d and d != m else m
                                              for m, d in reversed(self.history)))
        self.show()

    def hideEvent(self, event) -> None:
        self.history.clear()
        self.details_btn.setChecked(False)
        super().hideEvent(event)


class MainWindow(QMainWindow):
    model_loaded = Signal(object)  # ModelInfo
    model_failed = Signal(str)
    source_opened = Signal(dict)
    shut_down = Signal()  # after close(): workers finished, engine closed

    def __init__(self, library_path: Path | str | None = None, *,
                 settings: QSettings | None = None, folio: Folio | None = None,
                 load_model: bool = True, guide: bool = False):
        super().__init__()
        self.setWindowTitle("Folio")
        self.setAcceptDrops(True)
        self.settings = settings or open_settings()  # window layout (QSettings)
        # The user's settings (settings.json): library folder, model, chunking, retrieval,
        # theme. An explicit library or FOLIO_LIBRARY still wins, as on the command line.
        self.app_settings = AppSettings.load()
        app = self.app_settings
        self.folio = folio or Folio(
            library_path or os.environ.get("FOLIO_LIBRARY") or app.library,
            model_path=app.model_path, n_ctx=app.n_ctx, n_gpu_layers=app.n_gpu_layers)
        self.workers = Workers(self)
        self.load_model_on_start = load_model
        self.guide_on_start = guide  # the first-run guide, on an empty library, once
        self.guide = None
        self.model_info = None
        self.model_job = None
        self.embedder_job = None
        self.viewer = None
        self.settings_dialog = None
        self._started = False
        self._pending_chat_settings: tuple[int, dict] | None = None
        self._chat_settings_timer = QTimer(self, singleShot=True, interval=400)
        self._chat_settings_timer.timeout.connect(self._save_chat_settings)
        self._closed = False
        self._released = False
        self.server = None  # the local API (app/server/), when Settings turn it on
        self.server_error: str | None = None

        self.library = LibraryPanel(self.folio, self.workers)
        self.chat = ChatPanel(
            self.folio, self.workers, collections=self.library.collections,
            documents=lambda: [(d.path, d.title or d.name) for d in self.library.docs
                               if d.status == "ready"])
        self.model = ModelPanel(self.folio, self.workers)
        self.chat.place_model_picker(self.model.take_chat_model())
        self.watched = WatchedFolders(self.folio, self.app_settings, self)
        # The side panel opens for a source, the model and this chat's settings, and closes
        # again: the conversation keeps the width when nothing is asked of it.
        self.right = QTabWidget()
        self.right.setAccessibleName("Model and sources")
        self.right.addTab(self.model, "Model")
        close_side = QToolButton()
        close_side.setText("×")
        close_side.setAutoRaise(True)
        close_side.setToolTip("Close the side panel (Ctrl+Shift+M opens it again)")
        close_side.setAccessibleName("Close the side panel")
        close_side.clicked.connect(lambda: self.show_side_panel(False))
        self.right.setCornerWidget(close_side, Qt.Corner.TopRightCorner)
        self.close_side_btn = close_side

        # Left: the sidebar's sections (chats, library, models), each folds to its header.
        self.model_box = ModelBox()
        self.sidebar = Sidebar([
            Section("Chats", self.chat.chats_pane, extras=(self.chat.new_btn,), stretch=2),
            Section("Library", self.library, stretch=3,
                    extras=(self.library.add_files_btn, self.library.add_folder_btn)),
            Section("Models", self.model_box, stretch=0)])
        self.banner = Banner()
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.addWidget(self.sidebar)
        self.splitter.addWidget(self.chat)
        self.splitter.addWidget(self.right)
        self.splitter.setStretchFactor(0, 0)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setStretchFactor(2, 0)
        central = QWidget()
        cl = QVBoxLayout(central)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.setSpacing(0)
        cl.addWidget(self.banner)
        cl.addWidget(self.splitter, 1)
        self.setCentralWidget(central)

        self._build_status_bar()
        self._build_menus()
        self._focus_order()
        self._connect()
        self._restore()
        self._use_settings(self.app_settings)

    # -- construction -------------------------------------------------------------------

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.model_status = QLabel("Loading model…")
        self.model_status.setAccessibleName("Model status")
        self.library_status = QLabel("Opening library…")
        self.library_status.setAccessibleName("Library status")
        self.index_status = QLabel("")
        self.index_status.setAccessibleName("Indexing status")
        bar.addPermanentWidget(self.index_status)
        bar.addPermanentWidget(self.library_status)
        bar.addPermanentWidget(self.model_status)

    def _build_menus(self) -> None:
        file = self.menuBar().addMenu("&File")
        self.add_files_action = file.addAction("Add files…", self.library.choose_files)
        self.add_files_action.setShortcut(QKeySequence.StandardKey.Open)
        self.add_folder_action = file.addAction("Add folder…", self.library.choose_folder)
        file.addMenu(self.watched.menu)
        file.addSeparator()
        self.settings_action = file.addAction("Settings…", self.open_settings_dialog)
        self.settings_action.setShortcut(QKeySequence.StandardKey.Preferences)
        self.models_action = file.addAction("Models…", self.model.open_manager)
        file.addSeparator()
        quit_action = file.addAction("Quit", self.close)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)

        chat = self.menuBar().addMenu("&Chat")
        self.new_chat_action = new = chat.addAction("New chat", self.chat.new_chat)
        new.setShortcut(QKeySequence.StandardKey.New)
        search = chat.addAction("Search chats", self.focus_search)
        search.setShortcut(QKeySequence.StandardKey.Find)
        self.ask_action = ask = chat.addAction("Type a question", self.focus_question)
        ask.setShortcut(QKeySequence(Qt.KeyboardModifier.ControlModifier | Qt.Key.Key_L))
        self.filter_action = found = chat.addAction("Filter the library", self.focus_filter)
        found.setShortcut(QKeySequence(Qt.KeyboardModifier.ControlModifier
                                       | Qt.KeyboardModifier.ShiftModifier | Qt.Key.Key_F))
        chat.addSeparator()
        chat.addAction("Regenerate answer", self.chat.regenerate)
        chat.addAction("Copy last answer", self.chat.copy_last_answer)
        chat.addAction("Export to Markdown…", self.chat.export_markdown)
        stop = QAction("Stop answer", self)
        stop.setShortcut(QKeySequence(Qt.Key.Key_Escape))
        stop.triggered.connect(self.chat.stop)
        chat.addAction(stop)
        self.stop_shortcut = stop

        view = self.menuBar().addMenu("&View")
        self.side_action = side = view.addAction("Model and chat settings",
                                                 self.toggle_model_panel)
        side.setCheckable(True)
        side.setChecked(True)
        side.setShortcut(QKeySequence(Qt.KeyboardModifier.ControlModifier
                                      | Qt.KeyboardModifier.ShiftModifier | Qt.Key.Key_M))
        self.sidebar_action = bar = view.addAction("Sidebar", self.show_sidebar)
        bar.setCheckable(True)
        bar.setChecked(True)
        bar.setShortcut(QKeySequence(Qt.KeyboardModifier.ControlModifier | Qt.Key.Key_B))
        sort = view.addMenu("Sort library by")  # the column headers' clicks, from the keyboard
        head = self.library.tree.headerItem()
        for col in range(head.columnCount()):
            order = head.data(col, Qt.ItemDataRole.InitialSortOrderRole)
            sort.addAction(head.text(col), lambda c=col, o=order: self.library.sort_by(
                c, Qt.SortOrder(o) if o is not None else Qt.SortOrder.AscendingOrder))
        view.addSeparator()
        self.guide_action = view.addAction("Getting started…", self.show_guide)
        self.menuBar().setAccessibleName("Menu bar")

        self.toolbar = bar = self.addToolBar("Toolbar")
        bar.setObjectName("toolbar")  # saveState() names it
        bar.setAccessibleName("Toolbar")
        bar.setMovable(False)
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self._icon_actions = [(self.add_files_action, "add-file"),
                              (self.add_folder_action, "add-folder"),
                              (self.new_chat_action, "new-chat"),
                              (self.settings_action, "settings")]
        for action, _name in self._icon_actions:
            bar.addAction(action)
        overflow = bar.findChild(QToolButton, "qt_toolbar_ext_button")
        if overflow is not None:  # shown when the window is too narrow for every button
            overflow.setAccessibleName("More toolbar actions")
        self._apply_icons()

    def focus_chain(self) -> list[QWidget]:
        """The controls in the order Tab visits them: the layout's, left to right and top
        to bottom (sidebar sections, then the conversation, then the side panel)."""
        chat, lib, box = self.chat, self.library, self.model_box
        chats, library, models = self.sidebar.sections
        return [chats.button, chat.new_btn, chat.search, chat.chat_list, chat.rename_btn,
                chat.delete_btn, library.button, lib.add_files_btn, lib.add_folder_btn,
                lib.filter_edit, lib.tree, lib.details, models.button, box.settings_btn,
                box.manage_btn, chat.model_combo, chat.scope, chat.view, chat.input,
                chat.send_btn, chat.stop_btn, chat.regen_btn, self.right]

    def _focus_order(self) -> None:
        chain = self.focus_chain()
        for first, second in zip(chain, chain[1:]):
            QWidget.setTabOrder(first, second)

    def _apply_icons(self) -> None:
        """Draw the toolbar's SVG icons in the palette's text colour (again after a
        light/dark switch); they are rendered for high-DPI screens, not scaled up."""
        from app.ui.icons import themed_icon

        color = self.palette().color(QPalette.ColorRole.ButtonText)
        for action, name in self._icon_actions:
            action.setIcon(themed_icon(name, color))

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() == QEvent.Type.PaletteChange and hasattr(self, "_icon_actions"):
            self._apply_icons()

    def _connect(self) -> None:
        self.library.state_changed.connect(self.update_status)
        self.library.opened_changed.connect(self.check_embedder)
        self.library.opened_changed.connect(self._maybe_guide)
        self.library.error.connect(self.show_error)
        self.library.summarize_requested.connect(self.chat.summarize)
        self.chat.open_source.connect(self.open_source)
        self.library.source_requested.connect(self.open_source)
        self.chat.error.connect(self.show_error)
        self.chat.status.connect(lambda t: self.statusBar().showMessage(t, 5000))
        self.chat.chat_changed.connect(self._chat_changed)
        self.chat.about_to_answer.connect(self._save_chat_settings)
        self.model.settings_edited.connect(self._settings_edited)
        self.model.error.connect(self.show_error)
        self.model.model_changed.connect(self._model_switched)
        self.model.ask_key = lambda name: self.ask_provider_key(name)
        self.model_box.settings_requested.connect(self.toggle_model_panel)
        self.model_box.manager_requested.connect(self.model.open_manager)
        self.model_box.guide_requested.connect(lambda: self.show_guide(step=1))
        self.watched.batch_applied.connect(self._watched_batch)
        self.watched.failed.connect(lambda t: self.statusBar().showMessage(t, 10000))
        # Drops onto text widgets would otherwise paste the file name.
        for w in (self.chat.input, self.chat.view, self.chat.view.viewport(),
                  self.library.tree.viewport(), self.library.details):
            w.installEventFilter(self)

    def _watched_batch(self, batch) -> None:
        """One batch from the watched folders (one signal per burst of file events)."""
        self.library.refresh()
        self.statusBar().showMessage(describe_watch_batch(batch), 10000)

    # -- start-up -----------------------------------------------------------------------

    def start(self) -> None:
        """Open the library and load the model in the background; call once shown."""
        if self._started:
            return
        self._started = True
        self.library.refresh()
        self.watched.start()  # rescans the watched folders, then watches them
        self.model.start()  # lists the models folder (a job)
        if self.app_settings.theme != "system":  # "system" is what Qt does by itself
            from app.ui import settings_dialog

            settings_dialog.apply_theme(self.app_settings.theme)
        if self.load_model_on_start:
            self.load_model()

    def load_model(self) -> None:
        folio = self.folio
        self.model.show_loading()
        self._show_model_state("Loading model…")

        def work(job):
            return folio.runtime.info

        self.model_job = job = self.workers.submit(work, pool="llm", name="load model")
        job.finished.connect(self._model_ready)
        job.failed.connect(self._model_failed)

    def _model_ready(self, info) -> None:
        if self._closed:  # the load finished after the window closed: warm nothing up
            return
        self.model_info = info
        self.model_job = None
        self.model.show_info(info)
        self.update_status()
        self.model_loaded.emit(info)
        # Warm the embedder now, so the first question or ingest waits for nothing.
        self.workers.submit(_warm_up(self.folio), pool="io", name="warm up")

    def _model_failed(self, message: str) -> None:
        if self._closed:
            return
        detail = self.model_job.error_detail if self.model_job else message
        self.model_job = None
        self.model.show_error(message)  # offers "Load anyway" for a model that will not fit
        self.right.setCurrentWidget(self.model)
        self.show_side_panel(True)  # where the model's details and "Load anyway" are
        self._show_model_state("No model", f"The model could not be loaded: {message}")
        anyway = ("Load anyway", self.model.load_anyway) \
            if not self.model.load_anyway_btn.isHidden() else None
        self.show_error(f"The model could not be loaded: {message}", detail, anyway)
        self.model_failed.emit(message)

    def _model_switched(self, info) -> None:
        """A load (ModelInfo) or an unload (None) done from the model view."""
        if info is not None:
            self._model_ready(info)
        else:
            self.model_info = None
            self._show_model_state("No model loaded")

    # -- state --------------------------------------------------------------------------

    def update_status(self) -> None:
        info = self.model_info
        if info is not None:
            self._show_model_state(f"{info.name} · {info.device.upper()}",
                                   f"{info.name}, on the {info.device.upper()}")
        lib = self.library
        if lib.opened:
            docs = len(lib.docs)
            self.library_status.setText(
                f"{docs} document{'s' * (docs != 1)} · {lib.chunks:,} passages")
        if self.embedder_job is None:  # else it shows the install's progress
            self.index_status.setText("Indexing…" if lib.indexing else "")

    def _show_model_state(self, short: str, long: str | None = None) -> None:
        """The model's state in the status bar and in the sidebar's Models section, which
        points from the starter model to better ones."""
        from app.core.models.starter import STARTER_MODEL_FILE

        self.model_status.setText(short)
        info = self.model_info
        starter = info is not None and Path(info.path).name == STARTER_MODEL_FILE
        self.model_box.show_state(long or short, starter=starter)

    def show_error(self, message: str, details: str = "", action=None) -> None:
        log.warning("%s", message)
        self.banner.show_message(message, details, action)
        self.statusBar().showMessage(message, 8000)

    def show_side_panel(self, visible: bool | None = None) -> None:
        """Open or close the side panel (None: toggle). Ctrl+Shift+M opens it at the model
        and this chat's settings."""
        visible = self.right.isHidden() if visible is None else visible
        self.right.setVisible(visible)
        self.side_action.setChecked(visible)

    def _maybe_guide(self) -> None:
        from app.ui.first_run import should_show

        if self.guide_on_start and should_show(self.settings, len(self.library.docs)):
            self.show_guide()

    def show_guide(self, step: int = 0):
        """The getting-started guide (View > Getting started…); it opens by itself the
        first time the window opens on an empty library."""
        from app.ui.first_run import FirstRunGuide

        if self.guide is None:
            self.guide = FirstRunGuide(self.library, self.model, self.settings, parent=self)
            self.guide.destroyed.connect(lambda _=None: setattr(self, "guide", None))
            self.guide.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.guide.show_step(step)
        self.guide.show()
        self.guide.raise_()
        self.guide.activateWindow()
        return self.guide

    def show_sidebar(self, visible: bool | None = None) -> None:
        """Show or hide the whole sidebar (None: toggle; Ctrl+B)."""
        visible = self.sidebar.isHidden() if visible is None else visible
        self.sidebar.setVisible(visible)
        self.sidebar_action.setChecked(visible)

    def toggle_model_panel(self) -> None:
        if self.right.isHidden() or self.right.currentWidget() is not self.model:
            self.right.setCurrentWidget(self.model)
            self.show_side_panel(True)
        else:
            self.show_side_panel(False)

    def focus_question(self) -> None:
        """Ctrl+L: the cursor in the question box, whatever had the focus."""
        self.chat.input.setFocus(Qt.FocusReason.ShortcutFocusReason)

    def focus_filter(self) -> None:
        """Ctrl+Shift+F: the library's filter box."""
        self.library.filter_edit.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.library.filter_edit.selectAll()

    def focus_search(self) -> None:
        self.chat.search.setFocus()
        self.chat.search.selectAll()

    def _chat_changed(self, chat_id) -> None:
        self._save_chat_settings()  # edits made for the chat being left
        settings = None
        if chat_id is not None:
            settings = self.chat.store.get_chat(chat_id).settings or {}
            self.settings.setValue(self._last_chat_key(), chat_id)
        self.model.show_settings(settings)
        self.model.set_chat(chat_id)

    def _settings_edited(self, values: dict) -> None:
        """A chat's generation settings changed in the model view: saved once the spin
        boxes rest (a held arrow key would otherwise write the chat database at every step),
        and before the next answer, a chat switch or closing."""
        if self.chat.chat_id is None:
            return
        if self._pending_chat_settings is not None and \
                self._pending_chat_settings[0] != self.chat.chat_id:
            self._save_chat_settings()
        chat_id, pending = self._pending_chat_settings or (self.chat.chat_id, {})
        self._pending_chat_settings = (chat_id, {**pending, **values})
        self._chat_settings_timer.start()

    def _save_chat_settings(self) -> None:
        self._chat_settings_timer.stop()
        pending, self._pending_chat_settings = self._pending_chat_settings, None
        if pending is None:
            return
        chat_id, values = pending
        try:
            chat = self.chat.store.get_chat(chat_id)
        except KeyError:  # deleted meanwhile
            return
        self.chat.store.update_chat(chat_id, settings={**(chat.settings or {}), **values})

    # -- sources ------------------------------------------------------------------------

    def open_source(self, source: dict) -> None:
        """Show a cited passage in the built-in viewer. There is no fall-back to the
        desktop's default app: a cited script would run (see app/core/base/opening.py);
        when the viewer fails, the window says why and the viewer's Show in folder remains."""
        self.source_opened.emit(source)
        try:
            if self.viewer is None:
                from app.ui.viewer import SourceViewer

                self.viewer = SourceViewer(self)
                self.viewer.title_changed.connect(
                    lambda t: self.right.setTabText(self.right.indexOf(self.viewer), t[:40]))
                self.right.addTab(self.viewer, "Source")
            self.viewer.show_source(source)
            self.right.setCurrentWidget(self.viewer)
            self.show_side_panel(True)
        except Exception as exc:  # ImportError (no QtPdf) too: say so, never run the file
            log.exception("viewer failed")
            self.show_error(f"Could not show the source {source.get('path', '')}: {exc}",
                            str(exc))

    # -- settings -----------------------------------------------------------------------

    def open_settings_dialog(self) -> None:
        """Show Settings without blocking the window; one dialog at a time."""
        if self.settings_dialog is not None:
            self.settings_dialog.raise_()
            self.settings_dialog.activateWindow()
            return
        from app.ui.settings_dialog import SettingsDialog

        self.settings_dialog = dialog = SettingsDialog(self.app_settings, self,
                                                       prompts=self.folio.prompts)
        dialog.settings_changed.connect(self.apply_settings)
        dialog.install_embedder_requested.connect(self.install_embedder)
        dialog.finished.connect(self._settings_dialog_closed)
        dialog.open()

    def _settings_dialog_closed(self, _result: int) -> None:
        dialog, self.settings_dialog = self.settings_dialog, None
        if dialog is not None:
            dialog.deleteLater()

    def apply_settings(self, new: AppSettings) -> None:
        """Use saved settings at once: retrieval from the next question, chunking from the next
        ingest, the theme now. The library folder and model are opened once, at start-up."""
        old, self.app_settings = self.app_settings, new
        self.watched.app_settings = new
        self._use_settings(new)
        self.model.set_chat(self.chat.chat_id)  # the chat's model list: providers, default
        from app.ui import settings_dialog  # looked up at call time, so tests can watch it

        settings_dialog.apply_theme(new.theme)
        if new.library != old.library:
            self.statusBar().showMessage("The new library folder is used from the next start.",
                                         8000)
        if new.embedder != old.embedder:
            self.check_embedder()

    # -- embedder -----------------------------------------------------------------------

    def check_embedder(self) -> None:
        """If the library was built with another embedder than Settings choose, say so and
        offer the re-index that switches it (never started without the user's word: it
        embeds every document again). Looked up off the GUI thread: it opens the library."""
        folio = self.folio

        def work(job):
            return folio.embedder_mismatch()

        job = self.workers.submit(work, pool="io", name="check embedder")
        job.finished.connect(self._embedder_checked)
        job.failed.connect(lambda m: log.warning("embedder check failed: %s", m))

    def install_embedder(self, name: str) -> None:
        """Download a downloadable embedder (Settings' Install…) in the background, with
        its progress in the status bar; then offer the re-index that uses it."""
        if self.embedder_job is not None:
            self.statusBar().showMessage(f"Already installing {self.embedder_job.name}…", 5000)
            return

        def work(job):
            from app.core.index.embedder_install import install_embedder

            return install_embedder(
                name, cancel=job.cancel,
                progress=lambda stage, done, total: job.report((stage, done, total)))

        self.embedder_job = job = self.workers.submit(work, pool="io", name=name)
        job.yielded.connect(lambda ev: self._embedder_progress(name, *ev))
        job.finished.connect(lambda _path: self._embedder_installed(name))
        job.failed.connect(lambda m: self._embedder_install_failed(name, m))
        self.index_status.setText(f"Installing {name}…")

    def _embedder_progress(self, name: str, stage: str, done: int, total: int) -> None:
        share = f" {min(100, int(100 * done / total))}%" if total > 1 else ""
        self.index_status.setText(f"Installing {name}: {stage}{share}")

    def _embedder_installed(self, name: str) -> None:
        self.embedder_job = None
        self.update_status()
        self.statusBar().showMessage(f"{name} is installed.", 8000)
        if self.settings_dialog is not None:
            self.settings_dialog.embedder_installed(name)
        self.check_embedder()

    def _embedder_install_failed(self, name: str, message: str) -> None:
        job, self.embedder_job = self.embedder_job, None
        self.update_status()
        self.show_error(f"{name} could not be installed: {message}",
                        job.error_detail if job is not None else message)

    def _embedder_checked(self, mismatch) -> None:
        if not mismatch or self._closed:
            return
        built, wanted = mismatch
        from app.core.index.embedder_install import to_download

        if to_download(wanted) is not None:
            self.show_error(
                f"Settings choose the embedder {wanted}, which is not installed yet; "
                f"searches use {built}, which built this library.",
                "Install downloads it from PyPI (the only download Folio makes); then the "
                "library can be re-indexed with it.",
                (f"Install {wanted}", lambda: self.install_embedder(wanted)))
            return
        self.show_error(
            f"This library was built with the embedder {built}; Settings choose {wanted}. "
            f"Searches use {built} until the library is re-indexed with {wanted}.",
            "Re-indexing embeds every document again with the new embedder; the library "
            "stays searchable with the documents done so far while it runs.",
            (f"Re-index with {wanted}",
             lambda: self.library.reindex_all(self.app_settings.embedder)))

    def _use_settings(self, settings: AppSettings) -> None:
        self.folio.configure(settings)
        self.library.settings = settings
        self.sync_server(settings)
        self.sync_provider(settings)

    def sync_provider(self, settings: AppSettings) -> None:
        """Answer with the provider Settings choose (app/core/llm/remote.py), or the local
        model. Where there is no keyring and this session has no key yet, ask for it."""
        from app.core.llm import remote

        name = settings.chat_provider
        current = self.folio.default_provider
        try:
            config = settings.find_provider(name) if name else None
        except (remote.UnknownProvider, TypeError, ValueError, KeyError):
            config = None
        if config == current:
            return
        key = None
        if config is not None:
            key = remote.get_key(config.name)
            if key is None:
                key = self.ask_provider_key(config.name)
                remote.session_key(config.name, key)
        self.folio.use_provider(config, key)

    def ask_provider_key(self, name: str) -> str:
        """The key for a provider, typed for this session (tests replace this)."""
        from PySide6.QtWidgets import QInputDialog, QLineEdit

        text, ok = QInputDialog.getText(
            self, "Provider key — Folio",
            f"There is no system keyring here, so Folio asks for {name}'s API key each "
            "session (empty for none):", QLineEdit.EchoMode.Password)
        return text.strip() if ok else ""

    # -- the local server ---------------------------------------------------------------

    def sync_server(self, settings: AppSettings) -> None:
        """Start, stop or restart the local API so it matches Settings. It runs in a thread of
        this process (its own event loop) on the window's engine; answers go through the
        model host like the window's own. It never swaps the model under the user's chat."""
        wanted = (settings.server_port, settings.server_api_key) \
            if settings.server_enabled and not self._closed else None
        running = getattr(self.server, "folio_key", None)
        if wanted == running:
            return
        self.stop_server()
        if wanted is None:
            self.server_error = None
            return
        from app.server.api import create_app
        from app.server.backend import Backend
        from app.server.runner import ServerThread, stored_api_key

        key = settings.server_api_key or stored_api_key(settings)
        backend = Backend(self.folio, switch_models=False)
        server = ServerThread(create_app(backend, key), "127.0.0.1", settings.server_port)
        try:
            server.start()
        except (OSError, RuntimeError) as exc:
            backend.close()
            self.server_error = f"The local server could not start on port " \
                                f"{settings.server_port}: {getattr(exc, 'strerror', None) or exc}"
            self.show_error(self.server_error, "Choose another port in Settings > Local server.")
            return
        server.backend = backend
        server.folio_key = (settings.server_port, settings.server_api_key)
        self.server = server
        self.server_error = None
        self.statusBar().showMessage(f"Local server at {server.url} (model 'folio')", 8000)

    def stop_server(self) -> None:
        server, self.server = self.server, None
        if server is not None:
            server.stop()
            server.backend.close()

    # -- drag and drop ------------------------------------------------------------------

    def dragEnterEvent(self, event) -> None:
        if local_paths(event.mimeData()):
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:
        if local_paths(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = local_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            models = [p for p in paths if p.lower().endswith(".gguf")]
            if models:  # model files go to the model manager, not the library
                self.model.add_models(models)
            if len(models) < len(paths):
                self.library.ingest([p for p in paths if p not in models])

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind in (QEvent.Type.DragEnter, QEvent.Type.DragMove, QEvent.Type.Drop):
            if local_paths(event.mimeData()):
                if kind == QEvent.Type.Drop:
                    self.dropEvent(event)
                else:
                    event.acceptProposedAction()
                return True
        return super().eventFilter(obj, event)

    # -- persistence --------------------------------------------------------------------

    def _last_chat_key(self) -> str:
        where = self.folio.library_path  # a folder, or an s3:// URI kept as a string
        where = where if isinstance(where, str) else where.resolve()
        digest = hashlib.sha1(str(where).encode()).hexdigest()[:12]
        return f"chat/last_{digest}"

    def _restore(self) -> None:
        s = self.settings
        geometry = s.value("window/geometry")
        if geometry is None or not self.restoreGeometry(geometry):
            self.resize(1280, 800)
        state = s.value("window/state")
        if state is not None:
            self.restoreState(state)
        sizes = _ints(s.value("window/splitter"))
        self.splitter.setSizes(sizes if len(sizes) == 3 else [440, 760, 320])
        self.sidebar.restore(_json(s.value("window/sidebar")))
        self.show_sidebar(str(s.value("window/sidebar_shown", "true")).lower() == "true")
        header = s.value("window/library_header")
        if header is not None:
            self.library.tree.header().restoreState(header)
        wanted = _json(s.value("window/library_columns"))
        if isinstance(wanted, list):
            self.library.wanted_columns = {int(c) for c in wanted if str(c).isdigit()}
        # Closed until asked for, unless it was left open (a source, the model's settings).
        self.show_side_panel(str(s.value("window/side_panel", "false")).lower() == "true")
        self.chat.reload_chats()
        last = s.value(self._last_chat_key())
        chat_id = None
        try:
            chat_id = int(last) if last is not None else None
        except (TypeError, ValueError):
            pass
        if chat_id is None and self.chat.chat_list.count():
            chat_id = self.chat.chat_list.item(0).data(Qt.ItemDataRole.UserRole)
        self.chat.open_chat(chat_id)

    def save_settings(self) -> None:
        s = self.settings
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("window/splitter", self.splitter.sizes())
        s.setValue("window/sidebar", json.dumps(self.sidebar.state()))
        s.setValue("window/sidebar_shown", not self.sidebar.isHidden())
        s.setValue("window/library_header", self.library.tree.header().saveState())
        s.setValue("window/library_columns", json.dumps(sorted(self.library.wanted_columns)))
        s.setValue("window/side_panel", not self.right.isHidden())
        if self.chat.chat_id is not None:
            s.setValue(self._last_chat_key(), self.chat.chat_id)
        s.sync()

    def closeEvent(self, event) -> None:
        """Hide at once and stop what can stop. A model load inside llama.cpp cannot be
        interrupted; rather than freezing the closing window for the seconds it still needs,
        it finishes in the background, hidden, and what it holds is released after it
        (`shut_down`); `app.run` waits for that before the process exits."""
        if not self._closed:
            self._closed = True
            self._save_chat_settings()
            self.save_settings()
            self.hide()
            self.stop_server()  # no new requests; answers under way are stopped
            self.chat.stop()
            self.library.cancel_ingest()
            self.watched.stop()
            self.model.shutdown()  # pauses downloads (they resume next time)
            if self.workers.shutdown(timeout_ms=CLOSE_WAIT_MS):
                self._release()
            else:
                log.info("closing: waiting in the background for %s",
                         ", ".join(j.name for j in self.workers.running()) or "a worker")
                self._close_timer = QTimer(self, interval=50)
                self._close_timer.timeout.connect(self._release_when_idle)
                self._close_timer.start()
        super().closeEvent(event)

    def _workers_idle(self) -> bool:
        w = self.workers
        return all(p.activeThreadCount() == 0 for p in (w.llm_pool, w.ingest_pool, w.io_pool))

    def _release_when_idle(self) -> None:
        if self._workers_idle():
            self._close_timer.stop()
            self._release()

    def _release(self) -> None:
        if self._released:
            return
        self._released = True
        if self.viewer is not None and hasattr(self.viewer, "wait_for_workers"):
            self.viewer.wait_for_workers()
        self.folio.close()
        self.shut_down.emit()

    @property
    def released(self) -> bool:
        """Closed, and every worker has finished and the engine is closed."""
        return self._released

    def wait_released(self, timeout_ms: int = 120_000) -> bool:
        """After close(): block until the workers are done and the engine is closed (the
        window is hidden by then, so nobody sees the wait). True when it got there."""
        if not self._released:
            if not self.workers.shutdown(timeout_ms=timeout_ms):
                return False
            self._release()
        return True


def _warm_up(folio):
    """Load now what the first ingest or question would otherwise load while the user waits:
    the embedder's weights (not only its tokenizer), the ingest code and PyMuPDF.

    Those imports leave millions of long-lived objects behind, and each full garbage
    collection of such a heap holds the GIL for 100-300 ms, freezing the window
    (benchmarks/bench_gui.py: four stalls over 200 ms early in the first ingest). So the
    collector is off during the warm-up, and what it loaded is then frozen (`gc.freeze`):
    later full collections skip it."""

    def work(job):
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            folio.library.embedder.embed_query("warm up")
            import app.core.index.ingest  # noqa: F401
            from app.core.documents.tokens import encoding

            encoding()  # tiktoken's table: parsing it in the first ingest held the GIL

            try:
                import pymupdf  # noqa: F401  (the PDF loader imports it on first use)
            except ImportError:
                pass
        finally:
            gc.freeze()
            if was_enabled:
                gc.enable()

    return work


def _json(value):
    try:
        return json.loads(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _ints(value) -> list[int]:
    if value is None:
        return []
    if not isinstance(value, (list, tuple)):
        value = [value]
    try:
        return [int(v) for v in value]
    except (TypeError, ValueError):
        return []
