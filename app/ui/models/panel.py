"""`ModelPanel`, the narrow "Model" tab on the right of the window: what is loaded and where it
runs, the current chat's model and generation settings.

Loads and unloads share the window's one-thread LLM pool, so they queue behind an answer
instead of pulling the model out from under it.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.core.models.fit import OVERSIZE_HINT
from app.ui.models.common import DEFAULTS, Listing, local_paths, model_stem, same_file
from app.ui.models.manager import ModelManagerView
from app.ui.widgets import ElidingComboBox
from app.ui.workers import Job

log = logging.getLogger(__name__)

PROVIDER = "provider:"  # a chat's model that is a remote provider (app/core/service.py)


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
        self.ask_key = None  # (provider name) -> its API key, typed for this session
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
        gform.addRow("Model:", self.chat_model)  # until the window moves it (take_chat_model)
        self._gform = gform
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

    def use_provider(self, name: str) -> None:
        """Answer with the remote provider `name` (this chat chose it). Without a keyring, its
        key is asked for once this session (`ask_key`, the window's dialog)."""
        if self.workers is None or self.loading_name is not None:
            return
        from app.core.llm import remote

        if not remote.keyring_available() and remote.get_key(name) is None \
                and self.ask_key is not None:
            remote.session_key(name, self.ask_key(name))
        folio = self.folio
        self.loading_name = name
        self.show_loading(name)

        def work(job):
            return folio.use_chat_provider(name)

        self._load_job = job = self.workers.submit(work, pool="llm", name=f"use {name}")
        job.finished.connect(self._provider_ready)
        job.failed.connect(lambda m, name=name, job=job: self._load_error(name, m, job))

    def _provider_ready(self, info) -> None:
        self.loading_name = None
        self._loaded(info)

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

    def take_chat_model(self) -> QComboBox:
        """This chat's model list, taken out of the tab for the window to show above the
        conversation; the tab keeps the chat's generation settings."""
        row = self._gform.getWidgetPosition(self.chat_model)[0]
        taken = self._gform.takeRow(row)
        if taken.labelItem is not None and taken.labelItem.widget() is not None:
            taken.labelItem.widget().deleteLater()
        return self.chat_model

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
        remote_default = getattr(self.folio, "default_provider", None)
        if remote_default is not None:
            label = f"Default ({remote_default.name} · {remote_default.model}, remote)"
            tip = (f"The default: {remote_default.model} at {remote_default.base_url}, "
                   f"as Settings > Providers choose")
        else:
            label = f"Default ({model_stem(default)})" if default else "Default model"
            tip = f"The default model: {default or 'the starter model'}"
        self.chat_model.addItem(label, None)
        self.chat_model.setItemData(0, tip, Qt.ItemDataRole.ToolTipRole)
        names = [e.name for e in listing.entries if e.info is not None]
        providers = {PROVIDER + c.name: c for c in self._providers()}
        if current and current not in names and current not in providers:
            names.append(current)  # a chat's model that is gone still shows what it was
        for n in names:
            self.chat_model.addItem(model_stem(n), n)
            self.chat_model.setItemData(self.chat_model.count() - 1, n,
                                        Qt.ItemDataRole.ToolTipRole)
        for key, c in providers.items():  # remote models: nothing is sent until one answers
            self.chat_model.addItem(f"{c.name} · {c.model} (remote)", key)
            self.chat_model.setItemData(self.chat_model.count() - 1,
                                        f"{c.model} at {c.base_url}: questions and the "
                                        f"passages they find are sent there",
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

    def _providers(self) -> list:
        """The remote providers Settings keep (none when they cannot be read)."""
        from app.core.settings import AppSettings

        settings = getattr(self.folio, "settings", None)
        try:
            return (settings if settings is not None else AppSettings.load()).provider_configs()
        except Exception as exc:  # noqa: BLE001 - a bad entry: Settings > Providers says so
            log.warning("providers: %s", exc)
            return []

    def _chat_model_chosen(self, _index: int) -> None:
        if self._loading or self.chat_id is None or self.folio is None:
            return
        name = self.chat_model.currentData()
        self.folio.store.update_chat(self.chat_id, model=name)
        self.chat_model_changed.emit(name)
        remote_default = getattr(self.folio, "default_provider", None)
        if name and name.startswith(PROVIDER):
            self.use_provider(name[len(PROVIDER):])
            return
        if name is None and remote_default is not None:
            self.use_provider(remote_default.name)
            return
        target = name or (self.view.listing.default_name if self.view is not None else None)
        entry = self.view.entry(target) if self.view is not None and target else None
        loaded = self.loaded_path()
        if entry is not None and entry.info is not None and (
                loaded is None or not same_file(loaded, entry.path)):
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
        if local_paths(event.mimeData()):
            event.acceptProposedAction()

    def dragMoveEvent(self, event) -> None:
        if local_paths(event.mimeData()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = local_paths(event.mimeData())
        if paths and self.folio is not None:
            event.acceptProposedAction()
            self.add_models(paths)


# -- helpers ---------------------------------------------------------------------------------
