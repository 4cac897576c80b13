"""Watched folders in the window: the File menu's "Watched folders" list, where each folder is
a checkable "watch this folder" toggle, and "Watch a folder…" to add one. The list lives in
settings.json (`watched_folders`) and is resumed at start: each folder is rescanned (what
changed while Folio was closed is found by content hash) and then watched.

All file-system work runs on the watcher's own threads (app/core/index/watch.py); a burst of
events becomes one batch there, and each batch reaches the GUI as one `batch_applied` signal,
so the window never handles events one by one.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QFileDialog, QMenu, QWidget

log = logging.getLogger(__name__)


class WatchedFolders(QObject):
    batch_applied = Signal(object)  # WatchBatch, once per batch that changed something
    failed = Signal(str)  # why watching could not start (shown in the status bar)

    def __init__(self, folio, app_settings, parent: QWidget | None = None):
        super().__init__(parent)
        self.folio = folio
        self.app_settings = app_settings  # the window's AppSettings; the list is saved in it
        self.watcher = None
        self.menu = QMenu("Watched folders", parent)
        self.menu.setAccessibleName("Watched folders")
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._rebuild_menu()

    @property
    def folders(self) -> list[str]:
        return list(self.app_settings.watched_folders)

    # -- the menu ------------------------------------------------------------------------

    def _rebuild_menu(self) -> None:
        self.menu.clear()
        self.menu.addAction("Watch a folder…", self.choose_folder)
        if self.folders:
            self.menu.addSeparator()
        for folder in self.folders:
            act = self.menu.addAction(folder)
            act.setCheckable(True)
            act.setChecked(True)
            act.setToolTip("Watched: changes in this folder reach the library. Uncheck to stop.")
            act.toggled.connect(lambda on, f=folder: on or self.set_watched(f, False))

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.parent(), "Watch a folder")
        if folder:
            self.set_watched(folder, True)

    # -- watching -------------------------------------------------------------------------

    def set_watched(self, folder: str | Path, on: bool) -> None:
        """Watch a folder (it is added to the library at once) or stop watching it (its
        documents stay). The list is saved to settings.json."""
        path = str(Path(folder).expanduser().resolve())
        folders = [f for f in self.folders if f != path]
        if on:
            folders.append(path)
        self.app_settings.watched_folders = folders
        try:
            self.app_settings.save()
        except OSError as exc:
            log.warning("could not save the watched folders: %s", exc)
        self._rebuild_menu()
        if self.watcher is None:
            if on:
                self.start()
            return
        if on:
            self._in_background(lambda: self._add(path))
        else:
            self.watcher.remove(path)

    def _add(self, path: str) -> None:
        try:
            self.watcher.add(path)
        except ValueError as exc:
            self.failed.emit(str(exc))
            return
        self._emit(self.watcher.apply([Path(path)]))

    def start(self) -> None:
        """Rescan every watched folder and watch them, all off the GUI thread."""
        if self._closed or self.watcher is not None or not self.folders:
            return
        from app.core.index.ingest import IngestOptions
        from app.core.index.watch import FolderWatcher

        s = self.app_settings
        options = IngestOptions(splitter=s.splitter_config(), time_limit=s.file_time_limit)
        folders = [f for f in self.folders if Path(f).is_dir()]
        for missing in sorted(set(self.folders) - set(folders)):
            self.failed.emit(f"{missing}: the watched folder is not there; not watching it")
        self.watcher = watcher = FolderWatcher(None, (), options=options, on_batch=self._emit,
                                               write_lock=self.folio.write_lock)

        def run():
            try:
                watcher.lib = self.folio.library  # opens it, off the GUI thread
                for folder in folders:
                    watcher.add(folder)
                watcher.start()  # before the rescan: nothing saved meanwhile is missed
                self._emit(watcher.rescan())
            except Exception as exc:  # noqa: BLE001 - reported, the window goes on
                log.exception("watched folders could not start")
                self.failed.emit(f"Watched folders are not watched: {exc}")

        self._in_background(run)

    def _emit(self, batch) -> None:
        if not batch.empty() and not self._closed:
            self.batch_applied.emit(batch)

    def _in_background(self, fn) -> None:
        thread = threading.Thread(target=fn, name="folio-watch-start", daemon=True)
        self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()

    def stop(self) -> None:
        """Stop watching (the window closes); waits for a batch being applied."""
        self._closed = True
        for thread in self._threads:
            thread.join(timeout=60)
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None


def describe(batch) -> str:
    """One status-bar line for a batch."""
    counts = ((batch.indexed, "indexed"), (batch.moved, "renamed"), (batch.removed, "removed"))
    parts = [f"{len(items)} {label}" for items, label in counts if items]
    if batch.failed:
        path, reason = batch.failed[0]
        more = f" (and {len(batch.failed) - 1} more)" if len(batch.failed) > 1 else ""
        parts.append(f"could not index {Path(path).name}: {reason}{more}")
    return "Watched folders: " + ", ".join(parts)
