"""Getting started: a short guide the first time Folio opens on an empty library.

Two steps, each skippable: add documents (choose files or a folder, or drop them on the
window), then choose a model. The second step says plainly that the starter model is tiny
and offers the catalog's instruct models with their download size and whether they fit in
the memory free now. Nothing is fetched unless the user asks; a download that cannot start
(no network) says so, and Folio goes on with the starter model.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QStackedWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)
from PySide6.QtGui import QBrush

from app.core.base.units import human_bytes
from app.ui.models.common import catalog_fit, escape_html, free_ram

DONE_KEY = "guide/done"  # QSettings: the guide was finished or skipped once
COL_NAME, COL_SIZE, COL_MEMORY, COL_FITS = range(4)


def should_show(settings, documents: int) -> bool:
    """The guide opens by itself once: on an empty library, until finished or skipped."""
    return documents == 0 and str(settings.value(DONE_KEY, "false")).lower() != "true"


def _page(intro: str) -> tuple[QWidget, QVBoxLayout]:
    """A step's page, its heading and explanation at the top."""
    page = QWidget()
    layout = QVBoxLayout(page)
    label = QLabel(intro)
    label.setWordWrap(True)
    layout.addWidget(label)
    return page, layout


class FirstRunGuide(QDialog):
    """The two steps. `library` is the window's LibraryPanel (its choose_files/choose_folder
    and listing), `models` the ModelPanel whose manager downloads and loads."""

    download_ended = Signal(str, bool, str)  # url, ok, message

    def __init__(self, library, models, settings, *, catalog=None, parent=None):
        super().__init__(parent)
        self.library = library
        self.models = models
        self.settings = settings
        self.setWindowTitle("Getting started with Folio")
        self.setAccessibleName("Getting started")
        self.setModal(False)  # documents can be dropped on the window behind it
        self.resize(640, 460)
        self.url: str | None = None  # the download this guide started
        self.downloaded: str | None = None  # its model's name, once done
        self._listening = False
        catalog_error = ""
        if catalog is None:
            from app.core.models.catalog import load_catalog

            try:
                catalog = load_catalog()
            except Exception as exc:  # a damaged catalog: the guide still helps with the rest
                catalog = []
                catalog_error = str(exc)
        self.catalog = list(catalog)
        self.catalog_error = catalog_error

        layout = QVBoxLayout(self)
        self.step_label = QLabel()
        self.step_label.setAccessibleName("Step")
        layout.addWidget(self.step_label)
        self.pages = QStackedWidget()
        self.pages.addWidget(self._documents_page())
        self.pages.addWidget(self._model_page())
        layout.addWidget(self.pages, 1)

        row = QHBoxLayout()
        self.skip_btn = QPushButton("Skip the guide")
        self.skip_btn.setAccessibleName("Skip the guide")
        self.skip_btn.clicked.connect(self.finish)
        self.back_btn = QPushButton("Back")
        self.back_btn.clicked.connect(lambda: self.show_step(0))
        self.next_btn = QPushButton("Next")
        self.next_btn.setDefault(True)
        self.next_btn.clicked.connect(self._next)
        row.addWidget(self.skip_btn)
        row.addStretch(1)
        row.addWidget(self.back_btn)
        row.addWidget(self.next_btn)
        layout.addLayout(row)
        library.state_changed.connect(self._library_changed)
        self._library_changed()
        self.show_step(0)

    # -- step 1: documents ----------------------------------------------------------------

    def _documents_page(self) -> QWidget:
        page, layout = _page(
            "<h3>Add your documents</h3>"
            "<p>Folio answers from your own documents and cites the page each fact came "
            "from. Nothing leaves this computer.</p>"
            "<p>Drop PDFs, Word files, EPUB, HTML, Markdown or text files on the window, "
            "or choose them:</p>")
        row = QHBoxLayout()
        self.files_btn = QPushButton("Choose files…")
        self.files_btn.setAccessibleName("Choose files to add")
        self.files_btn.clicked.connect(self.library.choose_files)
        self.folder_btn = QPushButton("Choose a folder…")
        self.folder_btn.setAccessibleName("Choose a folder to add")
        self.folder_btn.clicked.connect(self.library.choose_folder)
        row.addWidget(self.files_btn)
        row.addWidget(self.folder_btn)
        row.addStretch(1)
        layout.addLayout(row)
        self.library_state = QLabel()
        self.library_state.setAccessibleName("Documents added")
        self.library_state.setWordWrap(True)
        layout.addWidget(self.library_state)
        layout.addStretch(1)
        return page

    def _library_changed(self) -> None:
        lib = self.library
        docs = len(lib.docs)
        if lib.indexing:
            text = (f"Indexing… {docs} document{'s' * (docs != 1)} so far. You can go on: "
                    "indexing continues in the background.")
        elif docs:
            text = f"✓ {docs} document{'s' * (docs != 1)} in the library."
        else:
            text = "No documents yet. You can also add them later (File > Add files…, Ctrl+O)."
        self.library_state.setText(text)

    # -- step 2: a model ------------------------------------------------------------------

    def _model_page(self) -> QWidget:
        page, layout = _page(
            "<h3>Choose a model</h3>"
            "<p>Folio comes with a <b>starter model</b> (Gemma 3 270M, 253 MB). It is tiny "
            "and runs on any computer, but it is not trained to chat: its answers are weak "
            "and it rarely cites its sources.</p>"
            "<p>A small instruct model answers much better. Each is one download, then "
            "runs offline:</p>")
        self.table = QTreeWidget()
        self.table.setAccessibleName("Models to download")
        self.table.setRootIsDecorated(False)
        self.table.setHeaderLabels(["Model", "Download", "Memory", "Fits here?"])
        hdr = self.table.header()
        hdr.setSectionResizeMode(COL_NAME, QHeaderView.ResizeMode.Stretch)
        for col in (COL_SIZE, COL_MEMORY, COL_FITS):
            hdr.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        hdr.setStretchLastSection(False)
        free = free_ram()
        first_fit = None
        for entry in self.catalog:
            item = QTreeWidgetItem([entry.name, human_bytes(entry.size_bytes),
                                    human_bytes(entry.ram_bytes), ""])
            item.setData(COL_NAME, Qt.ItemDataRole.UserRole, entry.id)
            item.setToolTip(COL_NAME, entry.description)
            text, color, tip = catalog_fit(entry.ram_bytes, free)
            item.setText(COL_FITS, text)
            item.setToolTip(COL_FITS, tip)
            if color is not None:
                item.setForeground(COL_FITS, QBrush(color))
            self.table.addTopLevelItem(item)
            fits = free is None or not entry.ram_bytes or entry.ram_bytes <= free
            if first_fit is None and fits:
                first_fit = item
        if first_fit is not None:  # the catalog lists the smallest first: a safe default
            self.table.setCurrentItem(first_fit)
        self.table.itemSelectionChanged.connect(self._update_download_btn)
        layout.addWidget(self.table, 1)
        self.about = QLabel()
        self.about.setAccessibleName("About the chosen model")
        self.about.setWordWrap(True)
        layout.addWidget(self.about)
        row = QHBoxLayout()
        self.download_btn = QPushButton("Download")
        self.download_btn.setAccessibleName("Download the chosen model")
        self.download_btn.clicked.connect(self.download)
        self.use_btn = QPushButton("Use it")
        self.use_btn.setAccessibleName("Use the downloaded model")
        self.use_btn.clicked.connect(self.use_downloaded)
        self.use_btn.hide()
        row.addWidget(self.download_btn)
        row.addWidget(self.use_btn)
        self.progress = QProgressBar()
        self.progress.setAccessibleName("Model download progress")
        self.progress.setRange(0, 1000)
        self.progress.hide()
        row.addWidget(self.progress, 1)
        row.addStretch(1)
        layout.addLayout(row)
        self.model_state = QLabel(
            "Or keep the starter model for now: Models > Manage models… downloads one "
            "later." if self.catalog else
            f"The model catalog could not be read ({self.catalog_error or 'it is empty'}); "
            "Folio goes on with the starter model.")
        self.model_state.setAccessibleName("Model download status")
        self.model_state.setWordWrap(True)
        layout.addWidget(self.model_state)
        self._update_download_btn()
        return page

    def chosen(self):
        item = self.table.currentItem()
        wanted = item.data(COL_NAME, Qt.ItemDataRole.UserRole) if item is not None else None
        return next((e for e in self.catalog if e.id == wanted), None)

    def _update_download_btn(self) -> None:
        busy = self.url is not None and self.downloaded is None
        entry = self.chosen()
        self.download_btn.setEnabled(entry is not None and not busy)
        self.download_btn.setText(f"Download {entry.name}" if entry else "Download")
        self.about.setText(f"<b>{escape_html(entry.name)}</b>: {escape_html(entry.description)} "
                           f"Licence: {escape_html(entry.license)}." if entry else "")

    def download(self) -> None:
        entry = self.chosen()
        if entry is None:
            return
        view = self.models.manager_view()
        if not self._listening:
            self._listening = True
            view.download_failed.connect(self._failed)
            view.download_finished.connect(self._finished)
        row = view.download(entry.url, sha256=entry.sha256, filename=entry.filename,
                            size_bytes=entry.size_bytes)
        if row is None:
            self._failed(entry.url, "the address is not one Folio downloads from")
            return
        self.url = entry.url
        self.downloaded = None
        self.use_btn.hide()
        self.progress.show()
        self.progress.setRange(0, 0)
        self.model_state.setText(f"Connecting to download {entry.name}…")
        if row.job is not None:
            row.job.yielded.connect(self._progress)
        self._update_download_btn()

    def _progress(self, ev) -> None:
        total = getattr(ev, "total_bytes", None)
        done = getattr(ev, "done_bytes", None)
        if done is None:
            return
        if total:
            self.progress.setRange(0, 1000)
            self.progress.setValue(int(1000 * min(done, total) / total))
            self.model_state.setText(f"Downloading: {human_bytes(done)} of "
                                     f"{human_bytes(total)}. You can close this guide; "
                                     "Models > Manage models… shows the download.")

    def _failed(self, url: str, message: str) -> None:
        if url != self.url:
            return
        self.url = None
        self.progress.hide()
        self.model_state.setText(
            f"The download could not be completed: {message}\n"
            "Folio goes on with the starter model. You can try again later from "
            "Models > Manage models….")
        self._update_download_btn()
        self.download_ended.emit(url, False, message)

    def _finished(self, done) -> None:
        entry = getattr(done, "entry", None)
        if self.url is None or entry is None:
            return
        url, self.url = self.url, None
        self.downloaded = entry.name
        self.progress.hide()
        self.model_state.setText(f"✓ {entry.name} is downloaded. Use it to answer from now "
                                 "on?")
        self.use_btn.show()
        self._update_download_btn()
        self.download_ended.emit(url, True, "")

    def use_downloaded(self) -> None:
        """Make the downloaded model the default and load it."""
        name = self.downloaded
        if not name:
            return
        view = self.models.manager_view()
        view.set_default(name)
        self.models.load(name)
        self.model_state.setText(f"Loading {name}… New chats answer with it.")
        self.use_btn.hide()

    # -- navigation -----------------------------------------------------------------------

    def show_step(self, step: int) -> None:
        self.pages.setCurrentIndex(step)
        self.step_label.setText(f"Step {step + 1} of 2")
        self.back_btn.setVisible(step > 0)
        self.next_btn.setText("Next" if step == 0 else "Done")
        self.next_btn.setAccessibleName("Next step" if step == 0 else "Finish the guide")

    def _next(self) -> None:
        if self.pages.currentIndex() == 0:
            self.show_step(1)
        else:
            self.finish()

    def finish(self) -> None:
        self.close()

    def closeEvent(self, event) -> None:
        """Done, skipped or closed: the guide does not open by itself again (View >
        Getting started… opens it)."""
        self.settings.setValue(DONE_KEY, True)
        self.settings.sync()
        super().closeEvent(event)
