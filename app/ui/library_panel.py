"""The library: collections, their documents and what indexing is doing to them.

The panel never touches LanceDB on the GUI thread: opening the library, listing documents and
every change (ingest, remove, re-index, move to a collection) run as jobs, and the tree is
rebuilt from the list a job hands back. While an ingest runs, its events overlay live status
("queued", "indexing", "failed: why") on the rows until the next listing catches up.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QIcon
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QLineEdit,
    QInputDialog,
    QLabel,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QStackedWidget,
    QStyle,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.base.opening import desktop_may_open
from app.core.base.units import human_date, human_duration
from app.ui.library_columns import (  # noqa: F401  (MIN_TITLE: the tests import it here)
    COLUMNS,
    MIN_TITLE,
    PROGRESS_ROLE,
    REBUILD_INTERVAL_MS,
    SORT_ROLE,
    STATUS_COLUMN,
    STATUS_LABELS,
    STATUS_ORDER,
    TYPE_COLUMN,
    ColumnsPart,
)
from app.ui.widgets import ElidedLabel

log = logging.getLogger(__name__)

NO_COLLECTION = "Unsorted"
DOC_ROLE = Qt.ItemDataRole.UserRole
COLLECTION_ROLE = Qt.ItemDataRole.UserRole + 1
SYNC_ROWS = 200  # new rows added per turn of the event loop (a dropped folder of thousands)


class LibraryPanel(ColumnsPart, QWidget):
    """Left side of the window. `state_changed` tells the window to update its status bar."""

    state_changed = Signal()
    opened_changed = Signal()  # the first listing arrived: the library is open
    document_status = Signal(str, str)  # path, status: tests and the status bar follow it
    document_progress = Signal(str, int)  # path, percent of its chunks stored (while indexing)
    ingest_finished = Signal(object)  # IngestSummary
    summarize_requested = Signal(str)  # path
    source_requested = Signal(object)  # {"path": ...}: a file shown in Folio's own viewer
    error = Signal(str, str)  # message, details

    def __init__(self, folio, workers, parent: QWidget | None = None):
        super().__init__(parent)
        self.folio = folio
        self.workers = workers
        self.docs: list = []  # DocumentRecord from the last listing
        self.chunks = 0
        self.overlay: dict[str, tuple[str, str]] = {}  # path -> (status, message), live
        self.file_progress: dict[str, tuple[int, int]] = {}  # path -> (chunks done, total)
        self.batch_size: int | None = None  # chunks per embed batch; None: the engine's
        self.ingest_job = None
        self.ingest_job_collection: str | None = None
        # (paths, collection, force, embedder): embedder set = re-index the whole library
        self._ingest_queue: list[tuple[list[str], str | None, bool, str | None]] = []
        self._refreshing = False
        self._refresh_again = False
        self._last_refresh = 0.0
        self.opened = False
        self._collection_of: dict[str, str | None] = {}  # queued path -> target collection
        self.settings = None  # AppSettings (chunking); None: the splitter's defaults
        self._type_icons: dict[str, QIcon] = {}
        self._items: dict[str, list[QTreeWidgetItem]] = {}  # path -> its rows in the tree
        self._doc_by_path: dict = {}
        self._rebuild_timer = QTimer(self, singleShot=True, interval=REBUILD_INTERVAL_MS)
        self._rebuild_timer.timeout.connect(self._sync)
        self._shown: dict[str, tuple] = {}  # path -> the signature its rows show
        self._filtered = False  # some rows are hidden by the filter box
        self._build()

    # -- layout -------------------------------------------------------------------------

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 0, 6, 6)
        # The window shows these two in the header of its sidebar's Library section.
        self.add_files_btn = QPushButton("Add files…")
        self.add_files_btn.setAccessibleName("Add files")
        self.add_files_btn.clicked.connect(self.choose_files)
        self.add_folder_btn = QPushButton("Add folder…")
        self.add_folder_btn.setAccessibleName("Add folder")
        self.add_folder_btn.clicked.connect(self.choose_folder)
        self.filter_edit = QLineEdit()
        self.filter_edit.setPlaceholderText("Filter by name, type or status")
        self.filter_edit.setAccessibleName("Filter documents")
        self.filter_edit.setToolTip("Shows the documents whose title, file name, type (pdf, "
                                    "docx…) or status (ready, failed…) hold every word typed.")
        self.filter_edit.setClearButtonEnabled(True)
        self.filter_edit.textChanged.connect(lambda _t: self.apply_filter())
        layout.addWidget(self.filter_edit)

        self.stack = QStackedWidget()
        empty = QWidget()
        ev = QVBoxLayout(empty)
        ev.addStretch(1)
        icon = QLabel()
        icon.setPixmap(self.style().standardIcon(
            QStyle.StandardPixmap.SP_FileDialogNewFolder).pixmap(48, 48))
        icon.setAlignment(Qt.AlignmentFlag.AlignCenter)
        ev.addWidget(icon)
        self.empty_label = QLabel(
            "<p style='font-size:large'><b>Drop documents here</b></p>"
            "<p>PDF, Word, EPUB, HTML, Markdown, text and code files.<br>"
            "Or use <i>Add files…</i> (Ctrl+O) or <i>Add folder…</i>.</p>")
        self.empty_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_label.setWordWrap(True)
        self.empty_label.setAccessibleName("Empty library: drop documents here")
        ev.addWidget(self.empty_label)
        ev.addStretch(2)
        self.stack.addWidget(empty)

        self.tree = QTreeWidget()
        self.tree.setAccessibleName("Documents")
        self.tree.setHeaderLabels(COLUMNS)
        self.tree.setRootIsDecorated(True)
        self.tree.setUniformRowHeights(True)
        self.tree.setSelectionMode(QTreeWidget.SelectionMode.ExtendedSelection)
        self.tree.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.tree.customContextMenuRequested.connect(self._context_menu)
        self.tree.itemSelectionChanged.connect(self._show_details)
        self.tree.itemDoubleClicked.connect(lambda item, _c: self._open(self._doc_of(item)))
        self._setup_columns()
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.tree)
        self.details = QTextBrowser()
        self.details.setAccessibleName("Document details")
        self.details.setOpenExternalLinks(False)
        self.details.setPlaceholderText("Select a document to see its details.")
        split.addWidget(self.details)
        split.setStretchFactor(0, 4)
        split.setStretchFactor(1, 1)
        self.stack.addWidget(split)
        layout.addWidget(self.stack, 1)

        # Overall progress while an ingest runs.
        self.progress_box = QWidget()
        pb = QVBoxLayout(self.progress_box)
        pb.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setAccessibleName("Indexing progress")
        self.progress.setRange(0, 0)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setAccessibleName("Cancel indexing")
        self.cancel_btn.clicked.connect(self.cancel_ingest)
        row.addWidget(self.progress, 1)
        row.addWidget(self.cancel_btn)
        pb.addLayout(row)
        self.progress_label = ElidedLabel()
        self.progress_label.setSizePolicy(QSizePolicy.Policy.Ignored,
                                          QSizePolicy.Policy.Preferred)
        pb.addWidget(self.progress_label)
        self.progress_box.hide()
        layout.addWidget(self.progress_box)

    # -- listing ------------------------------------------------------------------------

    def refresh(self) -> None:
        """List the library in the background; repeated calls while one runs fold into one."""
        if self._refreshing:
            self._refresh_again = True
            return
        self._refreshing = True
        folio = self.folio

        def work(job):
            lib = folio.library
            return lib.documents(), lib.chunk_count()

        job = self.workers.submit(work, pool="io", name="list documents")
        job.finished.connect(self._listed)
        job.failed.connect(self._list_failed)

    def _listed(self, result) -> None:
        self._refreshing = False
        first = not self.opened
        self.opened = True
        self.docs, self.chunks = result
        self._last_refresh = time.monotonic()
        if first:
            self._rebuild()
        elif self.ingest_job is not None:
            self.schedule_rebuild()  # one update for the many listings a big batch makes
        else:
            self._sync()
        if first:
            self.opened_changed.emit()
        if self._refresh_again:
            self._refresh_again = False
            self.refresh()

    def _list_failed(self, message: str) -> None:
        self._refreshing = False
        self.error.emit(f"The library could not be opened: {message}", message)

    def status_of(self, path: str) -> str | None:
        if path in self.overlay:
            return self.overlay[path][0]
        for d in self.docs:
            if d.path == path:
                return d.status
        return None

    def error_of(self, path: str) -> str:
        if path in self.overlay and self.overlay[path][1]:
            return self.overlay[path][1]
        for d in self.docs:
            if d.path == path:
                return d.error or ""
        return ""

    def collections(self) -> list[str]:
        return sorted({c for d in self.docs for c in d.collections})

    def selected_collection(self) -> str | None:
        item = self.tree.currentItem()
        while item is not None:
            name = item.data(0, COLLECTION_ROLE)
            if name is not None:
                return name or None
            item = item.parent()
        return None

    def _row(self, path: str, d=None) -> dict:
        """What one document's rows show: its record, with the live status overlaid."""
        if d is not None:
            row = {"path": d.path, "title": d.title or d.name, "pages": d.pages,
                   "status": d.status, "error": d.error, "added": d.added_at,
                   "collections": list(d.collections), "doc": d}
        else:
            target = self._collection_of.get(path)
            row = {"path": path, "title": Path(path).name, "pages": None, "added": 0,
                   "collections": [target] if target else [], "doc": None, "error": "",
                   "status": "queued"}
        if path in self.overlay:
            status, message = self.overlay[path]
            row["status"] = status
            if status == "failed":
                row["error"] = message or row.get("error", "")
        return row

    def schedule_rebuild(self) -> None:
        """Update the tree soon (`_sync`), once for however many changes arrive meanwhile:
        while a folder of thousands of files indexes, each file's events must not each
        walk the tree."""
        if not self._rebuild_timer.isActive():
            self._rebuild_timer.start()

    def _update_rows(self, path: str) -> None:
        """Show a new status for `path` in place; a path without rows waits for a rebuild."""
        items = self._items.get(path)
        if not items:
            self.schedule_rebuild()
            return
        row = self._row(path, self._doc_by_path.get(path))
        for item in items:
            self._show_status(item, row)
        self._fit_columns(new=items[:1])
        if self.sort_column() != 0:  # a new status, page count or date moves the row
            self._resort_timer.start()
        if self._filtered:  # a new status may match the filter, or stop matching it
            self.apply_filter()
        if self.tree.currentItem() in items:
            self._show_details()

    def _all_rows(self) -> dict[str, dict]:
        self._doc_by_path = {d.path: d for d in self.docs}
        rows: dict[str, dict] = {d.path: self._row(d.path, d) for d in self.docs}
        for path in self.overlay:
            if path not in rows:
                rows[path] = self._row(path)
        return rows

    def _sync(self) -> None:
        """Bring the tree up to date touching only what changed: new rows are added to their
        collection, changed rows are redrawn in place. What an indexing run does (files
        appear, change status) never rebuilds the tree; a removal or a move does."""
        self._rebuild_timer.stop()
        rows = self._all_rows()
        groups = {}
        for i in range(self.tree.topLevelItemCount()):
            top = self.tree.topLevelItem(i)
            groups[top.data(0, COLLECTION_ROLE)] = top
        shown = {(path, item.parent().data(0, COLLECTION_ROLE))
                 for path, items in self._items.items() for item in items}
        wanted = {(path, name) for path, row in rows.items()
                  for name in (row["collections"] or [""])}
        if shown - wanted:
            self._rebuild()  # something left or moved
            return
        self.tree.setUpdatesEnabled(False)
        for name in sorted({n for _p, n in wanted - shown} - set(groups)):
            groups[name] = self._add_group(name)
        new: dict[str, list[QTreeWidgetItem]] = {}
        missing = sorted(wanted - shown)
        for path, name in missing[:SYNC_ROWS]:
            new.setdefault(name, []).append(self._doc_item(rows[path]))
        if len(missing) > SYNC_ROWS:  # the rest on the next turns of the event loop
            QTimer.singleShot(0, self._sync)
        changed: list[QTreeWidgetItem] = []
        for path, row in rows.items():
            sig = self._signature(row)
            if self._shown.get(path) != sig and path in self._items:
                for item in self._items[path]:
                    if item.treeWidget() is not None:
                        self._show_status(item, row)
                        changed.append(item)
        for name, items in new.items():
            self._insert_sorted(groups[name], items)
        if changed and self.sort_column() != 0:
            self.resort({i.parent() for i in changed if i.parent() is not None} - {
                groups[name] for name in new})
        # Pages and the date arrive once a queued file is read: the columns widen for changed
        # rows too, not only new ones (the date column showed "2…2").
        self._fit_columns(new=changed + [i for items in new.values() for i in items])
        self.apply_filter()
        self.tree.setUpdatesEnabled(True)
        self.stack.setCurrentIndex(1 if rows else 0)
        if self.tree.currentItem() is not None:
            self._show_details()
        self.state_changed.emit()

    @staticmethod
    def _group_key(name: str) -> tuple[bool, str]:
        return (name == "", name.lower())  # collections by name, Unsorted last

    def _group_item(self, name: str) -> QTreeWidgetItem:
        top = QTreeWidgetItem([f"{name or NO_COLLECTION}  (0)", "", "", "", ""])
        top.setData(0, COLLECTION_ROLE, name)
        top.setIcon(0, self.style().standardIcon(QStyle.StandardPixmap.SP_DirIcon))
        return top

    def _add_group(self, name: str) -> QTreeWidgetItem:
        """A new collection's row, in its place among the others."""
        top = self._group_item(name)
        at = 0
        while at < self.tree.topLevelItemCount() and self._group_key(
                self.tree.topLevelItem(at).data(0, COLLECTION_ROLE)) < self._group_key(name):
            at += 1
        self.tree.insertTopLevelItem(at, top)
        top.setExpanded(True)
        return top

    def _insert_sorted(self, top: QTreeWidgetItem, items: list[QTreeWidgetItem]) -> None:
        """Add rows to a collection in title order, keeping the selection."""
        current = self.tree.currentItem()
        selected = [i for i in self.tree.selectedItems() if i.parent() is top]
        children = top.takeChildren() + items
        children.sort(key=self._sort_key, reverse=self._descending())
        top.addChildren(children)
        for item in selected:
            item.setSelected(True)
        if current is not None and current.parent() is top:
            self.tree.setCurrentItem(current, 0, QItemSelectionModel.SelectionFlag.NoUpdate)
        name = top.data(0, COLLECTION_ROLE)
        top.setText(0, f"{name or NO_COLLECTION}  ({top.childCount()})")

    def apply_filter(self) -> None:
        """Hide the documents that do not hold every word of the filter box in their title,
        file name, type or status, and the collections left with none; the count beside a
        collection says how many are shown. Cheap when the box is empty."""
        words = self.filter_edit.text().casefold().split()
        if not words and not self._filtered:
            return
        self._filtered = bool(words)
        for i in range(self.tree.topLevelItemCount()):
            top = self.tree.topLevelItem(i)
            shown = 0
            for j in range(top.childCount()):
                item = top.child(j)
                path = self._doc_path(item) or ""
                name = Path(path).name
                haystack = " ".join((item.text(0), name, Path(path).suffix.lstrip("."),
                                     item.text(STATUS_COLUMN))).casefold()
                hide = any(w not in haystack for w in words)
                item.setHidden(hide)
                shown += not hide
            top.setHidden(bool(words) and shown == 0)
            name = top.data(0, COLLECTION_ROLE)
            count = f"{shown} of {top.childCount()}" if words else f"{top.childCount()}"
            top.setText(0, f"{name or NO_COLLECTION}  ({count})")

    def _signature(self, row: dict) -> tuple:
        """What a row shows: when it is unchanged, the row is not redrawn."""
        path = row["path"]
        return (row["title"], row["pages"], row["status"], row.get("error"), row["added"],
                path in self.overlay, self._percent(path))

    def _rebuild(self) -> None:
        self._rebuild_timer.stop()
        rows = self._all_rows()
        self._items = {}
        self._shown = {}
        selected = {self._doc_path(i) for i in self.tree.selectedItems()}
        current = self.selected_collection()
        expanded = {self.tree.topLevelItem(i).data(0, COLLECTION_ROLE)
                    for i in range(self.tree.topLevelItemCount())
                    if not self.tree.topLevelItem(i).isExpanded()}
        self.tree.setUpdatesEnabled(False)
        self.tree.clear()
        groups: dict[str, list[dict]] = {}
        for row in rows.values():
            for name in row["collections"] or [""]:
                groups.setdefault(name, []).append(row)
        for name in sorted(groups, key=self._group_key):
            top = self._group_item(name)
            top.setText(0, f"{name or NO_COLLECTION}  ({len(groups[name])})")
            self.tree.addTopLevelItem(top)
            members = sorted((self._doc_item(row) for row in groups[name]),
                             key=self._sort_key, reverse=self._descending())
            top.addChildren(members)
            for item in members:
                if self._doc_path(item) in selected:
                    item.setSelected(True)
            top.setExpanded(name not in expanded)
            if name == (current or "") and not selected:
                self.tree.setCurrentItem(top)
        self._fit_columns()
        self.apply_filter()
        self.tree.setUpdatesEnabled(True)
        self.stack.setCurrentIndex(1 if rows else 0)
        self._show_details()
        self.state_changed.emit()

    def _doc_item(self, row: dict) -> QTreeWidgetItem:
        path = row["path"]
        item = QTreeWidgetItem([row["title"], "", "", "", ""])
        item.setData(0, DOC_ROLE, path)
        item.setIcon(0, self._type_icon(path))
        item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self._show_status(item, row)
        self._items.setdefault(path, []).append(item)
        return item


    def _type_icon(self, path: str):
        """The file type's icon, drawn once per type (not once per row and rebuild)."""
        from app.ui.icons import file_type_icon, file_type_of

        kind = file_type_of(path)
        icon = self._type_icons.get(kind)
        if icon is None:
            icon = self._type_icons[kind] = file_type_icon(kind)
        return icon

    def _show_status(self, item: QTreeWidgetItem, row: dict) -> None:
        status = row["status"]
        path = row["path"]
        self._shown[path] = self._signature(row)
        stopped = status == "indexing" and path not in self.overlay
        if stopped:  # an "indexing" record no run is working on: cancelled or interrupted
            status = "stopped"
        item.setText(0, row["title"])
        item.setText(1, str(row["pages"]) if row["pages"] else "")
        item.setText(2, STATUS_LABELS.get(status, status))
        item.setText(3, human_date(row["added"]))
        kind = Path(path).suffix.lstrip(".").lower()
        item.setText(TYPE_COLUMN, kind.upper())
        for col, key in ((0, row["title"].casefold()), (1, row["pages"] or 0),
                         (STATUS_COLUMN, STATUS_ORDER.get(status, len(STATUS_ORDER))),
                         (3, row["added"] or 0), (TYPE_COLUMN, kind)):
            item.setData(col, SORT_ROLE, key)
        item.setToolTip(3, time.strftime("Added %Y-%m-%d %H:%M", time.localtime(row["added"]))
                        if row["added"] else "")
        item.setToolTip(0, path)
        item.setIcon(2, QIcon())
        item.setToolTip(2, "")
        item.setData(STATUS_COLUMN, PROGRESS_ROLE, None)
        if status == "failed":
            item.setIcon(2, self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning))
            item.setToolTip(2, row.get("error") or "failed")
            item.setToolTip(0, f"{row['path']}\nFailed: {row.get('error') or ''}")
        elif status in ("queued", "indexing"):
            item.setIcon(2, self.style().standardIcon(QStyle.StandardPixmap.SP_BrowserReload))
            progress = self._percent(path)
            if status == "indexing" and progress is not None:
                item.setData(STATUS_COLUMN, PROGRESS_ROLE, progress)
        elif status == "stopped":
            item.setIcon(2, self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPause))
            progress = self._percent(path)
            if progress is not None:
                item.setText(2, f"Stopped at {progress}%")
            item.setToolTip(2, "Indexing was stopped before this document was finished. "
                               "Choose Resume indexing (or add it again) to continue from "
                               "where it stopped.")
        item.setData(STATUS_COLUMN, Qt.ItemDataRole.AccessibleTextRole, item.text(2))

    def _percent(self, path: str) -> int | None:
        done, total = self.file_progress.get(path, (0, 0))
        return int(100 * done / total) if total else None

    def is_stopped(self, path: str) -> bool:
        """Indexing of `path` began and was stopped (cancel, crash) before it finished."""
        return path not in self.overlay and any(
            d.path == path and d.status == "indexing" for d in self.docs)

    def doc_items(self, path: str) -> list[QTreeWidgetItem]:
        """The rows showing `path` (one per collection it is in)."""
        return list(self._items.get(path, ()))

    def _show_progress(self, path: str, done: int, total: int) -> None:
        self.file_progress[path] = (done, total)
        percent = self._percent(path)
        if percent is None or self.overlay.get(path, ("",))[0] != "indexing":
            return
        for item in self.doc_items(path):
            item.setData(STATUS_COLUMN, PROGRESS_ROLE, percent)
            item.setData(STATUS_COLUMN, Qt.ItemDataRole.AccessibleTextRole,
                         f"Indexing, {percent}%")
        self.document_progress.emit(path, percent)

    def _doc_path(self, item: QTreeWidgetItem | None) -> str | None:
        return item.data(0, DOC_ROLE) if item is not None else None

    def _doc_of(self, item: QTreeWidgetItem | None):
        path = self._doc_path(item)
        return next((d for d in self.docs if d.path == path), None) if path else None

    def selected_docs(self) -> list:
        seen, out = set(), []
        for item in self.tree.selectedItems():
            d = self._doc_of(item)
            if d is not None and d.path not in seen:
                seen.add(d.path)
                out.append(d)
        return out

    def _show_details(self) -> None:
        item = self.tree.currentItem()
        path = self._doc_path(item)
        if not path:
            self.details.clear()
            return
        d = self._doc_of(item)
        status = self.status_of(path) or ""
        parts = [f"<b>{_esc(d.title or d.name) if d else _esc(Path(path).name)}</b>",
                 f"<br>{_esc(path)}", f"<br>Status: {STATUS_LABELS.get(status, status)}"]
        if self.is_stopped(path):
            parts[-1] = ("<br>Status: Stopped before it was finished: choose <i>Resume "
                         "indexing</i> from its menu to continue where it stopped.")
        err = self.error_of(path)
        if status == "failed" and err:
            parts.append(f"<br><b>Why it failed:</b> {_esc(err)}")
        if d is not None:
            if d.pages:
                parts.append(f"<br>Pages: {d.pages}")
            if d.chunks:
                parts.append(f"<br>Passages indexed: {d.chunks}")
            if d.author:
                parts.append(f"<br>Author: {_esc(d.author)}")
            if d.collections:
                parts.append(f"<br>Collections: {_esc(', '.join(d.collections))}")
            for w in d.warnings:
                parts.append(f"<br>Warning: {_esc(w)}")
        self.details.setHtml("".join(parts))

    # -- adding -------------------------------------------------------------------------

    def choose_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Add files to the library")
        if files:
            self.ingest(files)

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a folder to the library")
        if folder:
            self.ingest([folder])

    def ingest(self, paths: list[str], collection: str | None = ..., force: bool = False) -> None:
        """Index files/folders into `collection` (default: the selected one). Runs queue up."""
        if collection is ...:
            collection = self.selected_collection()
        paths = [str(Path(p).absolute()) for p in paths]
        for p in paths:
            if Path(p).is_file():
                self.overlay[p] = ("queued", "")
        self._rebuild()
        self._collection_of.update({p: collection for p in paths})
        self._ingest_queue.append((paths, collection, force, None))
        if self.ingest_job is None:
            self._start_next_ingest()

    def reindex_all(self, embedder: str) -> None:
        """Embed the whole library again with `embedder` (a name or a model folder), after
        the runs already queued; progress shows as for any ingest."""
        for d in self.docs:
            self.overlay[d.path] = ("queued", "")
        self._rebuild()
        self._ingest_queue.append(([d.path for d in self.docs], None, True, embedder))
        if self.ingest_job is None:
            self._start_next_ingest()

    def _start_next_ingest(self) -> None:
        if not self._ingest_queue:
            return
        paths, collection, force, embedder = self._ingest_queue.pop(0)
        self.ingest_job_collection = collection
        folio = self.folio
        settings = self.settings  # taken now: a later change applies to the next run
        batch_size = self.batch_size

        def work(job):
            from app.core.index.ingest import IngestOptions, IngestSummary, discover, ingest

            summary = IngestSummary()
            options = IngestOptions(collection=collection, force=force)
            if batch_size:
                options.batch_size = batch_size
            if settings is not None:
                options.splitter = settings.splitter_config()
                options.time_limit = settings.file_time_limit
            with folio.write_lock:  # not interleaved with a watched folder's batch
                if embedder is not None:
                    yield ("queued", [d.path for d in folio.library.documents()])
                    yield from folio.reindex(embedder, options=options, cancel=job.cancel,
                                             summary=summary)
                    return summary
                files, _ = discover(paths)
                yield ("queued", [str(f) for f in files])
                yield from ingest(folio.library, paths, options, cancel=job.cancel,
                                  summary=summary)
                return summary

        self.ingest_job = job = self.workers.submit(work, pool="ingest", name="ingest")
        job.yielded.connect(self._ingest_event)
        job.finished.connect(self._ingest_done)
        job.failed.connect(self._ingest_failed)
        self.progress.setRange(0, 0)
        self.progress_label.setText("Looking at the files…")
        self.cancel_btn.setEnabled(True)
        self.progress_box.show()
        self.state_changed.emit()

    def _ingest_event(self, ev) -> None:
        if isinstance(ev, tuple):
            target = self.ingest_job_collection
            for p in ev[1]:
                self.overlay.setdefault(p, ("queued", ""))
                self._collection_of.setdefault(p, target)
            self.schedule_rebuild()
            return
        if ev.kind == "file_start":
            self.overlay[ev.path] = ("indexing", "")
            if ev.file_total:
                self.file_progress[ev.path] = (ev.file_done, ev.file_total)
            self.document_status.emit(ev.path, "indexing")
            self._update_rows(ev.path)
            self.state_changed.emit()
            if ev.file_total:
                self._show_progress(ev.path, ev.file_done, ev.file_total)
        elif ev.kind == "progress":
            self._show_progress(ev.path, ev.file_done, ev.file_total)
        elif ev.kind == "file":
            status = "ready" if ev.status == "skipped" else ev.status
            if status == "ready":
                self.file_progress.pop(ev.path, None)
            self.overlay[ev.path] = (status, ev.message if status == "failed" else "")
            self._update_rows(ev.path)
            self.document_status.emit(ev.path, status)
            if status == "failed":
                self.error.emit(f"Could not add {Path(ev.path).name}: {ev.message}",
                                f"{ev.path}\n{ev.message}")
            self.refresh()
        if ev.files_total:
            self.progress.setRange(0, 1000)
            # Files still being embedded count by their share done, so one big PDF moves the
            # bar too (batches span files: several can be part-way at once).
            partial = sum(done / total for p, (done, total) in self.file_progress.items()
                          if total and self.overlay.get(p, ("",))[0] == "indexing")
            frac = min(1.0, (ev.files_done + partial) / ev.files_total)
            self.progress.setValue(int(frac * 1000))
            name = Path(ev.current).name if ev.current else ""
            rate = f" · {ev.rate:.1f} passages/s" if ev.rate else ""
            self.progress_label.setText(
                f"{ev.files_done} of {ev.files_total} files · {ev.chunks_done} passages{rate}"
                f" · ETA {human_duration(ev.eta)}" + (f" · {name}" if name else ""))
            self.progress_label.setToolTip(ev.current or "")

    def _ingest_done(self, summary) -> None:
        self.ingest_job = None
        self.progress_box.hide()
        for path, (status, _msg) in list(self.overlay.items()):
            if status != "failed":  # the listing knows the truth now; failures keep their why
                self.overlay.pop(path)
        self.refresh()
        self.ingest_finished.emit(summary)
        if summary is not None and summary.cancelled:
            for path, (status, _m) in list(self.overlay.items()):
                if status == "queued":
                    self.overlay.pop(path)
        self._start_next_ingest()
        self.state_changed.emit()

    def _ingest_failed(self, message: str) -> None:
        detail = self.ingest_job.error_detail if self.ingest_job is not None else message
        self.ingest_job = None
        self.progress_box.hide()
        for path, (status, _m) in list(self.overlay.items()):
            if status in ("queued", "indexing"):
                self.overlay.pop(path)
        # A full disk says itself what happened and what to do (app.core.index.library.DiskFull).
        text = message if message.startswith("Disk full") else f"Indexing stopped: {message}"
        self.error.emit(text, detail or message)
        self.refresh()
        self._start_next_ingest()
        self.state_changed.emit()

    def cancel_ingest(self) -> None:
        self._ingest_queue.clear()
        if self.ingest_job is not None:
            self.ingest_job.cancel.set()
            self.cancel_btn.setEnabled(False)
            self.progress_label.setText("Stopping after the current batch…")

    @property
    def indexing(self) -> bool:
        return self.ingest_job is not None

    # -- context menu -------------------------------------------------------------------

    def _context_menu(self, pos) -> None:
        docs = self.selected_docs()
        if not docs:
            return
        menu = QMenu(self)
        one = docs[0] if len(docs) == 1 else None
        if one:
            menu.addAction("Open", lambda: self._open(one))
            menu.addAction("Show in folder", lambda: self._show_in_folder(one))
            act = menu.addAction("Summarise", lambda: self.summarize_requested.emit(one.path))
            act.setEnabled(one.status == "ready")
            menu.addSeparator()
        stopped = [d.path for d in docs if self.is_stopped(d.path)
                   or (d.status == "failed" and d.pending_version)]
        if stopped:
            menu.addAction("Resume indexing", lambda: self.ingest(stopped, None))
        menu.addAction("Re-index", lambda: self.ingest([d.path for d in docs], None, True))
        menu.addAction("Move to collection…", lambda: self._to_collection(docs, move=True))
        menu.addAction("Copy to collection…", lambda: self._to_collection(docs, move=False))
        menu.addSeparator()
        menu.addAction("Remove from library…", lambda: self._remove(docs))
        menu.exec(self.tree.viewport().mapToGlobal(pos))
        menu.deleteLater()  # one menu per right-click: do not keep them all as children

    def _open(self, doc) -> None:
        """A document the default app shows opens there; anything it could run instead (a
        script, a program: see app/core/base/opening.py) opens in Folio's own viewer."""
        if doc is None:
            return
        if desktop_may_open(doc.path):
            QDesktopServices.openUrl(QUrl.fromLocalFile(doc.path))
        else:
            self.source_requested.emit({"path": doc.path, "page": None})

    def _show_in_folder(self, doc) -> None:
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(doc.path).parent)))

    def _remove(self, docs) -> None:
        names = "\n".join(d.title or d.name for d in docs[:10])
        more = f"\n…and {len(docs) - 10} more" if len(docs) > 10 else ""
        answer = QMessageBox.question(
            self, "Remove from library",
            f"Remove these documents from the library?\n\n{names}{more}\n\n"
            "The files themselves stay where they are.")
        if answer != QMessageBox.StandardButton.Yes:
            return
        self.remove(docs)

    def remove(self, docs) -> None:
        folio = self.folio
        paths = [d.path for d in docs]

        def work(job):
            # The library's own records, not the listing's: `remove` marks the record it is
            # given, and the listing's objects belong to the GUI thread.
            lib = folio.library
            with folio.write_lock:
                for path in paths:
                    doc = lib.get(path)
                    if doc is not None:
                        lib.remove(doc)
                lib.optimize()

        for d in docs:
            self.overlay.pop(d.path, None)
        job = self.workers.submit(work, pool="ingest", name="remove")
        job.finished.connect(lambda _r: self.refresh())
        job.failed.connect(lambda m: self.error.emit(f"Could not remove: {m}", m))

    def _to_collection(self, docs, move: bool) -> None:
        name, ok = QInputDialog.getItem(
            self, "Move to collection" if move else "Copy to collection",
            "Collection (pick one or type a new name):", self.collections() or [""], 0, True)
        if ok and name.strip():
            self.set_collection(docs, name.strip(), move)

    def set_collection(self, docs, name: str, move: bool) -> None:
        """Add `docs` to collection `name`; `move` takes them out of the selected one (out of
        all of them when the selection is "Unsorted" or a document row outside any)."""
        source = self.selected_collection()
        folio = self.folio
        paths = [d.path for d in docs]

        def work(job):
            # Re-read each record: the listing may predate a re-index, and writing it back
            # whole would roll the document back to chunks that no longer exist.
            lib = folio.library
            for path in paths:
                doc = lib.get(path)
                if doc is None:  # removed meanwhile
                    continue
                names = set(doc.collections)
                if move:
                    if source:
                        names.discard(source)
                    else:
                        names.clear()
                names.add(name)
                lib.set_collections(doc, names)

        job = self.workers.submit(work, pool="ingest", name="collections")
        job.finished.connect(lambda _r: self.refresh())
        job.failed.connect(lambda m: self.error.emit(f"Could not change collections: {m}", m))


def _esc(text: str) -> str:
    return (text or "").replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
