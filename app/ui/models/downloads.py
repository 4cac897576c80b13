"""The model manager's downloads: one `DownloadRow` per download (progress, pause, resume,
cancel) and `DownloadsPart`, the manager's side of it. Downloads run as `Job`s in a small pool
of their own: one that waits on the network for minutes must not hold up the library's reads.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QTreeWidget,
    QVBoxLayout,
    QWidget,
)

from app.core.base.units import human_bytes, human_duration
from app.core.models.catalog import catalog_size_tolerance
from app.ui.models.common import CAT_BUTTON, CATALOG_COLUMNS, WARN_COLOR, UrlDialog, escape_html
from app.ui.workers import Job


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
        self.title = QLabel(f"<b>{escape_html(filename)}</b>")
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


class DownloadsPart:
    """The manager's downloads: the catalog's buttons, the rows, pause, resume, cancel."""

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
