"""The source viewer: what opens when a user clicks a source or an [n] marker in an answer.

PDFs open in QtPdf at the cited page with the passage highlighted through a search model
(QtPdf has no API to highlight an arbitrary character range, but its search results are
painted on the page, so searching for the passage's own words highlights it). Other files
show the document's canonical text (`document_text(load(path).blocks)`), which is exactly
what chunk offsets point into, with the passage selected. Loading that text can take a
while for a big file, so it runs on a worker thread; the GUI thread only shows the result.

When the file changed after it was indexed the stored offsets no longer fit; the passage is
then looked for by its text and a small notice says the file changed.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import (
    QEvent,
    QObject,
    QPointF,
    QProcess,
    QRectF,
    QRunnable,
    Qt,
    QThreadPool,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import QAction, QDesktopServices, QKeySequence, QPalette, QTextCursor
from PySide6.QtPdf import QPdfDocument, QPdfSearchModel
from PySide6.QtPdfWidgets import QPdfView
from PySide6.QtWidgets import (
    QLabel,
    QMainWindow,
    QPlainTextEdit,
    QSizePolicy,
    QSpinBox,
    QStackedWidget,
    QTextEdit,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from app.core.base.opening import desktop_may_open, not_opened_reason
from app.core.base.units import page_label

log = logging.getLogger(__name__)

CHANGED_NOTICE = "The file changed since it was indexed"
NOT_FOUND_NOTICE = "The file changed since it was indexed: the passage is no longer in it"
MIN_ZOOM, MAX_ZOOM, ZOOM_STEP = 0.25, 6.0, 1.25


# --- finding the passage (pure Python, runs on the worker thread) ------------------------


@dataclass(frozen=True)
class Located:
    """Where the passage is in the text: `start`/`end` are Python (code point) offsets,
    `qt_start`/`qt_end` the same in UTF-16 units, which is what QTextCursor counts."""

    start: int | None
    end: int | None
    qt_start: int | None = None
    qt_end: int | None = None
    changed: bool = False  # the stored offsets no longer point at the passage

    @property
    def found(self) -> bool:
        return self.start is not None


def _norm(text: str) -> str:
    return " ".join(text.split())


def _fuzzy_pattern(words: list[str]) -> re.Pattern[str]:
    return re.compile(r"\s+".join(re.escape(w) for w in words))


def _find_all(text: str, words: list[str]) -> list[tuple[int, int]]:
    if not words:
        return []
    return [(m.start(), m.end()) for m in _fuzzy_pattern(words).finditer(text)]


def _nearest(spans: list[tuple[int, int]], near: int | None) -> tuple[int, int]:
    if near is None:
        return spans[0]
    return min(spans, key=lambda s: abs(s[0] - near))


def _utf16(text: str, index: int) -> int:
    return len(text[:index].encode("utf-16-le")) // 2


def locate_passage(
    text: str, passage: str, char_start: int | None = None, char_end: int | None = None
) -> Located:
    """Find `passage` in `text`: at its stored offsets when they still fit, else by its words
    (whitespace-tolerant), nearest to where it used to be; else by its opening and closing
    words; else by its longest sentence."""
    passage = passage.strip()
    if passage.endswith(" ..."):  # a source trimmed to fit a prompt
        passage = passage[:-4].rstrip()
    has_offsets = (
        isinstance(char_start, int)
        and isinstance(char_end, int)
        and not isinstance(char_start, bool)
        and not isinstance(char_end, bool)
    )

    def done(s: int, e: int, changed: bool) -> Located:
        return Located(s, e, _utf16(text, s), _utf16(text, e), changed)

    if has_offsets and 0 <= char_start < char_end <= len(text):
        piece = text[char_start:char_end]
        # A continued table repeats its header on top of the slice the offsets point at.
        if piece == passage or passage.endswith(piece) or _norm(piece) == _norm(passage):
            return done(char_start, char_end, False)
    changed = has_offsets
    near = char_start if has_offsets else None
    words = passage.split()
    if not words:
        return Located(None, None, changed=changed)

    spans = _find_all(text, words)
    if spans:
        return done(*_nearest(spans, near), changed)

    # Edited inside the passage: anchor on its opening and closing words.
    head, tail = words[:10], words[-10:]
    heads = _find_all(text, head)
    if heads:
        s, e = _nearest(heads, near)
        limit = s + 2 * len(passage) + 200
        tails = [t for t in _find_all(text, tail) if s < t[1] <= limit]
        return done(s, tails[0][1] if tails else e, True)
    tails = _find_all(text, tail)
    if tails:
        return done(*_nearest(tails, near), True)

    sentences = sorted(re.split(r"(?<=[.!?])\s+|\n\s*\n", passage), key=len, reverse=True)
    for sentence in sentences:
        sw = sentence.split()
        if len(sw) < 5:
            break
        found = _find_all(text, sw)
        if found:
            return done(*_nearest(found, near), True)
    return Located(None, None, changed=True)


def pdf_phrases(passage: str, page_text: str, limit: int = 8) -> list[str]:
    """Phrases of the passage worth searching for on a PDF page, best first.

    PDFium's search matches across line breaks when the phrase has a space there, so the
    whole passage is tried first (it highlights all of it), then its paragraphs and
    sentences, then short openings; last, lines of the page that occur in the passage
    (these survive de-hyphenation and other changes the loader made to the text).
    Only phrases that occur in the page's own text are returned.
    """
    page_norm = _norm(page_text).casefold()
    passage = passage.strip()
    if passage.endswith(" ..."):
        passage = passage[:-4].rstrip()
    out: list[str] = []

    def add(phrase: str) -> None:
        phrase = _norm(phrase)
        if len(phrase) >= 12 and phrase not in out and phrase.casefold() in page_norm:
            out.append(phrase)

    whole = _norm(passage)
    if len(whole) <= 2000:
        add(whole)
    paragraphs = [p for p in re.split(r"\n\s*\n", passage) if p.strip()]
    for paragraph in sorted(paragraphs, key=len, reverse=True):
        if len(paragraph) <= 2000:
            add(paragraph)
    sentences = [s for s in re.split(r"(?<=[.!?:;])\s+|\n", passage) if len(s.split()) >= 4]
    for sentence in sorted(sentences, key=len, reverse=True):
        words = sentence.split()
        add(" ".join(words[:40]))
    for sentence in sentences:
        words = sentence.split()
        add(" ".join(words[:10]))
        add(" ".join(words[-8:]))
    passage_norm = whole.casefold()
    lines = {_norm(line) for line in page_text.splitlines()}
    for line in sorted(lines, key=len, reverse=True):
        if line.casefold() in passage_norm:
            add(line)
    return out[:limit]


# --- the worker that loads a non-PDF file's text ------------------------------------------


class _JobSignals(QObject):
    done = Signal(int, str, object, str)  # request, text, Located | None, error


class _TextJob(QRunnable):
    def __init__(
        self, request: int, path: str, source: dict, signals: _JobSignals, cached_text: str | None
    ):
        super().__init__()
        self.setAutoDelete(False)
        self.request, self.path, self.source, self.signals = request, path, source, signals
        self.cached_text = cached_text
        self.key: tuple | None = None

    def run(self) -> None:
        try:
            text = self.cached_text
            if text is None:
                from app.core.documents.formats import load
                from app.core.documents.base import document_text

                text = document_text(load(self.path).blocks)
            located = locate_passage(
                text,
                self.source.get("text") or "",
                self.source.get("char_start"),
                self.source.get("char_end"),
            )
            self.signals.done.emit(self.request, text, located, "")
        except Exception as exc:  # noqa: BLE001 - any failure is shown inline, never raised
            log.warning("viewer: could not load %s: %s", self.path, exc)
            self.signals.done.emit(self.request, "", None, str(exc) or type(exc).__name__)


# --- the widget ---------------------------------------------------------------------------


def _page_label(source: dict) -> str:
    return page_label(source.get("page"), source.get("page_end"))


def _section_label(section) -> str:
    if isinstance(section, list | tuple):
        return " › ".join(str(s) for s in section if s)
    return str(section or "")


def reveal_in_folder(path: str) -> None:
    """Show a file in the system's file manager, selected where the platform allows it."""
    p = Path(path)
    if sys.platform == "win32" and p.exists():
        QProcess.startDetached("explorer", [f"/select,{os.path.normpath(p)}"])
    elif sys.platform == "darwin" and p.exists():
        QProcess.startDetached("open", ["-R", str(p)])
    else:
        folder = p if p.is_dir() else p.parent
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))


class SourceViewer(QWidget):
    """Shows one source at a time: a PDF at its page, or a text at its passage."""

    #: Emitted when a source has been shown: path, mode ("pdf", "text", "message"),
    #: page (1-based or None), found (the passage was located), changed (file changed).
    source_shown = Signal(dict)
    #: A short title for a tab or window: the file name and page.
    title_changed = Signal(str)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setAccessibleName("Source viewer")
        self._source: dict = {}
        self._path = ""
        self._request = 0
        self._hit: tuple[int, int, QRectF] | None = None  # request, page, first rect
        self._pdf_key: tuple | None = None
        self._text_cache: tuple[tuple, str] | None = None  # (path, mtime, size) -> text
        self._jobs: dict[int, _TextJob] = {}
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._signals = _JobSignals()
        self._signals.done.connect(self._on_text_loaded)
        self.mode = "empty"

        self._build_toolbar()

        self.header = QLabel()
        self.header.setTextFormat(Qt.TextFormat.PlainText)
        self.header.setAccessibleName("Source")
        self.header.setContentsMargins(6, 2, 6, 2)
        self.header.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        self.notice = QLabel()
        self.notice.setAccessibleName("Notice")
        self.notice.setTextFormat(Qt.TextFormat.PlainText)
        self.notice.setWordWrap(True)
        self.notice.setContentsMargins(8, 4, 8, 4)
        self.notice.setAutoFillBackground(True)
        self.notice.setBackgroundRole(QPalette.ColorRole.ToolTipBase)
        self.notice.setForegroundRole(QPalette.ColorRole.ToolTipText)
        self.notice.hide()

        self.pdf_document = QPdfDocument(self)
        self.search_model = QPdfSearchModel(self)
        self.search_model.setDocument(self.pdf_document)
        self.pdf_view = QPdfView(self)
        self.pdf_view.setAccessibleName("PDF page view")
        self.pdf_view.setDocument(self.pdf_document)
        self.pdf_view.setSearchModel(self.search_model)
        self.pdf_view.setPageMode(QPdfView.PageMode.MultiPage)
        self.pdf_view.setZoomMode(QPdfView.ZoomMode.FitToWidth)
        self.pdf_view.pageNavigator().currentPageChanged.connect(self._sync_page_box)
        # Until the user moves, the cited place is re-applied whenever the view's size
        # changes: QPdfView lays pages out again on resize (first show, dock, splitter) and
        # would otherwise leave the passage off screen.
        self._pending_jump: tuple[int, QPointF] | None = None
        self.pdf_view.viewport().installEventFilter(self)
        self.pdf_view.verticalScrollBar().sliderPressed.connect(self._user_moved)

        self.text_view = QPlainTextEdit(self)
        self.text_view.setAccessibleName("Document text")
        self.text_view.setReadOnly(True)
        self.text_view.setTextInteractionFlags(
            Qt.TextInteractionFlag.TextSelectableByMouse
            | Qt.TextInteractionFlag.TextSelectableByKeyboard
        )
        self.text_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)

        self.message = QLabel()
        self.message.setAccessibleName("Message")
        self.message.setTextFormat(Qt.TextFormat.PlainText)
        self.message.setWordWrap(True)
        self.message.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.setContentsMargins(24, 24, 24, 24)
        self.message.setText("Click a source under an answer to see it here.")

        self.stack = QStackedWidget(self)
        for w in (self.message, self.pdf_view, self.text_view):
            self.stack.addWidget(w)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.toolbar)
        layout.addWidget(self.header)
        layout.addWidget(self.notice)
        layout.addWidget(self.stack, 1)
        self._set_mode("empty")

    # -- toolbar --------------------------------------------------------------------------

    def _build_toolbar(self) -> None:
        tb = self.toolbar = QToolBar("Viewer", self)
        tb.setAccessibleName("Viewer tools")
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)

        def action(text, tip, slot, shortcut=None, checkable=False) -> QAction:
            a = QAction(text, self)
            a.setToolTip(tip)
            a.setCheckable(checkable)
            a.setChecked(checkable)  # the checkable ones start on: fit width, continuous
            if shortcut:
                a.setShortcut(shortcut)
                a.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
            (a.toggled if checkable else a.triggered).connect(slot)
            tb.addAction(a)
            tb.widgetForAction(a).setAccessibleName(tip)
            return a

        self.prev_action = action(
            "‹ Prev",
            "Previous page",
            lambda: self._step_page(-1),
            QKeySequence(Qt.Key.Key_PageUp | Qt.KeyboardModifier.AltModifier),
        )
        self.page_box = QSpinBox(self)
        self.page_box.setAccessibleName("Page number")
        self.page_box.setPrefix("p. ")
        self.page_box.setKeyboardTracking(False)
        self.page_box.setRange(1, 1)
        self.page_box.valueChanged.connect(self._page_box_changed)
        self.page_box_action = tb.addWidget(self.page_box)
        self.next_action = action(
            "Next ›",
            "Next page",
            lambda: self._step_page(1),
            QKeySequence(Qt.Key.Key_PageDown | Qt.KeyboardModifier.AltModifier),
        )
        self.pdf_separator = tb.addSeparator()
        self.zoom_out_action = action(
            "−", "Zoom out", lambda: self._zoom(1 / ZOOM_STEP), QKeySequence.StandardKey.ZoomOut
        )
        self.zoom_in_action = action(
            "+", "Zoom in", lambda: self._zoom(ZOOM_STEP), QKeySequence.StandardKey.ZoomIn
        )
        self.fit_width_action = action(
            "Fit width", "Fit page width", self._fit_width, checkable=True
        )
        self.continuous_action = action(
            "Continuous", "Continuous scrolling (all pages)", self._set_continuous, checkable=True
        )
        self.pdf_actions = [
            self.prev_action,
            self.page_box_action,
            self.next_action,
            self.pdf_separator,
            self.zoom_out_action,
            self.zoom_in_action,
            self.fit_width_action,
            self.continuous_action,
        ]
        spacer = QWidget(self)
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        tb.addWidget(spacer)
        self.open_action = action(
            "Open in default app", "Open in the default app", self.open_externally
        )
        self.folder_action = action("Show in folder", "Show in folder", self.show_in_folder)

    def eventFilter(self, watched, event) -> bool:
        kind = event.type()
        if self._pending_jump is not None:
            if kind in (QEvent.Type.Resize, QEvent.Type.Show):
                QTimer.singleShot(0, self._apply_pending_jump)
            elif kind in (QEvent.Type.Wheel, QEvent.Type.MouseButtonPress, QEvent.Type.KeyPress):
                self._user_moved()
        return super().eventFilter(watched, event)

    def _user_moved(self) -> None:
        self._pending_jump = None

    def _apply_pending_jump(self) -> None:
        if self._pending_jump is not None and self.mode == "pdf":
            self._go_to(*self._pending_jump)

    def _go_to(self, page: int, location: QPointF) -> None:
        """Show `page` with the point `location` (in PDF points) near the top of the view.

        QPdfView scrolls to the top of a page only when the current page changes (and
        ignores the location), so the page is left and re-entered to get its top, and the
        offset inside the page is scrolled here."""
        nav = self.pdf_view.pageNavigator()
        bar = self.pdf_view.verticalScrollBar()
        count = self.pdf_document.pageCount()
        if count > 1 and nav.currentPage() == page:
            nav.jump(page - 1 if page > 0 else page + 1, QPointF(), nav.currentZoom())
        elif count <= 1:
            bar.setValue(0)
        nav.jump(page, location, nav.currentZoom())
        if location.y() > 0:
            px_per_pt = self._effective_zoom() * self.pdf_view.logicalDpiY() / 72.0
            bar.setValue(bar.value() + round(location.y() * px_per_pt))

    def open_externally(self) -> None:
        """The default app, only for a document type it shows (`desktop_may_open`); a script
        or program is never handed to the desktop, which would run it: its folder opens."""
        if not self._path:
            return
        if desktop_may_open(self._path):
            QDesktopServices.openUrl(QUrl.fromLocalFile(self._path))
        else:
            self._show_notice(not_opened_reason(self._path))
            reveal_in_folder(self._path)

    def _update_open_action(self, exists: bool) -> None:
        safe = exists and desktop_may_open(self._path)
        self.open_action.setEnabled(safe)
        self.open_action.setToolTip(
            "Open in the default app" if safe or not exists else not_opened_reason(self._path))

    def show_in_folder(self) -> None:
        if self._path:
            reveal_in_folder(self._path)

    def _step_page(self, delta: int) -> None:
        self._user_moved()
        nav = self.pdf_view.pageNavigator()
        target = nav.currentPage() + delta
        if 0 <= target < self.pdf_document.pageCount():
            nav.jump(target, QPointF(), nav.currentZoom())

    def _page_box_changed(self, value: int) -> None:
        nav = self.pdf_view.pageNavigator()
        if self.mode == "pdf" and value - 1 != nav.currentPage():
            self._user_moved()
            nav.jump(value - 1, QPointF(), nav.currentZoom())

    def _sync_page_box(self, page: int) -> None:
        self.page_box.blockSignals(True)
        self.page_box.setValue(page + 1)
        self.page_box.blockSignals(False)
        self.prev_action.setEnabled(page > 0)
        self.next_action.setEnabled(page + 1 < self.pdf_document.pageCount())

    def _effective_zoom(self) -> float:
        view = self.pdf_view
        if view.zoomMode() == QPdfView.ZoomMode.Custom:
            return view.zoomFactor()
        page = max(0, view.pageNavigator().currentPage())
        size = self.pdf_document.pagePointSize(page)
        if size.width() <= 0:
            return 1.0
        m = view.documentMargins()
        px_per_pt = view.logicalDpiX() / 72.0
        width = view.viewport().width() - m.left() - m.right()
        return max(MIN_ZOOM, width / (size.width() * px_per_pt))

    def _zoom(self, factor: float) -> None:
        self._user_moved()
        zoom = min(MAX_ZOOM, max(MIN_ZOOM, self._effective_zoom() * factor))
        self.fit_width_action.blockSignals(True)
        self.fit_width_action.setChecked(False)
        self.fit_width_action.blockSignals(False)
        self.pdf_view.setZoomMode(QPdfView.ZoomMode.Custom)
        self.pdf_view.setZoomFactor(zoom)

    def _fit_width(self, on: bool) -> None:
        self._user_moved()
        if on:
            self.pdf_view.setZoomMode(QPdfView.ZoomMode.FitToWidth)
        else:
            zoom = self._effective_zoom()
            self.pdf_view.setZoomMode(QPdfView.ZoomMode.Custom)
            self.pdf_view.setZoomFactor(zoom)

    def _set_continuous(self, on: bool) -> None:
        self._user_moved()
        nav = self.pdf_view.pageNavigator()
        page = nav.currentPage()
        self.pdf_view.setPageMode(
            QPdfView.PageMode.MultiPage if on else QPdfView.PageMode.SinglePage
        )
        nav.jump(max(0, page), QPointF(), nav.currentZoom())

    # -- showing a source -----------------------------------------------------------------

    def current_source(self) -> dict:
        return dict(self._source)

    def current_path(self) -> str:
        return self._path

    def notice_text(self) -> str:
        return self.notice.text() if not self.notice.isHidden() else ""

    def clear(self) -> None:
        self._request += 1
        self._source, self._path = {}, ""
        self.message.setText("Click a source under an answer to see it here.")
        self.header.clear()
        self.notice.hide()
        self._set_mode("empty")

    def show_source(self, source: dict) -> None:
        """Open a source: a dict with path, page, page_end, text, char_start, char_end,
        section (as `chat.source_dict` and the search results give them)."""
        self._request += 1
        self._pending_jump = None
        self._pool.clear()  # drop queued loads nobody will see
        self._source = dict(source)
        self._path = path = str(source.get("path") or "")
        name = Path(path).name or path
        details = [d for d in (_page_label(source), _section_label(source.get("section"))) if d]
        self.header.setText(" · ".join([name, *details]))
        self.header.setToolTip(path)
        self.notice.hide()
        title = f"{name} ({_page_label(source)})" if source.get("page") else name
        self.title_changed.emit(title)

        p = Path(path)
        if not path or not p.is_file():
            self._show_message(
                f"This file is not there any more:\n\n{path or '(no path)'}\n\n"
                "It may have been moved, renamed or deleted since it was indexed. "
                "Re-index the library to update its sources.",
                exists=False,
            )
            return
        if p.suffix.lower() == ".pdf":
            self._show_pdf(p, source)
        else:
            self._show_text(p, source)

    def _set_mode(self, mode: str) -> None:
        self.mode = mode
        pdf = mode == "pdf"
        for a in self.pdf_actions:
            a.setVisible(pdf)
        has_file = mode in ("pdf", "text") or (mode == "loading")
        self._update_open_action(has_file)
        self.folder_action.setEnabled(bool(self._path) and Path(self._path).parent.is_dir())
        self.stack.setCurrentWidget(
            self.pdf_view
            if pdf
            else self.text_view
            if mode in ("text", "loading")
            else self.message
        )

    def _show_message(self, text: str, *, exists: bool = True) -> None:
        self.message.setText(text)
        self._set_mode("message")
        self._update_open_action(exists)
        self.source_shown.emit(
            {
                "path": self._path,
                "mode": "message",
                "page": self._source.get("page"),
                "found": False,
                "changed": False,
                "message": text,
            }
        )

    def _show_notice(self, text: str) -> None:
        self.notice.setText(f"⚠  {text}")
        self.notice.show()

    # -- PDFs -----------------------------------------------------------------------------

    def _show_pdf(self, path: Path, source: dict) -> None:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        doc = self.pdf_document
        if key != self._pdf_key or doc.status() != QPdfDocument.Status.Ready:
            self._pdf_key = None
            self.search_model.setSearchString("")
            self.pdf_view.setCurrentSearchResultIndex(-1)
            doc.close()
            error = doc.load(str(path))
            if error != QPdfDocument.Error.None_:
                reasons = {
                    QPdfDocument.Error.IncorrectPassword: "it is protected by a password",
                    QPdfDocument.Error.UnsupportedSecurityScheme: "it uses an unsupported security scheme",
                    QPdfDocument.Error.InvalidFileFormat: "it is damaged or not a PDF",
                    QPdfDocument.Error.FileNotFound: "it could not be found",
                    QPdfDocument.Error.PermissionDenied: "permission was denied",
                }
                why = reasons.get(error, "of an unknown error")
                self._show_message(
                    f"The built-in viewer cannot show this PDF because {why}:\n\n{path}\n\n"
                    "Use “Open in default app”."
                )
                return
            self._pdf_key = key
        count = doc.pageCount()
        self.page_box.setRange(1, max(1, count))
        self.page_box.setSuffix(f" / {count}")
        self._set_mode("pdf")

        page = source.get("page")
        index = min(max(int(page) - 1, 0), count - 1) if isinstance(page, int) and count else 0
        hit = self._highlight(source, index)
        location = QPointF()
        if hit is not None:
            hit_page, rect = hit
            index = hit_page
            location = QPointF(0, max(0.0, rect.top() - 48))
        self._go_to(index, location)
        self._pending_jump = (index, location)
        self._sync_page_box(index)
        if page and hit is None:
            self._show_notice(
                "The passage was not found on this page; the file may have "
                "changed since it was indexed"
            )
        self.source_shown.emit(
            {
                "path": str(path),
                "mode": "pdf",
                "page": index + 1,
                "found": hit is not None,
                "changed": False,
            }
        )

    def _highlight(self, source: dict, index: int) -> tuple[int, QRectF] | None:
        """Search for the passage on its pages; the search model paints the hits."""
        model, doc = self.search_model, self.pdf_document
        self.pdf_view.setCurrentSearchResultIndex(-1)
        self._hit = None
        passage = source.get("text") or ""
        last = source.get("page_end")
        last = min(int(last) - 1, doc.pageCount() - 1) if isinstance(last, int) else index
        for page in range(index, max(index, last) + 1):
            page_text = doc.getAllText(page).text()
            for phrase in pdf_phrases(passage, page_text):
                model.setSearchString(phrase)
                results = model.resultsOnPage(page)
                if results and results[0].rectangles():
                    rect = results[0].rectangles()[0]
                    self._hit = (self._request, page, rect)
                    QTimer.singleShot(0, lambda r=self._request: self._select_hit(r, 0))
                    return page, rect
        model.setSearchString("")
        return None

    def _select_hit(self, request: int, next_page: int) -> None:
        """Make the hit the view's current search result (drawn with a frame).

        The model counts results in page order over the pages searched so far, so the pages
        before the hit are searched first, a few per event-loop turn for a long document."""
        if self._hit is None or self._hit[0] != request or request != self._request:
            return
        _, page, rect = self._hit
        model = self.search_model
        stop = min(page, next_page + 24)
        for p in range(next_page, stop):
            model.resultsOnPage(p)
        if stop < page:
            QTimer.singleShot(0, lambda: self._select_hit(request, stop))
            return
        guess = sum(len(model.resultsOnPage(p)) for p in range(page))
        candidates = [guess] + [i for i in range(model.count()) if i != guess]
        for i in candidates:
            link = model.resultAtIndex(i)
            if link.page() == page and link.rectangles() and link.rectangles()[0] == rect:
                self.pdf_view.setCurrentSearchResultIndex(i)
                return

    # -- other files ----------------------------------------------------------------------

    def _show_text(self, path: Path, source: dict) -> None:
        st = path.stat()
        key = (str(path), st.st_mtime_ns, st.st_size)
        cached = self._text_cache[1] if self._text_cache and self._text_cache[0] == key else None
        request = self._request
        if cached is None:
            self.text_view.setPlainText("")
            self.text_view.setPlaceholderText(f"Loading {path.name}…")
            self._set_mode("loading")
        job = _TextJob(request, str(path), source, self._signals, cached)
        job.key = key
        self._jobs[request] = job
        self._pool.start(job)

    def _on_text_loaded(self, request: int, text: str, located, error: str) -> None:
        job = self._jobs.pop(request, None)
        if request != self._request:
            return
        path = self._path
        if located is None:
            self._show_message(f"Folio could not read this file:\n\n{path}\n\n{error}")
            return
        if job is None or job.cached_text is None or self.mode != "text":
            if job is not None:
                self._text_cache = (job.key, text)
            self.text_view.setPlainText(text)
        self._set_mode("text")
        self._select_passage(located)
        if located.changed:
            self._show_notice(CHANGED_NOTICE if located.found else NOT_FOUND_NOTICE)
        self.source_shown.emit(
            {
                "path": path,
                "mode": "text",
                "page": self._source.get("page"),
                "found": located.found,
                "changed": located.changed,
            }
        )

    def _select_passage(self, located: Located) -> None:
        view = self.text_view
        if not located.found:
            view.setExtraSelections([])
            view.moveCursor(QTextCursor.MoveOperation.Start)
            return
        cursor = QTextCursor(view.document())
        cursor.setPosition(located.qt_end)
        view.setTextCursor(cursor)
        view.ensureCursorVisible()  # bring the end into view first, then the start
        cursor.setPosition(located.qt_start)
        cursor.setPosition(located.qt_end, QTextCursor.MoveMode.KeepAnchor)
        view.setTextCursor(cursor)
        # A selection fades when the view loses focus; an extra selection keeps it visible.
        mark = QTextEdit.ExtraSelection()
        mark.cursor = QTextCursor(cursor)
        pal = view.palette()
        mark.format.setBackground(
            pal.color(QPalette.ColorGroup.Active, QPalette.ColorRole.Highlight)
        )
        mark.format.setForeground(
            pal.color(QPalette.ColorGroup.Active, QPalette.ColorRole.HighlightedText)
        )
        view.setExtraSelections([mark])
        top = QTextCursor(cursor)
        top.setPosition(located.qt_start)
        view.setTextCursor(top)
        view.ensureCursorVisible()
        view.setTextCursor(cursor)

    def selected_passage(self) -> str:
        """The text selected in the text view, with Qt's paragraph separators as newlines."""
        return self.text_view.textCursor().selectedText().replace("\u2029", "\n")

    def wait_for_workers(self, msecs: int = 5000) -> bool:
        return self._pool.waitForDone(msecs)


class SourceViewerWindow(QMainWindow):
    """A stand-alone window around a SourceViewer (the main window may embed one instead)."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = SourceViewer(self)
        self.setCentralWidget(self.viewer)
        self.setWindowTitle("Source — Folio")
        self.viewer.title_changed.connect(lambda t: self.setWindowTitle(f"{t} — Folio"))
        self.resize(900, 1000)

    def show_source(self, source: dict) -> None:
        self.viewer.show_source(source)
        self.show()
        self.raise_()
