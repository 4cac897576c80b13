"""`ModelManagerView`, the model manager window: the list (`listing`), the editor (`editor`)
and the downloads (`downloads`) put together.

It needs room for a table, so it is its own window, opened from the Model tab ("Manage
models…") or by dropping a .gguf anywhere on the main window. Nothing here touches a model file
on the GUI thread: header reads (the listing), copying, removing, downloads and loading all run
as `Job`s (app/ui/workers.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QFileSystemWatcher, Qt, QThreadPool, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QTabWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.ui.models.common import Listing, MessageBar
from app.ui.models.downloads import DownloadRow, DownloadsPart
from app.ui.models.editor import EditorPart
from app.ui.models.listing import ListPart
from app.ui.workers import Job

if TYPE_CHECKING:
    from app.ui.models.panel import ModelPanel

log = logging.getLogger(__name__)


class ModelManagerView(ListPart, EditorPart, DownloadsPart, QWidget):
    """Every GGUF in the models folder, what its header says and what it needs, with the
    actions on it; the catalog and downloads. A window of its own (see the module docstring)."""

    listed = Signal(object)  # Listing, after every refresh (tests and the chat combo follow it)
    added = Signal(object)  # ModelEntry
    add_refused = Signal(str, str)  # path, reason
    removed = Signal(str)  # name
    download_finished = Signal(object)  # DownloadDone
    download_failed = Signal(str, str)  # url, reason
    download_paused = Signal(str)  # url
    settings_saved = Signal(str)  # name
    default_changed = Signal(str)
    load_requested = Signal(str)  # name: the panel loads it
    unload_requested = Signal()
    error = Signal(str, str)  # message, details: the window's banner shows it too

    def __init__(self, panel: ModelPanel):
        super().__init__(panel, Qt.WindowType.Window)  # its own window, owned by the tab
        self.panel = panel
        self.setWindowTitle("Models — Folio")
        self.setAccessibleName("Model manager")
        self.setAcceptDrops(True)
        self.listing = Listing()
        self.rows: dict[str, QTreeWidgetItem] = {}
        self.downloads: dict[str, DownloadRow] = {}
        self.download_pool = QThreadPool(self)
        self.download_pool.setMaxThreadCount(3)
        self._download_jobs: set[Job] = set()
        self._refreshing = False
        self._refresh_again = False
        self._closed = False
        self._select_waiting = False
        self._busy = 0
        self._editing: str | None = None
        # Files copied into the folder by hand show up by themselves (debounced: a copy in
        # progress changes the folder many times).
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(400)
        self._refresh_timer.timeout.connect(self.refresh)
        self._watcher = QFileSystemWatcher(self)
        self._watcher.directoryChanged.connect(lambda _p: self._refresh_timer.start())
        self._build()
        self.resize(1280, 760)

    # -- layout -------------------------------------------------------------------------

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        self.message = MessageBar()
        layout.addWidget(self.message)

        header = QHBoxLayout()
        self.folder_label = QLabel()
        self.folder_label.setAccessibleName("Models folder")
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        header.addWidget(self.folder_label, 1)
        self.busy = QProgressBar()
        self.busy.setRange(0, 0)
        self.busy.setMaximumWidth(120)
        self.busy.setAccessibleName("Model manager busy")
        self.busy.hide()
        header.addWidget(self.busy)
        self.busy_label = QLabel("")
        header.addWidget(self.busy_label)
        self.add_btn = QPushButton("Add…")
        self.add_btn.setAccessibleName("Add a model file")
        self.add_btn.setToolTip("Copy or link a .gguf file into the models folder. "
                                "You can also drop .gguf files here: dropped files are "
                                "copied (Add… offers a link instead).")
        self.add_btn.clicked.connect(self.choose_file)
        header.addWidget(self.add_btn)
        self.url_btn = QPushButton("Download from URL…")
        self.url_btn.setAccessibleName("Download a model from a URL")
        self.url_btn.clicked.connect(self.ask_url)
        header.addWidget(self.url_btn)
        self.folder_btn = QPushButton("Open folder")
        self.folder_btn.setAccessibleName("Open the models folder")
        self.folder_btn.clicked.connect(self._open_folder)
        header.addWidget(self.folder_btn)
        self.refresh_btn = QPushButton("Refresh")
        self.refresh_btn.setAccessibleName("Refresh the model list")
        self.refresh_btn.clicked.connect(self.refresh)
        header.addWidget(self.refresh_btn)
        layout.addLayout(header)

        self.tabs = QTabWidget()
        self.tabs.setAccessibleName("Installed models and downloads")
        self.tabs.addTab(self._build_installed(), "Installed")
        self.tabs.addTab(self._build_downloads(), "Download")
        layout.addWidget(self.tabs, 1)

    # -- the manager and its folder -------------------------------------------------------

    @property
    def manager(self):
        return self.panel.manager

    def _default_context(self) -> int:
        return self.panel.default_context()

    def _open_folder(self) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.manager.models_dir)))

    def _set_busy(self, delta: int, text: str = "") -> None:
        self._busy = max(0, self._busy + delta)
        self.busy.setVisible(self._busy > 0)
        if text or self._busy == 0:
            self.busy_label.setText(text if self._busy else "")

    def show_error(self, message: str, details: str = "") -> None:
        log.warning("%s", message)
        self.message.show_message(message)
        self.error.emit(message, details or message)

    def shutdown(self, timeout_ms: int = 3_000) -> bool:
        """Pause every download (partials stay, to resume next time) and wait a little: a
        download stops between two blocks; one stalled on a dead connection ends at the
        engine's HTTP timeout, while the pool is torn down, without holding the window."""
        self._closed = True
        self._refresh_timer.stop()
        if self._watcher.directories():
            self._watcher.removePaths(self._watcher.directories())
        for job in list(self._download_jobs):
            job.cancel.set()
        self.download_pool.clear()
        return self.download_pool.waitForDone(timeout_ms)

    def closeEvent(self, event) -> None:  # closing the window only hides it; downloads go on
        event.accept()
        super().closeEvent(event)
