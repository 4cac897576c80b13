"""The model manager's editor: a model's own settings (context, GPU layers, threads, batch,
chat template, system prompt) and the memory they need, estimated while the user types.
"""

from __future__ import annotations

from PySide6.QtWidgets import (
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
)

from app.core.base.units import human_bytes
from app.core.models.fit import DEFAULT_BATCH
from app.ui.models.common import WARN_COLOR, memory_tooltip


class EditorPart:
    """The manager's per-model settings editor and its live memory estimate."""

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
        self.estimate.setToolTip(memory_tooltip(est, ctx))

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
