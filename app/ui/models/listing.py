"""The model manager's list: every GGUF in the models folder with what its header says, the
catalog beside it, the details of the selected model, and the actions on a model.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QBrush, QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QStyle,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core.base.units import human_bytes
from app.ui.models.common import (
    CAT_BUTTON,
    CAT_FITS,
    COL_ARCH,
    COL_CHATS,
    COL_CTX,
    COL_LICENSE,
    COL_MEMORY,
    COL_NAME,
    COL_NOTES,
    COL_PARAMS,
    COL_QUANT,
    COL_SIZE,
    COL_STATE,
    COL_TEMPLATE,
    COLUMNS,
    NAME_ROLE,
    WARN_COLOR,
    Listing,
    catalog_fit,
    ask_copy_or_link,
    escape_html,
    file_size,
    free_ram,
    link_target,
    local_paths,
    memory_text,
    memory_tooltip,
    params_label,
    partial_fields,
    same_file,
    without_name,
)

log = logging.getLogger(__name__)


class ListPart:
    """The manager's table of installed models: listing, selection, details, and the actions
    on a model (load, default, remove, add by file or by drop)."""

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
            out = Listing(free_ram=free_ram())
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
            f = partial_fields(p)
            if not f["url"]:
                continue
            row = self.downloads.get(f["url"])
            if row is None:
                row = self._download_row(f["url"], f["filename"], f["sha256"])
            elif row.state != "paused":  # running here: its own events say how far it is
                continue
            # A paused row shows what the latest listing found on disk (the first listing
            # may have run while the partial file was still being written).
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
            elif loaded is not None and same_file(loaded, e.path):
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
                notes.append(without_name(e.error, e.name))
            elif e.is_starter:
                notes.append("Starter model (comes with Folio)")
            if e.path.is_symlink():
                notes.append(f"Link to {link_target(e.path)}")
            item.setText(COL_NOTES, " · ".join(notes))
            item.setToolTip(COL_NOTES, "\n".join(notes))
            info = e.info
            if info is None:
                item.setText(COL_ARCH, "–")
                item.setToolTip(COL_ARCH, e.error or "")
                item.setForeground(COL_NOTES, warn)
                item.setIcon(COL_NAME, self.style().standardIcon(
                    QStyle.StandardPixmap.SP_MessageBoxWarning))
                size = file_size(e.path)
                item.setText(COL_SIZE, human_bytes(size))
            else:
                item.setText(COL_ARCH, info.architecture or "–")
                item.setText(COL_PARAMS, params_label(info))
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
                item.setText(COL_MEMORY, memory_text(est))
                item.setToolTip(COL_MEMORY, memory_tooltip(est, ctx))
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
                             and same_file(loaded, e.path)), None) or next(
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
            text, color, fit_tip = catalog_fit(c.ram_bytes, listing.free_ram)
            item.setText(CAT_FITS, text)
            if color is not None:
                item.setForeground(CAT_FITS, QBrush(color))
                item.setToolTip(CAT_FITS, fit_tip)
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
        is_loaded = e is not None and loaded is not None and same_file(loaded, e.path)
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
                ("Parameters", params_label(info)
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
            f"<tr><td style='padding-right:12px'><b>{escape_html(k)}</b></td><td"
            + (f" style='color:{WARN_COLOR.name()}'" if k == "Problem" else "")
            + f">{escape_html(v)}</td></tr>" for k, v in rows) + "</table>"
        self.details.setHtml(html)
        self.details_box.setTitle(f"Details: {e.name}")

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
        in_use = loaded is not None and same_file(loaded, e.path)
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
        in_use = e is not None and loaded is not None and same_file(loaded, e.path)
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
        # A listing the folder watcher started may have shown it already: select it now, and
        # again after the refresh (which keeps the selection).
        self.select(self._select_after_refresh)
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
        if local_paths(event.mimeData()):
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:
        if local_paths(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = local_paths(event.mimeData())
        if paths:
            event.acceptProposedAction()
            self.add(paths)
