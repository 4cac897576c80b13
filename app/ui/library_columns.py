"""The library tree's columns: sorting by any of them, the optional ones that give way to a
readable title in a narrow sidebar, widths fitted to their texts, and the status cell drawn
as a progress bar while a document indexes. `ColumnsPart` is a part of `LibraryPanel` (it
uses its `tree`, `_doc_path` and `apply_filter`)."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, QTimer
from PySide6.QtWidgets import (
    QApplication,
    QHeaderView,
    QMenu,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionProgressBar,
    QTreeWidgetItem,
)

PROGRESS_ROLE = Qt.ItemDataRole.UserRole + 2  # status column: 0-100 while the file indexes
SORT_ROLE = Qt.ItemDataRole.UserRole + 3  # each column's sort key (the text of a number sorts badly)
STATUS_COLUMN = 2
TYPE_COLUMN = 4
COLUMNS = ["Title", "Pages", "Status", "Added", "Type"]
# The columns besides Title and Status, in the order they give way when the sidebar is too
# narrow for them and a readable title (MIN_TITLE pixels): Pages first, then Type, then Added.
OPTIONAL_COLUMNS = (1, TYPE_COLUMN, 3)
MIN_TITLE = 160
# Sorted by status, the documents that need the user come first.
STATUS_ORDER = {"failed": 0, "stopped": 1, "indexing": 2, "queued": 3, "removing": 4, "ready": 5}
STATUS_LABELS = {"queued": "Queued", "indexing": "Indexing…", "ready": "Ready",
                 "failed": "Failed", "removing": "Removing…", "stopped": "Stopped"}
REBUILD_INTERVAL_MS = 150  # tree rebuilds (and re-sorts) while indexing: about 6 a second
RESIZE_PRECISION = 300  # rows measured when the columns are fitted to their contents


class StatusDelegate(QStyledItemDelegate):
    """Draws the status cell of a document that is indexing as a progress bar (its own
    chunks embedded so far), the way the style draws a QProgressBar; other cells as usual."""

    def paint(self, painter, option, index) -> None:
        value = index.data(PROGRESS_ROLE)
        if value is None:
            super().paint(painter, option, index)
            return
        bar = QStyleOptionProgressBar()
        bar.rect = option.rect.adjusted(2, 3, -2, -3)
        bar.state = option.state | QStyle.StateFlag.State_Horizontal
        bar.direction = option.direction
        bar.fontMetrics = option.fontMetrics
        bar.palette = option.palette
        bar.minimum, bar.maximum, bar.progress = 0, 100, int(value)
        bar.text = f"{int(value)}%"
        bar.textVisible = True
        bar.textAlignment = Qt.AlignmentFlag.AlignCenter
        widget = option.widget
        style = widget.style() if widget is not None else QApplication.style()
        if option.state & QStyle.StateFlag.State_Selected:
            painter.fillRect(option.rect, option.palette.highlight())
        style.drawControl(QStyle.ControlElement.CE_ProgressBar, bar, painter, widget)

    def sizeHint(self, option, index):
        size = super().sizeHint(option, index)
        if index.data(PROGRESS_ROLE) is not None:
            size.setWidth(max(size.width(), option.fontMetrics.horizontalAdvance("100%") * 3))
        return size


class ColumnsPart:
    """Sorting and column widths of `LibraryPanel.tree`."""

    def _setup_columns(self) -> None:
        self._resort_timer = QTimer(self, singleShot=True, interval=REBUILD_INTERVAL_MS)
        self._resort_timer.timeout.connect(lambda: self.resort())
        hdr = self.tree.header()
        # Sorting by a column (a click on its header; again: the other way round) orders the
        # documents inside each collection; the collections keep their order by name.
        head = self.tree.headerItem()
        for col in range(len(COLUMNS)):  # the first click: A to Z; the newest, longest first
            head.setData(col, Qt.ItemDataRole.InitialSortOrderRole,
                         Qt.SortOrder.DescendingOrder if col in (1, 3)
                         else Qt.SortOrder.AscendingOrder)
        hdr.setSectionsClickable(True)
        hdr.setSortIndicatorShown(True)
        hdr.setSortIndicator(0, Qt.SortOrder.AscendingOrder)
        hdr.sortIndicatorChanged.connect(lambda _c, _o: self.resort())
        hdr.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        hdr.customContextMenuRequested.connect(self._columns_menu)
        hdr.moveSection(TYPE_COLUMN, 1)  # shown after the title
        # Wanted by the user (the header's menu; Pages and Type until asked for), and shown
        # when there is room for them beside a readable title.
        self.wanted_columns = {3}
        self._column_need: dict[int, int] = {}  # optional column -> the width its texts need
        for col in (1, TYPE_COLUMN):
            hdr.setSectionHidden(col, True)
        self.tree.viewport().installEventFilter(self)  # resizes: which columns fit
        hdr.setStretchLastSection(False)
        hdr.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        hdr.setMinimumSectionSize(36)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        # Held here as well as by its Qt parent: the view calls into it from C++.
        self._status_delegate = StatusDelegate(self.tree)
        self.tree.setItemDelegateForColumn(STATUS_COLUMN, self._status_delegate)
        # Columns fit their contents once per rebuild, not live: with ResizeToContents every
        # status change re-measured every row (a Python sizeHint each) on the GUI thread.
        hdr.setResizeContentsPrecision(RESIZE_PRECISION)
        for col in range(1, len(COLUMNS)):
            hdr.setSectionResizeMode(col, QHeaderView.ResizeMode.Interactive)

    def sort_column(self) -> int:
        return self.tree.header().sortIndicatorSection()

    def _descending(self) -> bool:
        return self.tree.header().sortIndicatorOrder() == Qt.SortOrder.DescendingOrder

    def _sort_key(self, item: QTreeWidgetItem) -> tuple:
        key = item.data(self.sort_column(), SORT_ROLE)
        title = item.data(0, SORT_ROLE) or item.text(0).casefold()
        return (key if key is not None else title, title)

    def sort_by(self, column: int, order: Qt.SortOrder = Qt.SortOrder.AscendingOrder) -> None:
        """What a click on a column's header does: the documents of each collection in that
        column's order (title, pages, status with failures first, date added, type)."""
        self.tree.header().setSortIndicator(column, order)  # -> resort()

    def resort(self, tops=None) -> None:
        """Put the rows of `tops` (None: every collection) in the header's order."""
        self._resort_timer.stop()
        if tops is None:
            tops = [self.tree.topLevelItem(i) for i in range(self.tree.topLevelItemCount())]
        for top in tops:
            self._insert_sorted(top, [])
        if self._filtered:
            self.apply_filter()  # the count beside each collection

    def _columns_menu(self, pos) -> None:
        """The header's context menu: which columns show (the title always does)."""
        hdr = self.tree.header()
        menu = QMenu(self)
        for col in range(1, len(COLUMNS)):
            action = menu.addAction(COLUMNS[col])
            action.setCheckable(True)
            action.setChecked(not hdr.isSectionHidden(col))
            action.toggled.connect(lambda on, c=col: self.show_column(c, on))
        menu.exec(hdr.mapToGlobal(pos))

    def show_column(self, column: int, shown: bool = True) -> None:
        """Ask for a column (or not); it shows when the title keeps room beside it."""
        if shown:
            self.wanted_columns.add(column)
        else:
            self.wanted_columns.discard(column)
        self._layout_columns()

    def _layout_columns(self) -> None:
        """Show the wanted optional columns that fit beside a title of MIN_TITLE pixels,
        Added before Type before Pages; the others wait for a wider sidebar."""
        tree, hdr = self.tree, self.tree.header()
        if not tree.isVisible():  # laid out when shown (a resize comes then)
            for col in OPTIONAL_COLUMNS:
                hdr.setSectionHidden(col, col not in self.wanted_columns)
            return
        room = (tree.viewport().width() - 2 * tree.indentation() - tree.iconSize().width()
                - 8 - hdr.sectionSize(STATUS_COLUMN) - MIN_TITLE)
        for col in reversed(OPTIONAL_COLUMNS):
            need = self._column_need.get(col) or hdr.sectionSizeHint(col)
            show = col in self.wanted_columns and need <= room
            if show:
                room -= need
                if hdr.isSectionHidden(col) or hdr.sectionSize(col) < need:
                    hdr.setSectionHidden(col, False)
                    tree.setColumnWidth(col, need)
            elif not hdr.isSectionHidden(col):
                hdr.setSectionHidden(col, True)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Resize and watched is self.tree.viewport():
            self._layout_columns()
        return super().eventFilter(watched, event)

    def _fit_columns(self, new: list[QTreeWidgetItem] | None = None) -> None:
        """Pages, Status and Added as wide as their texts (Status at least as wide as
        "Indexing…", the label every row passes through, so the title keeps its room).
        `new`: only these rows were added; columns then only grow to fit them, measured
        with the font rather than by asking every row's delegate (a Python call per row)."""
        fm = self.tree.fontMetrics()
        hdr = self.tree.header()
        if new is None:
            self.tree.resizeColumnToContents(STATUS_COLUMN)
            self._grow_status(STATUS_LABELS["indexing"])
            self._column_need = {}
            new = [top.child(j) for i in range(self.tree.topLevelItemCount())
                   for top in (self.tree.topLevelItem(i),) for j in range(top.childCount())]
        else:
            for text in {i.text(STATUS_COLUMN) for i in new}:
                self._grow_status(text)
        for col in OPTIONAL_COLUMNS:  # the widest text (or the header's, with its arrow)
            widest = max((fm.horizontalAdvance(i.text(col)) for i in new), default=0) + 16
            need = max(widest, hdr.sectionSizeHint(col), self._column_need.get(col, 0))
            self._column_need[col] = need
        self._layout_columns()

    def _grow_status(self, text: str) -> None:
        """Widen the Status column to show `text` with its icon whole (never narrower)."""
        width = self.tree.fontMetrics().horizontalAdvance(text) + 40  # icon, margins
        if width > self.tree.columnWidth(STATUS_COLUMN):
            self.tree.setColumnWidth(STATUS_COLUMN, width)
