"""The model view: what is loaded and where it runs, the current chat's model and generation
settings, and the model manager (every GGUF in the models folder, per-model settings, adding,
removing, downloading).

Two widgets. `ModelPanel` is the narrow "Model" tab on the right of the window. The manager,
`ModelManagerView`, needs room for a table, so it is its own window, opened from the tab
("Manage models…") or by dropping a .gguf anywhere on the main window.

Nothing here touches a model file on the GUI thread: header reads (the listing), copying,
removing, downloads and loading all run as `Job`s (app/workers.py). Loads and unloads share the
window's one-thread LLM pool, so they queue behind an answer instead of pulling the model out
from under it. Downloads get a small pool of their own: a download that waits on the network
for minutes must not hold up the library's reads in the "io" pool.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import QFileSystemWatcher, Qt, QThreadPool, QTimer, QUrl, Signal, Slot
from PySide6.QtGui import QBrush, QColor, QDesktopServices, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QStyle,
    QTabWidget,
    QTextBrowser,
    QToolButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.models.fit import OVERSIZE_HINT
from app.core.models.catalog import catalog_size_tolerance
from app.core.base.units import human_bytes, human_duration
from app.ui.widgets import ActionButton, ElidingComboBox
from app.ui.workers import Job

log = logging.getLogger(__name__)

# The defaults shown when a chat has no setting of its own (llm.GenerationSettings' values,
# repeated here so the window need not import llama.cpp's module to draw a spin box).
DEFAULTS = {"temperature": 0.7, "max_tokens": 512, "top_p": 0.95}
DEFAULT_BATCH = 512  # llm.LoadSettings.batch_size
NAME_ROLE = Qt.ItemDataRole.UserRole
WARN_COLOR = QColor("#b3261e")
OK_COLOR = QColor("#1e7b34")

# Columns of the installed-models table.
COLUMNS = ["Model", "State", "Architecture", "Params", "Quant.", "Context", "Template",
           "Size", "License", "Memory", "Chats", "Notes"]
(COL_NAME, COL_STATE, COL_ARCH, COL_PARAMS, COL_QUANT, COL_CTX, COL_TEMPLATE, COL_SIZE,
 COL_LICENSE, COL_MEMORY, COL_CHATS, COL_NOTES) = range(len(COLUMNS))
CATALOG_COLUMNS = ["Model", "Params", "Quant.", "Size", "License", "RAM needed", "Fits?", ""]
(CAT_NAME, CAT_PARAMS, CAT_QUANT, CAT_SIZE, CAT_LICENSE, CAT_RAM, CAT_FITS,
 CAT_BUTTON) = range(len(CATALOG_COLUMNS))


# -- formatting ------------------------------------------------------------------------------

def _params_label(info) -> str:
    try:
        return info.parameters_label() or "–"
    except Exception:  # noqa: BLE001 - a label must never break the listing
        return "–"


def _memory_text(est) -> str:
    if est is None:
        return "–"
    if not est.fits:
        return f"{human_bytes(est.total_bytes)} · will not fit"
    if getattr(est, "vram_unknown", False):  # only the RAM part could be judged
        return f"{human_bytes(est.total_bytes)} · fits in RAM, VRAM unknown"
    return f"{human_bytes(est.total_bytes)} · fits"


def _memory_tooltip(est, context: int) -> str:
    if est is None:
        return ""
    lines = [
        f"Estimated for a context of {context:,} tokens on the {str(est.device).upper()}:",
        f"  weights {human_bytes(est.weights_bytes)}",
        f"  KV cache {human_bytes(est.kv_cache_bytes)}",
        f"  overhead {human_bytes(est.overhead_bytes)}",
        f"  total {human_bytes(est.total_bytes)}",
        f"Free RAM: {human_bytes(est.free_ram_bytes)}",
    ]
    vram = getattr(est, "vram_bytes", 0)
    if vram:
        lines.append(f"In VRAM: {human_bytes(vram)} ({getattr(est, 'gpu_layers', 0)} layers)")
    if est.free_vram_bytes is not None:
        lines.append(f"Free VRAM: {human_bytes(est.free_vram_bytes)}")
    elif vram:
        lines.append("Free VRAM: unknown (no nvidia-smi), not checked")
    if not est.fits:
        lines.append("Will not fit: Folio refuses to load it unless you choose “Load anyway”.")
    elif getattr(est, "vram_unknown", False):
        lines.append("Fits in RAM; whether the GPU part fits in VRAM is not known.")
    else:
        lines.append("Fits.")
    if est.reason:
        lines.append(str(est.reason))
    return "\n".join(lines)


# -- what a listing job hands back ----------------------------------------------------------

@dataclass
class Listing:
    entries: list = field(default_factory=list)  # ModelEntry
    estimates: dict = field(default_factory=dict)  # name -> MemoryEstimate
    contexts: dict = field(default_factory=dict)  # name -> context the estimate is for
    catalog: list = field(default_factory=list)  # CatalogEntry
    catalog_error: str = ""
    partials: list = field(default_factory=list)  # resumable downloads found on disk
    free_ram: int | None = None
    default_name: str | None = None


def _free_ram() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001
        return None


def _partial_fields(p) -> dict:
    """A PartialDownload's fields, with a file name even when the sidecar lost it."""
    url = getattr(p, "url", None)
    filename = getattr(p, "filename", "") or (
        str(url).split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] if url else "")
    return {"url": url, "filename": filename, "sha256": getattr(p, "sha256", None),
            "done_bytes": getattr(p, "done_bytes", 0) or 0,
            "total_bytes": getattr(p, "total_bytes", None),
            "error": getattr(p, "error", None)}


# -- small widgets ---------------------------------------------------------------------------

class MessageBar(QFrame):
    """An inline, dismissable message at the top of the manager: errors never open a dialog."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAccessibleName("Model manager message")
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 8, 4)
        self.icon = QLabel()
        row.addWidget(self.icon)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(self.text, 1)
        self.action_btn = ActionButton("Message action")
        self.action_btn.acted.connect(self.hide)
        row.addWidget(self.action_btn)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.setAccessibleName("Dismiss model manager message")
        close.clicked.connect(self.hide)
        row.addWidget(close)
        self.hide()

    def show_message(self, text: str, *, error: bool = True, action=None) -> None:
        """`action`: (button label, callable) offered beside the message ("Load anyway");
        clicking it dismisses the message and runs the callable."""
        pix = (QStyle.StandardPixmap.SP_MessageBoxWarning if error
               else QStyle.StandardPixmap.SP_MessageBoxInformation)
        self.icon.setPixmap(self.style().standardIcon(pix).pixmap(18, 18))
        self.text.setText(text)
        self.action_btn.set_action(action)
        self.show()


class DownloadRow(QFrame):
    """One download: name, progress with speed and ETA, Pause/Resume, Cancel."""

    def __init__(self, url: str, filename: str, sha256: str | None, parent=None,
                 size_bytes: int | None = None):
        super().__init__(parent)
        self.url = url
        self.filename = filename
        self.sha256 = sha256
        self.size_bytes = size_bytes  # the catalog's size, checked against the server's
        self.job: Job | None = None
        self.state = "paused"  # running | pausing | paused | cancelling | done | failed
        self.seen_progress = 0  # progress events received (tests wait on it)
        self.verified: bool | None = None  # once done: was a sha256 verified
        self.done_bytes = 0
        self.total_bytes: int | None = None
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAccessibleName(f"Download {filename}")
        grid = QVBoxLayout(self)
        grid.setContentsMargins(8, 6, 8, 6)
        top = QHBoxLayout()
        self.title = QLabel(f"<b>{_esc(filename)}</b>")
        self.title.setToolTip(url)
        top.addWidget(self.title, 1)
        self.pause_btn = QPushButton("Pause")
        self.pause_btn.setAccessibleName(f"Pause or resume download {filename}")
        top.addWidget(self.pause_btn)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setAccessibleName(f"Cancel download {filename}")
        top.addWidget(self.cancel_btn)
        grid.addLayout(top)
        self.bar = QProgressBar()
        self.bar.setAccessibleName(f"Download progress {filename}")
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self.bar.setTextVisible(True)
        grid.addWidget(self.bar)
        self.status = QLabel("")
        self.status.setAccessibleName(f"Download status {filename}")
        self.status.setWordWrap(True)
        grid.addWidget(self.status)

    def show_progress(self, ev) -> None:
        self.seen_progress += 1
        self.done_bytes = ev.done_bytes
        self.total_bytes = ev.total_bytes
        stage = getattr(ev, "stage", "downloading")
        if stage == "verifying":
            self.bar.setRange(0, 0)
            self.status.setText("Checking the file…")
            return
        if stage == "paused":
            return
        total = ev.total_bytes
        if total:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(1000 * min(ev.done_bytes, total) / total))
            self.bar.setFormat(f"{100 * ev.done_bytes / total:.0f}%")
            amount = f"{human_bytes(ev.done_bytes)} of {human_bytes(total)}"
        else:
            self.bar.setRange(0, 0)
            amount = human_bytes(ev.done_bytes)
        parts = [amount, f"{human_bytes(ev.speed_bps)}/s"]
        if ev.eta_s is not None:
            parts.append(f"{human_duration(ev.eta_s)} left")
        if getattr(ev, "resumed_from", 0):
            parts.append(f"resumed at {human_bytes(ev.resumed_from)}")
        self.status.setText(" · ".join(parts))
        self.status.setStyleSheet("")

    def set_state(self, state: str, message: str = "") -> None:
        self.state = state
        self.pause_btn.setEnabled(state in ("running", "paused", "failed"))
        self.cancel_btn.setEnabled(state in ("running", "paused", "failed", "pausing"))
        self.pause_btn.setText({"running": "Pause", "failed": "Retry"}.get(state, "Resume"))
        if state == "running" and self.bar.maximum() == 1000 and self.bar.value() == 0:
            self.status.setText("Connecting…")
        if message:
            self.status.setText(message)
            self.status.setStyleSheet(f"color: {WARN_COLOR.name()}" if state == "failed"
                                      else "")


# -- the manager -----------------------------------------------------------------------------

class ModelManagerView(QWidget):
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

    def _build_installed(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(4, 4, 4, 4)
        split = QSplitter(Qt.Orientation.Vertical)
        split.setChildrenCollapsible(False)

        self.table = QTreeWidget()
        self.table.setAccessibleName("Installed models")
        self.table.setHeaderLabels(COLUMNS)
        self.table.setRootIsDecorated(False)
        self.table.setUniformRowHeights(True)
        self.table.setAlternatingRowColors(True)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(COL_NAME, Qt.SortOrder.AscendingOrder)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.itemSelectionChanged.connect(self._selection_changed)
        self.table.itemDoubleClicked.connect(lambda *_: self._load_selected())
        hdr = self.table.header()
        hdr.setStretchLastSection(True)
        for col in range(len(COLUMNS) - 1):
            hdr.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        # Notes (an unreadable file's error) take what is left, elided; in full in the
        # tooltip and the details.
        hdr.setSectionResizeMode(COL_NOTES, QHeaderView.ResizeMode.Stretch)
        split.addWidget(self.table)

        bottom = QWidget()
        bl = QVBoxLayout(bottom)
        bl.setContentsMargins(0, 0, 0, 0)
        actions = QHBoxLayout()
        self.load_btn = QPushButton("Load")
        self.load_btn.setAccessibleName("Load the selected model")
        self.load_btn.clicked.connect(self._load_selected)
        self.unload_btn = QPushButton("Unload")
        self.unload_btn.setAccessibleName("Unload the model")
        self.unload_btn.clicked.connect(self.unload_requested.emit)
        self.default_btn = QPushButton("Set as default")
        self.default_btn.setAccessibleName("Set the selected model as default")
        self.default_btn.clicked.connect(self._default_selected)
        self.remove_btn = QPushButton("Remove…")
        self.remove_btn.setAccessibleName("Remove the selected model")
        self.remove_btn.clicked.connect(self._remove_selected)
        for b in (self.load_btn, self.unload_btn, self.default_btn, self.remove_btn):
            actions.addWidget(b)
        actions.addStretch(1)
        self.load_state = QLabel("")
        self.load_state.setAccessibleName("Model load state")
        actions.addWidget(self.load_state)
        bl.addLayout(actions)

        lower = QHBoxLayout()
        self.details_box = QGroupBox("Details")
        dform = QVBoxLayout(self.details_box)
        self.details = QTextBrowser()
        self.details.setAccessibleName("Model details")
        self.details.setOpenLinks(False)
        self.details.setPlaceholderText("Select a model to see what its file says.")
        dform.addWidget(self.details)
        lower.addWidget(self.details_box, 1)
        lower.addWidget(self._build_editor(), 1)
        bl.addLayout(lower, 1)
        split.addWidget(bottom)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        split.setSizes([240, 420])
        layout.addWidget(split)
        return page

    def _build_editor(self) -> QGroupBox:
        box = QGroupBox("Settings for this model")
        self.editor_box = box
        outer = QVBoxLayout(box)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        outer.addLayout(form)
        outer.addStretch(1)
        self.ctx_spin = QSpinBox()
        self.ctx_spin.setRange(0, 1_048_576)
        self.ctx_spin.setSingleStep(512)
        self.ctx_spin.setGroupSeparatorShown(True)
        self.ctx_spin.setSuffix(" tokens")
        self.ctx_spin.setAccessibleName("Context length")
        self.ctx_spin.setToolTip("How many tokens the model sees at once. More needs more "
                                 "memory (the KV cache grows with it).")
        self.ctx_spin.valueChanged.connect(self._update_estimate)
        self.gpu_spin = QSpinBox()
        self.gpu_spin.setRange(-1, 999)
        self.gpu_spin.setSpecialValueText("Auto")
        self.gpu_spin.setAccessibleName("GPU layers")
        self.gpu_spin.setToolTip("Layers offloaded to the GPU. Auto: all of them when llama.cpp "
                                 "has a GPU backend; 0: CPU only.")
        self.gpu_spin.valueChanged.connect(self._update_estimate)
        self.threads_spin = QSpinBox()
        self.threads_spin.setRange(0, 256)
        self.threads_spin.setSpecialValueText("Auto")
        self.threads_spin.setAccessibleName("Threads")
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(0, 8192)
        self.batch_spin.setSingleStep(64)
        self.batch_spin.setSpecialValueText(f"Default ({DEFAULT_BATCH})")
        self.batch_spin.setAccessibleName("Batch size")
        self.batch_spin.setToolTip("Prompt tokens evaluated per step. Bigger needs more "
                                   "memory for the compute buffers.")
        self.batch_spin.valueChanged.connect(self._update_estimate)
        self.template_edit = QPlainTextEdit()
        self.template_edit.setAccessibleName("Chat template override")
        self.template_edit.setTabChangesFocus(True)
        self.template_edit.setMaximumHeight(70)
        self.prompt_edit = QPlainTextEdit()
        self.prompt_edit.setAccessibleName("System prompt")
        self.prompt_edit.setTabChangesFocus(True)
        self.prompt_edit.setPlaceholderText("Empty: Folio's own instructions.")
        self.prompt_edit.setMaximumHeight(70)
        self.estimate = QLabel("")
        self.estimate.setAccessibleName("Memory estimate")
        self.estimate.setWordWrap(True)
        self.estimate.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        form.addRow("Context length:", self.ctx_spin)
        form.addRow("", self.estimate)
        form.addRow("GPU layers:", self.gpu_spin)
        form.addRow("Threads:", self.threads_spin)
        form.addRow("Batch size:", self.batch_spin)
        form.addRow("Chat template:", self.template_edit)
        form.addRow("System prompt:", self.prompt_edit)
        row = QHBoxLayout()
        self.applies_label = QLabel("Settings apply the next time the model loads.")
        self.applies_label.setWordWrap(True)
        row.addWidget(self.applies_label, 1)
        self.save_btn = QPushButton("Save")
        self.save_btn.setAccessibleName("Save model settings")
        self.save_btn.clicked.connect(lambda: self.save_settings(reload=False))
        self.reload_btn = QPushButton("Save and reload")
        self.reload_btn.setAccessibleName("Save model settings and reload the model")
        self.reload_btn.clicked.connect(lambda: self.save_settings(reload=True))
        row.addWidget(self.save_btn)
        row.addWidget(self.reload_btn)
        form.addRow(row)
        box.setEnabled(False)
        return box

    def _build_downloads(self) -> QWidget:
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(4, 4, 4, 4)
        cat_box = QGroupBox("Catalog")
        cl = QVBoxLayout(cat_box)
        self.catalog_note = QLabel(
            "Small instruct models that run on a laptop. Downloads resume where they stopped; "
            "a file is verified by sha256 before it is used when the catalog or the server "
            "publishes one, and its size is checked against the catalog's.")
        self.catalog_note.setWordWrap(True)
        cl.addWidget(self.catalog_note)
        self.catalog = QTreeWidget()
        self.catalog.setAccessibleName("Model catalog")
        self.catalog.setHeaderLabels(CATALOG_COLUMNS)
        self.catalog.setRootIsDecorated(False)
        self.catalog.setUniformRowHeights(True)
        self.catalog.setAlternatingRowColors(True)
        hdr = self.catalog.header()
        hdr.setStretchLastSection(False)
        hdr.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in range(1, len(CATALOG_COLUMNS)):
            hdr.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        cl.addWidget(self.catalog)
        layout.addWidget(cat_box, 3)

        dl_box = QGroupBox("Downloads")
        dl = QVBoxLayout(dl_box)
        top = QHBoxLayout()
        self.downloads_empty = QLabel("No downloads. Pick one from the catalog or use "
                                      "“Download from URL…”.")
        self.downloads_empty.setWordWrap(True)
        top.addWidget(self.downloads_empty, 1)
        url_btn = QPushButton("Download from URL…")
        url_btn.setAccessibleName("Download a model from a URL (downloads tab)")
        url_btn.clicked.connect(self.ask_url)
        top.addStretch(1)
        top.addWidget(url_btn)
        dl.addLayout(top)
        holder = QWidget()
        self.download_list = QVBoxLayout(holder)
        self.download_list.setContentsMargins(0, 0, 0, 0)
        self.download_list.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(holder)
        scroll.viewport().setAutoFillBackground(False)
        holder.setAutoFillBackground(False)
        dl.addWidget(scroll, 1)
        layout.addWidget(dl_box, 2)
        return page

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

    # -- listing --------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the folder (headers, settings, estimates, catalog, partials) in a job."""
        if self._closed:
            return
        if self._refreshing:
            self._refresh_again = True
            return
        self._refreshing = True
        manager = self.manager
        default_ctx = self._default_context()

        def work(job):
            out = Listing(free_ram=_free_ram())
            out.entries = manager.list()
            for e in out.entries:
                if e.info is None:
                    continue
                saved = e.settings.context_length if e.settings else None
                if saved is None:
                    saved = default_ctx
                ctx = saved or e.info.context_length or 0  # 0: the model's own
                out.contexts[e.name] = ctx
                try:  # the entry: its saved GPU layers and batch size count too
                    out.estimates[e.name] = manager.estimate_memory(e, context_length=ctx)
                except Exception as exc:  # noqa: BLE001 - the row still shows
                    log.warning("memory estimate for %s failed: %s", e.name, exc)
            try:
                out.default_name = manager.default_name()
            except Exception:  # noqa: BLE001
                out.default_name = next((e.name for e in out.entries if e.is_default), None)
            try:
                out.catalog = manager.catalog()
            except Exception as exc:  # noqa: BLE001
                out.catalog_error = str(exc)
            try:
                out.partials = list(manager.partial_downloads())
            except Exception as exc:  # noqa: BLE001
                log.warning("listing partial downloads failed: %s", exc)
            return out

        self.folder_label.setText(f"Models folder: {manager.models_dir}")
        self.folder_label.setToolTip(str(manager.models_dir))
        folder = str(manager.models_dir)
        if folder not in self._watcher.directories() and Path(folder).is_dir():
            self._watcher.addPath(folder)
        job = self.panel.workers.submit(work, pool="io", name="list models")
        job.finished.connect(self._listed)
        job.failed.connect(self._list_failed)

    def _listed(self, listing: Listing) -> None:
        self._refreshing = False
        self.listing = listing
        self._rebuild()
        self._rebuild_catalog()
        for p in listing.partials:
            f = _partial_fields(p)
            if f["url"] and f["url"] not in self.downloads:
                row = self._download_row(f["url"], f["filename"], f["sha256"])
                total = f["total_bytes"]
                done = f["done_bytes"]
                if total:
                    row.bar.setValue(int(1000 * min(done, total) / total))
                    row.bar.setFormat(f"{100 * done / total:.0f}%")
                why = f"Stopped: {f['error']}. " if f["error"] else "Paused. "
                row.set_state("paused", f"{why}{human_bytes(done)}"
                              + (f" of {human_bytes(total)}" if total else "")
                              + " downloaded — Resume to continue.")
        if self._refresh_again:
            self._refresh_again = False
            self.refresh()
        self.listed.emit(listing)

    def _list_failed(self, message: str) -> None:
        self._refreshing = False
        self.show_error(f"Could not list the models: {message}")
        if self._refresh_again:
            self._refresh_again = False
            self.refresh()

    def entry(self, name: str | None):
        return next((e for e in self.listing.entries if e.name == name), None)

    def names(self) -> list[str]:
        return [e.name for e in self.listing.entries]

    def _rebuild(self) -> None:
        selected = self.selected_name()
        self.table.setSortingEnabled(False)
        self.table.clear()
        self.rows = {}
        loaded = self.panel.loaded_path()
        loading = self.panel.loading_name
        bold = QFont(self.table.font())
        bold.setBold(True)
        warn = QBrush(WARN_COLOR)
        for e in self.listing.entries:
            item = QTreeWidgetItem()
            item.setData(COL_NAME, NAME_ROLE, e.name)
            item.setText(COL_NAME, e.name)
            item.setToolTip(COL_NAME, str(e.path))
            states = []
            if loading == e.name:
                states.append("Loading…")
            elif loaded is not None and _same_file(loaded, e.path):
                states.append(f"Loaded ({self.panel.info.device.upper()})")
            if e.is_default:
                states.append("Default")
                item.setFont(COL_NAME, bold)
            if e.info is None:
                states.append("⚠ Unreadable")
                item.setForeground(COL_STATE, warn)
            item.setText(COL_STATE, " · ".join(states))
            tips = [f"Loaded on the {self.panel.loaded_device()}"] if "Loaded" in \
                item.text(COL_STATE) else []
            if e.is_starter:
                tips.append("The starter model that comes with Folio.")
            if e.error:
                tips.append(e.error)
            item.setToolTip(COL_STATE, "\n".join(tips))
            notes = []
            if e.error:  # the row names the file already
                notes.append(_without_name(e.error, e.name))
            elif e.is_starter:
                notes.append("Starter model (comes with Folio)")
            if e.path.is_symlink():
                notes.append(f"Link to {_link_target(e.path)}")
            item.setText(COL_NOTES, " · ".join(notes))
            item.setToolTip(COL_NOTES, "\n".join(notes))
            info = e.info
            if info is None:
                item.setText(COL_ARCH, "–")
                item.setToolTip(COL_ARCH, e.error or "")
                item.setForeground(COL_NOTES, warn)
                item.setIcon(COL_NAME, self.style().standardIcon(
                    QStyle.StandardPixmap.SP_MessageBoxWarning))
                size = _file_size(e.path)
                item.setText(COL_SIZE, human_bytes(size))
            else:
                item.setText(COL_ARCH, info.architecture or "–")
                item.setText(COL_PARAMS, _params_label(info))
                item.setText(COL_QUANT, info.quantization or "–")
                item.setText(COL_CTX, f"{info.context_length:,}" if info.context_length else "–")
                item.setText(COL_TEMPLATE, "Yes" if info.has_chat_template else "No")
                item.setToolTip(COL_TEMPLATE, "The file carries a chat template: prompted as a "
                                "chat." if info.has_chat_template else
                                "No chat template: prompted as a document (a base model).")
                item.setText(COL_SIZE, human_bytes(info.file_size))
                item.setData(COL_SIZE, Qt.ItemDataRole.UserRole, info.file_size)
                item.setText(COL_LICENSE, info.license or "–")
                item.setToolTip(COL_LICENSE, info.license or "The file names no license.")
                est = self.listing.estimates.get(e.name)
                ctx = self.listing.contexts.get(e.name, 0)
                item.setText(COL_MEMORY, _memory_text(est))
                item.setToolTip(COL_MEMORY, _memory_tooltip(est, ctx))
                if est is not None and not est.fits:
                    item.setForeground(COL_MEMORY, warn)
                    item.setIcon(COL_MEMORY, self.style().standardIcon(
                        QStyle.StandardPixmap.SP_MessageBoxWarning))
            item.setText(COL_CHATS, str(e.used_by_chats or 0) if e.used_by_chats else "–")
            item.setToolTip(COL_CHATS, f"{e.used_by_chats} chat(s) use this model"
                            if e.used_by_chats else "No chat chose this model.")
            for col in range(len(COLUMNS)):
                item.setData(col, Qt.ItemDataRole.AccessibleTextRole,
                             f"{COLUMNS[col]}: {item.text(col)}")
            self.table.addTopLevelItem(item)
            self.rows[e.name] = item
        self.table.setSortingEnabled(True)
        if selected not in self.rows:  # first look: the loaded model, else the default
            selected = next((e.name for e in self.listing.entries if loaded is not None
                             and _same_file(loaded, e.path)), None) or next(
                (e.name for e in self.listing.entries if e.is_default), None)
        if selected in self.rows:
            self.table.setCurrentItem(self.rows[selected])
        elif self.rows:
            self.table.setCurrentItem(self.table.topLevelItem(0))
        self._selection_changed()

    def _rebuild_catalog(self) -> None:
        self.catalog.clear()
        listing = self.listing
        if listing.catalog_error:
            self.catalog_note.setText(f"The catalog could not be read: {listing.catalog_error}")
        installed = {e.name for e in listing.entries}
        for c in listing.catalog:
            item = QTreeWidgetItem([c.name, getattr(c, "parameters", "") or "–",
                                    getattr(c, "quantization", "") or "–",
                                    human_bytes(c.size_bytes), c.license or "–",
                                    human_bytes(c.ram_bytes), "", ""])
            tip = c.description or ""
            if not c.sha256:
                tip += ("\n" if tip else "") + (
                    "No sha256 in the catalog: the download is verified against the sha256 "
                    "the server publishes; its size is checked against the catalog's.")
            item.setToolTip(0, tip)
            free = listing.free_ram
            if free is None or not c.ram_bytes:
                item.setText(CAT_FITS, "?")
            elif c.ram_bytes <= free:
                item.setText(CAT_FITS, "✓ Fits")
                item.setForeground(CAT_FITS, QBrush(OK_COLOR))
                item.setToolTip(CAT_FITS, f"Needs about {human_bytes(c.ram_bytes)}; "
                                f"{human_bytes(free)} of RAM is free now.")
            else:
                item.setText(CAT_FITS, "⚠ Will not fit")
                item.setForeground(CAT_FITS, QBrush(WARN_COLOR))
                item.setToolTip(CAT_FITS, f"Needs about {human_bytes(c.ram_bytes)}; "
                                f"{human_bytes(free)} of RAM is free now.")
            self.catalog.addTopLevelItem(item)
            btn = QPushButton("Installed" if c.filename in installed else "Download")
            btn.setAccessibleName(f"Download {c.name}")
            btn.setEnabled(c.filename not in installed and c.url not in self.downloads)
            btn.clicked.connect(lambda _=False, c=c: self.download(
                c.url, sha256=c.sha256, filename=c.filename, size_bytes=c.size_bytes))
            self.catalog.setItemWidget(item, CAT_BUTTON, btn)

    # -- selection and details ------------------------------------------------------------

    def selected_name(self) -> str | None:
        item = self.table.currentItem()
        return item.data(COL_NAME, NAME_ROLE) if item is not None else None

    def select(self, name: str) -> None:
        if name in self.rows:
            self.table.setCurrentItem(self.rows[name])

    def _selection_changed(self) -> None:
        e = self.entry(self.selected_name())
        loaded = self.panel.loaded_path()
        is_loaded = e is not None and loaded is not None and _same_file(loaded, e.path)
        busy = self.panel.loading_name is not None
        self.load_btn.setEnabled(e is not None and e.info is not None and not busy)
        self.load_btn.setText("Reload" if is_loaded else "Load")
        self.unload_btn.setEnabled(loaded is not None and not busy)
        self.default_btn.setEnabled(e is not None and e.info is not None and not e.is_default)
        self.remove_btn.setEnabled(e is not None and not busy)
        self.reload_btn.setEnabled(is_loaded and not busy)
        self.load_state.setText(self.panel.state_text())
        self._show_details(e)
        self._show_settings(e)

    def _show_details(self, e) -> None:
        if e is None:
            self.details.clear()
            self.details_box.setTitle("Details")
            return
        rows = [("File", str(e.path))]
        if e.path.is_symlink():
            try:
                rows.append(("Links to", str(e.path.resolve())))
            except OSError:
                pass
        info = e.info
        if info is None:
            rows.append(("Problem", e.error or "unreadable"))
        else:
            rows += [
                ("Name", info.name or "–"),
                ("Architecture", info.architecture or "–"),
                ("Parameters", _params_label(info)
                 + (f" ({info.parameter_count:,})" if info.parameter_count else "")),
                ("Quantization", info.quantization or "–"),
                ("Trained context", f"{info.context_length:,} tokens"
                 if info.context_length else "–"),
                ("Layers", str(info.block_count or "–")),
                ("Attention heads", f"{info.head_count or '–'} (KV {info.head_count_kv or '–'})"),
                ("Chat template", "Yes" if info.has_chat_template else "No (base model)"),
                ("License", info.license or "–"),
                ("GGUF version", str(info.version)),
                ("File size", human_bytes(info.file_size)),
            ]
            if info.sliding_window:
                rows.append(("Sliding window", f"{info.sliding_window:,} tokens"))
        rows.append(("Default", "Yes" if e.is_default else "No"))
        rows.append(("Used by", f"{e.used_by_chats} chat(s)" if e.used_by_chats else "no chat"))
        html = "<table cellspacing='2'>" + "".join(
            f"<tr><td style='padding-right:12px'><b>{_esc(k)}</b></td><td"
            + (f" style='color:{WARN_COLOR.name()}'" if k == "Problem" else "")
            + f">{_esc(v)}</td></tr>" for k, v in rows) + "</table>"
        self.details.setHtml(html)
        self.details_box.setTitle(f"Details: {e.name}")

    def _show_settings(self, e) -> None:
        self._editing = e.name if e is not None and e.info is not None else None
        self.editor_box.setEnabled(self._editing is not None)
        s = e.settings if e is not None and e.settings is not None else None
        info = e.info if e is not None else None
        default_ctx = self._default_context()
        self.ctx_spin.setSpecialValueText(
            f"Default ({default_ctx:,})" if default_ctx else "Default (the model's own)")
        if info is not None and info.context_length:
            self.ctx_spin.setMaximum(max(64, int(info.context_length)))
        else:
            self.ctx_spin.setMaximum(1_048_576)
        if info is not None and info.block_count:
            self.gpu_spin.setMaximum(int(info.block_count) + 1)
        for w in (self.ctx_spin, self.gpu_spin, self.batch_spin):
            w.blockSignals(True)
        self.ctx_spin.setValue(getattr(s, "context_length", None) or 0)
        gl = getattr(s, "gpu_layers", None)
        self.gpu_spin.setValue(-1 if gl is None else int(gl))
        self.batch_spin.setValue(getattr(s, "batch_size", None) or 0)
        for w in (self.ctx_spin, self.gpu_spin, self.batch_spin):
            w.blockSignals(False)
        self.threads_spin.setValue(getattr(s, "threads", None) or 0)
        self.template_edit.setPlainText(getattr(s, "chat_template", None) or "")
        self.template_edit.setPlaceholderText(
            "Empty: the template in the file." if info is not None and info.has_chat_template
            else "Empty: none (the file has no chat template; Folio prompts it as a document).")
        self.prompt_edit.setPlainText(getattr(s, "system_prompt", None) or "")
        self.editor_box.setTitle(f"Settings for {e.name}" if e is not None
                                 else "Settings for this model")
        self._update_estimate()

    def editor_settings(self):
        """The ModelSettings the editor shows now."""
        from app.core.models.manager import ModelSettings

        ctx = self.ctx_spin.value()
        if 0 < ctx < 64:
            ctx = 64
        return ModelSettings(
            context_length=ctx or None,
            gpu_layers=None if self.gpu_spin.value() < 0 else self.gpu_spin.value(),
            threads=self.threads_spin.value() or None,
            batch_size=self.batch_spin.value() or None,
            chat_template=self.template_edit.toPlainText().strip() or None,
            system_prompt=self.prompt_edit.toPlainText().strip() or None,
        )

    def _update_estimate(self, _value=None) -> None:
        e = self.entry(self._editing)
        if e is None or e.info is None:
            self.estimate.setText("")
            return
        ctx = self.ctx_spin.value() or self._default_context() or e.info.context_length or 0
        gl = None if self.gpu_spin.value() < 0 else self.gpu_spin.value()
        batch = self.batch_spin.value() or None
        try:  # arithmetic on the header already read, free RAM, the listing's VRAM reading
            # The header, not the entry: what the editor shows, saved or not, is estimated.
            est = self.manager.estimate_memory(e.info, context_length=ctx, gpu_layers=gl,
                                               batch_size=batch, read_vram=False)
        except Exception as exc:  # noqa: BLE001
            self.estimate.setText(f"No estimate: {exc}")
            return
        text = (f"Needs about {human_bytes(est.total_bytes)} (weights "
                f"{human_bytes(est.weights_bytes)}, KV cache {human_bytes(est.kv_cache_bytes)}, "
                f"overhead {human_bytes(est.overhead_bytes)}); "
                f"{human_bytes(est.free_ram_bytes)} of RAM free")
        if est.free_vram_bytes is not None:
            text += f", {human_bytes(est.free_vram_bytes)} of VRAM"
        if est.fits and getattr(est, "vram_unknown", False):
            self.estimate.setText(f"{text}. Fits in RAM; VRAM unknown: "
                                  f"{human_bytes(est.vram_bytes)} goes to the GPU, whose free "
                                  "memory could not be read.")
            self.estimate.setStyleSheet("")
        elif est.fits:
            self.estimate.setText(text + ". Fits.")
            self.estimate.setStyleSheet("")
        else:
            self.estimate.setText(f"⚠ Will not fit. {text}." + (f" {est.reason}"
                                                                 if est.reason else ""))
            self.estimate.setStyleSheet(f"color: {WARN_COLOR.name()}")
        self.estimate.setToolTip(_memory_tooltip(est, ctx))

    # -- actions --------------------------------------------------------------------------

    def save_settings(self, reload: bool = False) -> None:
        name = self._editing
        if name is None:
            return
        settings = self.editor_settings()
        manager = self.manager

        def work(job):
            manager.save_settings(name, settings)
            return name

        job = self.panel.workers.submit(work, pool="io", name="save model settings")

        def saved(_r) -> None:
            self.message.show_message(
                f"Settings for {name} saved." + ("" if reload else
                                                 " They apply the next time it loads."),
                error=False)
            self.settings_saved.emit(name)
            self.refresh()
            if reload:
                self.load_requested.emit(name)

        job.finished.connect(saved)
        job.failed.connect(lambda m: self.show_error(f"Could not save the settings of {name}: "
                                                     f"{m}"))

    def _load_selected(self) -> None:
        name = self.selected_name()
        e = self.entry(name)
        if e is None or e.info is None or self.panel.loading_name is not None:
            return
        self.load_requested.emit(name)

    def _default_selected(self) -> None:
        name = self.selected_name()
        if name is not None:
            self.set_default(name)

    def set_default(self, name: str) -> None:
        manager = self.manager
        job = self.panel.workers.submit(lambda job: manager.set_default(name), pool="io",
                                        name="set default model")
        job.finished.connect(lambda _r: (self.default_changed.emit(name), self.refresh()))
        job.failed.connect(lambda m: self.show_error(f"Could not make {name} the default: {m}"))

    def _remove_selected(self) -> None:
        e = self.entry(self.selected_name())
        if e is not None:
            self.confirm_remove(e.name)

    def confirm_remove(self, name: str) -> None:
        e = self.entry(name)
        if e is None:
            return
        loaded = self.panel.loaded_path()
        in_use = loaded is not None and _same_file(loaded, e.path)
        lines = [f"Remove {name} from the models folder?"]
        if e.path.is_symlink():
            lines.append("It is a link: the file it points to stays where it is.")
        else:
            lines.append("The file is deleted.")
        if in_use:
            lines.append("It is loaded now: it is unloaded first.")
        if e.used_by_chats:
            lines.append(f"{e.used_by_chats} chat(s) use it; they will use the default model.")
        if e.is_starter:
            lines.append("The starter model is put together again from its package when "
                         "Folio needs it.")
        answer = QMessageBox.question(self, "Remove model", "\n\n".join(lines))
        if answer != QMessageBox.StandardButton.Yes:
            return
        self.remove(name)

    def remove(self, name: str) -> None:
        """Remove without asking (the confirmation is `confirm_remove`'s)."""
        e = self.entry(name)
        loaded = self.panel.loaded_path()
        in_use = e is not None and loaded is not None and _same_file(loaded, e.path)
        manager = self.manager
        panel = self.panel

        folio = self.panel.folio

        def work(job):
            if in_use:
                folio.remove_model(name)  # unloads it first
            else:
                manager.remove(name)
            return name

        self._set_busy(+1, f"Removing {name}…")
        # On the LLM pool when it is loaded: the unload must wait for an answer in progress.
        job = self.panel.workers.submit(work, pool="llm" if in_use else "io",
                                        name="remove model")

        def done(_r) -> None:
            self._set_busy(-1)
            if in_use:
                panel.model_unloaded()
            self.message.show_message(f"Removed {name}.", error=False)
            self.removed.emit(name)
            self.refresh()

        def failed(m: str) -> None:
            self._set_busy(-1)
            if in_use:
                panel.model_unloaded()
            self.show_error(f"Could not remove {name}: {m}", job.error_detail)
            self.refresh()

        job.finished.connect(done)
        job.failed.connect(failed)

    # -- adding ---------------------------------------------------------------------------

    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Add a model", "", "GGUF models (*.gguf);;All files (*)")
        if not path:
            return
        link = ask_copy_or_link(self, Path(path).name)
        if link is None:
            return
        self.add([path], link=link)

    def add(self, paths: list[str], *, link: bool = False) -> None:
        """Copy (or link) files into the models folder, one job each; refusals name the file
        and the reason."""
        manager = self.manager
        for p in paths:
            name = Path(p).name

            def work(job, p=p):
                return manager.add(p, link=link)

            self._set_busy(+1, f"Adding {name}…")
            job = self.panel.workers.submit(work, pool="io", name="add model")
            job.finished.connect(lambda entry, name=name: self._added(entry, name))
            job.failed.connect(lambda m, p=p: self._add_failed(p, m))

    def _added(self, entry, name: str) -> None:
        self._set_busy(-1)
        self.message.show_message(f"Added {getattr(entry, 'name', name)}.", error=False)
        self.added.emit(entry)
        self.refresh()
        self.tabs.setCurrentIndex(0)
        self._select_after_refresh = getattr(entry, "name", name)
        if not self._select_waiting:
            self._select_waiting = True
            self.listed.connect(self._select_pending)

    def _select_pending(self, _listing) -> None:
        """Select the model just added once a listing has it (one already under way when
        it was added may not)."""
        name = getattr(self, "_select_after_refresh", "")
        if name in self.rows:
            self._select_waiting = False
            self.listed.disconnect(self._select_pending)
            self.select(name)

    def _add_failed(self, path: str, message: str) -> None:
        self._set_busy(-1)
        self.show_error(f"Could not add {Path(path).name}: {message}", f"{path}\n{message}")
        self.add_refused.emit(path, message)

    def dragEnterEvent(self, event) -> None:
        if _local_paths(event.mimeData()):
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:
        if _local_paths(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = _local_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.add(paths)

    # -- downloads ------------------------------------------------------------------------

    def ask_url(self) -> None:
        dialog = UrlDialog(self)
        dialog.accepted.connect(lambda: self.download(
            dialog.url.text().strip(), sha256=dialog.sha256.text().strip() or None))
        dialog.finished.connect(dialog.deleteLater)
        dialog.open()

    def _download_row(self, url: str, filename: str, sha256: str | None,
                      size_bytes: int | None = None) -> DownloadRow:
        row = DownloadRow(url, filename, sha256, size_bytes=size_bytes)
        row.pause_btn.clicked.connect(lambda: self._pause_or_resume(url))
        row.cancel_btn.clicked.connect(lambda: self.cancel_download(url))
        self.download_list.insertWidget(self.download_list.count() - 1, row)
        self.downloads[url] = row
        self.downloads_empty.hide()
        return row

    def download(self, url: str, *, sha256: str | None = None,
                 filename: str | None = None,
                 size_bytes: int | None = None) -> DownloadRow | None:
        """Start (or resume) a download; progress, speed and ETA show in its row.
        size_bytes: the catalog's size the file must have (see catalog_size_tolerance)."""
        if not url:
            return None
        if not url.lower().startswith(("http://", "https://")):
            self.show_error(f"Cannot download {url}: only http:// and https:// addresses work.")
            return None
        row = self.downloads.get(url)
        if row is None:
            name = filename or url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or url
            row = self._download_row(url, name, sha256, size_bytes)
        elif row.state in ("running", "pausing", "cancelling"):
            return row
        self.tabs.setCurrentIndex(1)
        manager = self.manager
        sha = sha256 or row.sha256
        size = size_bytes or row.size_bytes  # None: the sidecar of a partial may know it
        tolerance = catalog_size_tolerance(size) if size else 0

        def work(job):
            gen = manager.download(url, sha256=sha, filename=filename or None,
                                   should_stop=job.cancel.is_set, expected_size=size,
                                   size_tolerance=tolerance)
            done = None
            for ev in gen:
                if hasattr(ev, "entry") and hasattr(ev, "path"):
                    done = ev
                yield ev
            return done

        job = Job(work, f"download {row.filename}")
        row.job = job
        self._download_jobs.add(job)
        job.yielded.connect(lambda ev, url=url: self._download_event(url, ev))
        job.finished.connect(lambda done, url=url, job=job: self._download_ended(url, job, done))
        job.failed.connect(lambda m, url=url, job=job: self._download_error(url, job, m))
        row.set_state("running")
        self._rebuild_catalog_buttons()
        self.download_pool.start(job.run)
        return row

    def _download_event(self, url: str, ev) -> None:
        row = self.downloads.get(url)
        if row is None:
            return
        if hasattr(ev, "done_bytes"):
            row.show_progress(ev)

    def _download_ended(self, url: str, job: Job, done) -> None:
        self._download_jobs.discard(job)
        row = self.downloads.get(url)
        if row is None:
            return
        row.job = None
        if row.state == "cancelling" and done is None:
            self._discard_partial(url)
            return
        if done is not None:  # (finished before a late Cancel could stop it: keep it)
            row.bar.setRange(0, 1000)
            row.bar.setValue(1000)
            row.bar.setFormat("100%")
            row.verified = done.verified
            row.set_state("done", f"Downloaded to {done.path} · {done.verification}")
            row.pause_btn.hide()
            row.cancel_btn.setText("Clear")
            row.cancel_btn.setEnabled(True)
            row.cancel_btn.setAccessibleName(f"Clear download {row.filename}")
            self.download_finished.emit(done)
            self.refresh()
        else:
            row.set_state("paused", "Paused. " + row.status.text())
            self.download_paused.emit(url)
        self._rebuild_catalog_buttons()

    def _download_error(self, url: str, job: Job, message: str) -> None:
        self._download_jobs.discard(job)
        row = self.downloads.get(url)
        if row is None:
            return
        row.job = None
        if row.state == "cancelling":
            self._discard_partial(url)
            return
        row.set_state("failed", f"Failed: {message}")
        self.show_error(f"Download of {row.filename} failed: {message}", job.error_detail)
        self.download_failed.emit(url, message)
        self._rebuild_catalog_buttons()

    def _pause_or_resume(self, url: str) -> None:
        row = self.downloads.get(url)
        if row is None:
            return
        if row.state == "running" and row.job is not None:
            row.set_state("pausing", "Pausing…")
            row.job.cancel.set()
        elif row.state in ("paused", "failed"):
            self.download(url, sha256=row.sha256, filename=row.filename,
                          size_bytes=row.size_bytes)

    def pause_download(self, url: str) -> None:
        row = self.downloads.get(url)
        if row is not None and row.state == "running":
            self._pause_or_resume(url)

    def resume_download(self, url: str) -> None:
        row = self.downloads.get(url)
        if row is not None and row.state in ("paused", "failed"):
            self._pause_or_resume(url)

    def cancel_download(self, url: str) -> None:
        row = self.downloads.get(url)
        if row is None:
            return
        if row.state == "done":
            self._drop_row(url)
            return
        if row.job is not None:  # stop it first; the partial goes once the job is out
            row.set_state("cancelling", "Cancelling…")
            row.job.cancel.set()
            return
        row.set_state("cancelling", "Cancelling…")
        self._discard_partial(url)

    def _discard_partial(self, url: str) -> None:
        manager = self.manager
        job = self.panel.workers.submit(lambda job: manager.cancel_download(url), pool="io",
                                        name="cancel download")
        job.finished.connect(lambda _r: self._drop_row(url))
        job.failed.connect(lambda m: (self._drop_row(url),
                                      self.show_error(f"Could not delete the partial download "
                                                      f"of {url}: {m}")))

    def _drop_row(self, url: str) -> None:
        row = self.downloads.pop(url, None)
        if row is not None:
            row.hide()
            row.deleteLater()
        self.downloads_empty.setVisible(not self.downloads)
        self._rebuild_catalog_buttons()

    def _rebuild_catalog_buttons(self) -> None:
        installed = {e.name for e in self.listing.entries}
        for i in range(self.catalog.topLevelItemCount()):
            item = self.catalog.topLevelItem(i)
            c = self.listing.catalog[i] if i < len(self.listing.catalog) else None
            btn = self.catalog.itemWidget(item, CAT_BUTTON)
            if c is None or btn is None:
                continue
            row = self.downloads.get(c.url)
            busy = row is not None and row.state not in ("done",)
            btn.setText("Installed" if c.filename in installed else
                        "Downloading…" if busy else "Download")
            btn.setEnabled(c.filename not in installed and not busy)

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


class UrlDialog(QDialog):
    """Download from URL: the address and, when known, the sha256 to verify against."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Download a model")
        form = QFormLayout(self)
        self.url = QLineEdit()
        self.url.setAccessibleName("Model URL")
        self.url.setPlaceholderText("https://huggingface.co/…/resolve/main/model-Q4_K_M.gguf")
        self.url.setMinimumWidth(460)
        self.sha256 = QLineEdit()
        self.sha256.setAccessibleName("Expected sha256")
        self.sha256.setPlaceholderText("Optional: 64 hex digits")
        form.addRow("URL:", self.url)
        form.addRow("sha256:", self.sha256)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Download")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)


def ask_copy_or_link(parent: QWidget, name: str) -> bool | None:
    """True: link, False: copy, None: cancelled."""
    box = QMessageBox(parent)
    box.setWindowTitle("Add a model")
    box.setText(f"Add {name} to the models folder:")
    box.setInformativeText("A copy stays usable if the original moves; a link saves disk "
                           "space but breaks if the original moves or is deleted.")
    copy = box.addButton("Copy", QMessageBox.ButtonRole.AcceptRole)
    link = box.addButton("Link", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(copy)
    box.exec()
    clicked = box.clickedButton()
    if clicked is copy:
        return False
    if clicked is link:
        return True
    return None


# -- the tab ---------------------------------------------------------------------------------

class ModelPanel(QWidget):
    """The "Model" tab: the loaded model and where it runs, this chat's model and settings,
    and the way into the manager. Loads and unloads asked for anywhere go through here."""

    settings_edited = Signal(dict)
    model_changed = Signal(object)  # ModelInfo after a load from here, None after an unload
    load_failed = Signal(str, str)  # name, reason
    chat_model_changed = Signal(object)  # the chat's model name, or None for the default
    error = Signal(str, str)
    _engine_loaded = Signal(object)  # ModelInfo from any load, emitted on the LLM thread

    def __init__(self, folio=None, workers=None, parent: QWidget | None = None):
        super().__init__(parent)
        self.folio = folio
        self.workers = workers
        self.view: ModelManagerView | None = None
        self.info = None  # ModelInfo of the loaded model
        self.loading_name: str | None = None
        self.chat_id: int | None = None
        self._loading = False
        self._load_job: Job | None = None
        self._window_load = False  # the window's own start-up load is in progress
        self._oversize_name: str | None = None  # the model that "will not fit", to load anyway
        self.setAcceptDrops(True)
        if folio is not None and hasattr(folio, "model_listeners"):
            # Loads also happen inside an answer (a chat with another model): hear of them all.
            self._engine_loaded.connect(self._model_loaded_somewhere)
            self._listener = self._engine_loaded.emit
            folio.model_listeners.append(self._listener)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)

        box = QGroupBox("Model")
        form = QFormLayout(box)
        self.name = QLabel("Loading model…")
        self.name.setWordWrap(True)
        self.name.setAccessibleName("Model name")
        self.name.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.device = QLabel("–")
        self.device.setAccessibleName("Model device")
        self.context = QLabel("–")
        self.context.setAccessibleName("Context length")
        self.cpu = QLabel("–")  # what the llama.cpp build uses: AVX2 etc.
        self.cpu.setAccessibleName("CPU features of llama.cpp")
        self.cpu.setWordWrap(True)
        self.cpu.setToolTip("The instruction sets Folio's llama.cpp build was compiled to use. "
                            "It is portable: AVX2, no AVX-512 or AMX.")
        self.notes = QLabel("")
        self.notes.setWordWrap(True)
        self.load_progress = QProgressBar()
        self.load_progress.setRange(0, 0)
        self.load_progress.setAccessibleName("Model loading")
        self.load_progress.setMaximumHeight(10)
        self.load_progress.setTextVisible(False)
        self.load_progress.hide()
        form.addRow("Name:", self.name)
        form.addRow("Device:", self.device)
        form.addRow("Context:", self.context)
        form.addRow("CPU build:", self.cpu)
        form.addRow(self.load_progress)
        form.addRow(self.notes)
        buttons = QHBoxLayout()
        self.unload_btn = QPushButton("Unload")
        self.unload_btn.setAccessibleName("Unload the model")
        self.unload_btn.setToolTip("Free the model's memory; the next question loads it again.")
        self.unload_btn.clicked.connect(self.unload)
        self.unload_btn.setEnabled(False)
        buttons.addWidget(self.unload_btn)
        self.load_anyway_btn = QPushButton("Load anyway")
        self.load_anyway_btn.setAccessibleName("Load the model anyway")
        self.load_anyway_btn.setToolTip(
            "The memory estimate says this model will not fit. Load it anyway: the system "
            "may swap, or stop Folio.")
        self.load_anyway_btn.clicked.connect(self.load_anyway)
        self.load_anyway_btn.hide()
        buttons.addWidget(self.load_anyway_btn)
        buttons.addStretch(1)
        form.addRow(buttons)
        layout.addWidget(box)

        gen = QGroupBox("This chat's settings")
        gform = QFormLayout(gen)
        self.chat_model = ElidingComboBox()
        self.chat_model.setAccessibleName("This chat's model")
        self.chat_model.setToolTip("The model this chat answers with; it is loaded when "
                                   "chosen.")
        self.chat_model.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.chat_model.setMinimumContentsLength(12)
        self.chat_model.addItem("Default model", None)
        self.chat_model.currentIndexChanged.connect(self._chat_model_chosen)
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.0, 2.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setAccessibleName("Temperature")
        self.temperature.setToolTip("0 always picks the likeliest word; higher is more varied.")
        self.max_tokens = QSpinBox()
        self.max_tokens.setRange(1, 8192)
        self.max_tokens.setAccessibleName("Longest answer in tokens")
        self.top_p = QDoubleSpinBox()
        self.top_p.setRange(0.01, 1.0)
        self.top_p.setSingleStep(0.05)
        self.top_p.setAccessibleName("Top p")
        gform.addRow("Model:", self.chat_model)
        gform.addRow("Temperature:", self.temperature)
        gform.addRow("Longest answer:", self.max_tokens)
        gform.addRow("Top p:", self.top_p)
        for w in (self.temperature, self.max_tokens, self.top_p):
            w.valueChanged.connect(self._edited)
        self.gen_box = gen
        layout.addWidget(gen)

        manager = QGroupBox("Models")
        ml = QVBoxLayout(manager)
        self.summary = QLabel("Every .gguf in the models folder, downloads and per-model "
                              "settings. Drop a .gguf file here to copy it in.")
        self.summary.setWordWrap(True)
        self.summary.setAccessibleName("Models summary")
        ml.addWidget(self.summary)
        self.manage_btn = QPushButton("Manage models…")
        self.manage_btn.setAccessibleName("Manage models")
        self.manage_btn.clicked.connect(self.open_manager)
        self.manage_btn.setEnabled(folio is not None and workers is not None)
        ml.addWidget(self.manage_btn)
        layout.addWidget(manager)
        layout.addStretch(1)
        self.show_settings(None)

    # -- the engine side ------------------------------------------------------------------

    @property
    def manager(self):
        """The engine's ModelManager (`Folio.models`, imported on first use)."""
        return self.folio.models

    def default_context(self) -> int:
        return int(getattr(self.folio, "n_ctx", 4096) or 0)

    def manager_view(self) -> ModelManagerView:
        if self.view is None:
            self.view = ModelManagerView(self)
            self.view.load_requested.connect(self.load)
            self.view.unload_requested.connect(self.unload)
            self.view.error.connect(self.error.emit)
            self.view.listed.connect(self._listed)
            self.view.refresh()
        return self.view

    def open_manager(self) -> ModelManagerView:
        fresh = self.view is None
        view = self.manager_view()
        if not fresh:
            view.refresh()
        view.show()
        view.raise_()
        view.activateWindow()
        return view

    def start(self) -> None:
        """List the models (for this chat's model choice) without showing the manager."""
        if self.folio is not None and self.workers is not None:
            self.manager_view()

    def add_models(self, paths: list[str]) -> None:
        """.gguf files dropped anywhere: into the manager, which opens to show them."""
        view = self.open_manager()
        view.tabs.setCurrentIndex(0)
        view.add(paths)

    def shutdown(self) -> None:
        listeners = getattr(self.folio, "model_listeners", None)
        listener = getattr(self, "_listener", None)
        if listeners is not None and listener in listeners:
            listeners.remove(listener)
        if self.view is not None:
            self.view.shutdown()
            self.view.close()

    # -- what is loaded --------------------------------------------------------------------

    def loaded_path(self) -> Path | None:
        return Path(self.info.path) if self.info is not None else None

    def loaded_device(self) -> str:
        info = self.info
        if info is None:
            return ""
        return (f"GPU ({info.gpu_layers} layers)" if info.device == "gpu"
                else f"CPU ({info.threads} thread{'s' * (info.threads != 1)})")

    def state_text(self) -> str:
        if self.loading_name:
            return f"Loading {self.loading_name}…"
        if self.info is not None:
            return f"Loaded: {self.info.name} on {self.loaded_device()}"
        return "No model loaded"

    def show_loading(self, name: str | None = None) -> None:
        self._window_load = name is None
        self.name.setText(f"Loading {name}…" if name else "Loading model…")
        self.device.setText("–")
        self.context.setText("–")
        self.load_progress.show()
        self.unload_btn.setEnabled(False)
        self._refresh_view_state()

    def show_info(self, info) -> None:
        self.info = info
        self.loading_name = None
        self._window_load = False
        self.load_progress.hide()
        self.name.setText(info.name)
        self.name.setToolTip(str(info.path))
        self.device.setText(f"{info.device.upper()}"
                            + (f" ({info.gpu_layers} layers)" if info.device == "gpu" else
                               f" ({info.threads} thread{'s' * (info.threads != 1)})"))
        self.context.setText(f"{info.n_ctx:,} tokens (trained {info.n_ctx_train:,})")
        self.cpu.setText(info.cpu_features or "–")
        self.notes.setText("\n".join(info.notes))
        self.unload_btn.setEnabled(True)
        self._refresh_view_state()

    def show_error(self, message: str, name: str | None = None) -> None:
        """A load failed (`name`: the model asked for; None: the window's own load of the
        model chats use). "Will not fit" offers "Load anyway"."""
        self.info = None
        self.loading_name = None
        self._window_load = False
        self.load_progress.hide()
        self.name.setText("Not loaded")
        self.notes.setText(message)
        self.unload_btn.setEnabled(False)
        self._oversize_name = (name or self._wanted_name() or "") if OVERSIZE_HINT in message \
            else None
        self.load_anyway_btn.setVisible(bool(self._oversize_name))
        self._refresh_view_state()

    def _wanted_name(self) -> str | None:
        """The model the window loads: the pinned file, else the default model."""
        folio = self.folio
        if folio is None:
            return None
        pinned = getattr(folio, "model_path", None)
        if pinned is not None:
            return Path(pinned).name
        try:
            return folio.models.default_name()
        except Exception:  # noqa: BLE001 - no name, no button
            return None

    def load_anyway(self) -> None:
        """Load the model that was refused as too big, without the memory check."""
        name, self._oversize_name = self._oversize_name, None
        self.load_anyway_btn.hide()
        if name:
            self.load(name, allow_oversize=True)

    def _refresh_view_state(self) -> None:
        if self.view is not None:
            self.view._rebuild()

    def load(self, name: str, *, allow_oversize: bool = False) -> None:
        """Load a model of the models folder (with its saved settings) on the LLM pool.
        allow_oversize: even when the memory estimate says it will not fit ("Load anyway")."""
        if self.folio is None or self.workers is None or self.loading_name is not None:
            return
        folio = self.folio
        self.loading_name = name
        self._oversize_name = None
        self.load_anyway_btn.hide()
        self.show_loading(name)
        oversize = True if allow_oversize else None  # None: the engine's own choice
        pinned = getattr(folio, "model_path", None)
        target = pinned if pinned is not None and Path(pinned).name == name else name

        def work(job):
            # The loaded one again: its settings may have changed ("Reload", "Save and reload").
            if folio.model_name == name:
                return folio.reload_model(allow_oversize=oversize)
            return folio.use_model(target, allow_oversize=oversize)

        self._load_job = job = self.workers.submit(work, pool="llm", name=f"load {name}")
        job.finished.connect(self._loaded)
        job.failed.connect(lambda m, name=name, job=job: self._load_error(name, m, job))

    @Slot(object)
    def _model_loaded_somewhere(self, info) -> None:
        """A load by the engine: this panel's, the window's, or one an answer needed."""
        if info is self.info:
            return
        window_load = self._window_load
        self.show_info(info)
        if not window_load:  # the window handles its own start-up load
            self.model_changed.emit(info)
        if self.view is not None:
            self.view.refresh()  # the chats-per-model counts may have changed

    def _loaded(self, info) -> None:
        self._load_job = None
        if info is not self.info:  # normally the engine's listener got here first
            self.show_info(info)
            self.model_changed.emit(info)
            if self.view is not None:
                self.view.refresh()
        self._refresh_view_state()

    def _load_error(self, name: str, message: str, job: Job) -> None:
        self._load_job = None
        self.show_error(message, name)
        self.name.setText(f"{name} not loaded")
        msg = f"{name} could not be loaded: {message}"
        if self.view is not None:
            action = ("Load anyway", self.load_anyway) if self._oversize_name else None
            self.view.message.show_message(msg, action=action)
        self.error.emit(msg, job.error_detail or message)
        self.load_failed.emit(name, message)
        self.model_changed.emit(None)

    def unload(self) -> None:
        if self.folio is None or self.workers is None or self.info is None:
            return
        self.unload_btn.setEnabled(False)
        job = self.workers.submit(lambda job: self.unload_now(), pool="llm", name="unload")
        job.finished.connect(lambda _r: self.model_unloaded())
        job.failed.connect(lambda m: self.error.emit(f"Could not unload the model: {m}", m))

    def unload_now(self) -> None:
        """Free the model (worker thread, LLM pool)."""
        self.folio.unload_model()

    def model_unloaded(self) -> None:
        self.info = None
        self.name.setText("No model loaded")
        self.name.setToolTip("")
        self.device.setText("–")
        self.context.setText("–")
        self.notes.setText("The next question loads the chat's model again.")
        self.unload_btn.setEnabled(False)
        self._refresh_view_state()
        self.model_changed.emit(None)

    # -- this chat -------------------------------------------------------------------------

    def set_chat(self, chat_id: int | None) -> None:
        """Show the model the chat uses (its `model` field; None: the default model)."""
        self.chat_id = chat_id
        model = None
        if chat_id is not None and self.folio is not None:
            try:
                model = self.folio.store.get_chat(chat_id).model
            except Exception as exc:  # noqa: BLE001 - a vanished chat shows the default
                log.warning("chat %s: %s", chat_id, exc)
        self._fill_chat_models(model)
        self.chat_model.setEnabled(chat_id is not None)

    def _listed(self, listing: Listing) -> None:
        n = len(listing.entries)
        default = listing.default_name or "–"
        bad = sum(1 for e in listing.entries if e.info is None)
        self.summary.setText(
            f"{n} model{'s' * (n != 1)} in the folder · default: {default}"
            + (f" · {bad} unreadable" if bad else "")
            + ". Drop a .gguf file here to copy it in.")
        self._fill_chat_models(self.chat_model.currentData())

    def _fill_chat_models(self, current: str | None) -> None:
        self._loading = True
        self.chat_model.clear()
        listing = self.view.listing if self.view is not None else Listing()
        default = listing.default_name
        self.chat_model.addItem(f"Default ({_stem(default)})" if default else "Default model",
                                None)
        self.chat_model.setItemData(0, f"The default model: {default or 'the starter model'}",
                                    Qt.ItemDataRole.ToolTipRole)
        names = [e.name for e in listing.entries if e.info is not None]
        if current and current not in names:
            names.append(current)  # a chat's model that is gone still shows what it was
        for n in names:
            self.chat_model.addItem(_stem(n), n)
            self.chat_model.setItemData(self.chat_model.count() - 1, n,
                                        Qt.ItemDataRole.ToolTipRole)
        idx = self.chat_model.findData(current) if current else 0
        self.chat_model.setCurrentIndex(max(0, idx))
        self.chat_model.setToolTip(self.chat_model.itemData(
            self.chat_model.currentIndex(), Qt.ItemDataRole.ToolTipRole) or "")
        fm = self.chat_model.fontMetrics()  # the list may be wider than the narrow tab
        self.chat_model.view().setMinimumWidth(max(
            [fm.horizontalAdvance(self.chat_model.itemText(i)) + 40
             for i in range(self.chat_model.count())]))
        self._loading = False

    def _chat_model_chosen(self, _index: int) -> None:
        if self._loading or self.chat_id is None or self.folio is None:
            return
        name = self.chat_model.currentData()
        self.folio.store.update_chat(self.chat_id, model=name)
        self.chat_model_changed.emit(name)
        target = name or (self.view.listing.default_name if self.view is not None else None)
        entry = self.view.entry(target) if self.view is not None and target else None
        loaded = self.loaded_path()
        if entry is not None and entry.info is not None and (
                loaded is None or not _same_file(loaded, entry.path)):
            self.load(entry.name)

    def show_settings(self, settings: dict | None) -> None:
        """Show a chat's settings (None: no chat open, the box is disabled)."""
        self._loading = True
        s = {**DEFAULTS, **(settings or {})}
        self.temperature.setValue(float(s["temperature"]))
        self.max_tokens.setValue(int(s["max_tokens"]))
        self.top_p.setValue(float(s["top_p"]))
        self.gen_box.setEnabled(settings is not None)
        self._loading = False

    def _edited(self, _value=None) -> None:
        if not self._loading:
            self.settings_edited.emit({"temperature": round(self.temperature.value(), 2),
                                       "max_tokens": self.max_tokens.value(),
                                       "top_p": round(self.top_p.value(), 2)})

    # -- drops on the tab ------------------------------------------------------------------

    def dragEnterEvent(self, event) -> None:
        if _local_paths(event.mimeData()):
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:
        if _local_paths(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = _local_paths(event.mimeData())
        if paths and self.folio is not None:
            event.acceptProposedAction()
            self.add_models(paths)


# -- helpers ---------------------------------------------------------------------------------

def _local_paths(mime) -> list[str]:
    if mime is None or not mime.hasUrls():
        return []
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile() and u.toLocalFile()]


def _same_file(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return str(a) == str(b)


def _file_size(path) -> int | None:
    try:
        return Path(path).stat().st_size
    except OSError:
        return None


def _stem(name: str | None) -> str:
    return name[:-5] if name and name.lower().endswith(".gguf") else (name or "")


def _without_name(message: str, name: str) -> str:
    """'x.gguf is truncated: …' -> 'Truncated: …' (for a cell beside the file's name)."""
    for prefix in (f"{name}: ", f"{name} is ", f"{name} "):
        if message.startswith(prefix) and len(message) > len(prefix):
            rest = message[len(prefix):]
            return rest[0].upper() + rest[1:]
    return message


def _link_target(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def _esc(text: str) -> str:
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
