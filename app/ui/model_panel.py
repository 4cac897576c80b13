"""The model view: what is loaded, where it runs, and the current chat's generation settings.

Deliberately small: the full model manager (download, switch, per-model defaults) is its own
issue and gets the "Models" box below. Settings edited here are stored with the chat
(ChatStore.update_chat(settings=...)), so each chat keeps its own.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

# The defaults shown when a chat has no setting of its own (llm.GenerationSettings' values,
# repeated here so the window need not import llama.cpp's module to draw a spin box).
DEFAULTS = {"temperature": 0.7, "max_tokens": 512, "top_p": 0.95}


class ModelPanel(QWidget):
    settings_edited = Signal(dict)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._loading = False
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
        self.notes = QLabel("")
        self.notes.setWordWrap(True)
        form.addRow("Name:", self.name)
        form.addRow("Device:", self.device)
        form.addRow("Context:", self.context)
        form.addRow(self.notes)
        layout.addWidget(box)

        gen = QGroupBox("This chat's settings")
        gform = QFormLayout(gen)
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
        gform.addRow("Temperature:", self.temperature)
        gform.addRow("Longest answer:", self.max_tokens)
        gform.addRow("Top p:", self.top_p)
        for w in (self.temperature, self.max_tokens, self.top_p):
            w.valueChanged.connect(self._edited)
        self.gen_box = gen
        layout.addWidget(gen)

        manager = QGroupBox("Models")
        ml = QVBoxLayout(manager)
        hint = QLabel("Folio uses the built-in starter model. Choosing and downloading other "
                      "models comes with the model manager.")
        hint.setWordWrap(True)
        ml.addWidget(hint)
        self.manage_btn = QPushButton("Manage models…")
        self.manage_btn.setAccessibleName("Manage models")
        self.manage_btn.setEnabled(False)
        ml.addWidget(self.manage_btn)
        layout.addWidget(manager)
        layout.addStretch(1)
        self.show_settings(None)

    def show_loading(self) -> None:
        self.name.setText("Loading model…")
        self.device.setText("–")
        self.context.setText("–")

    def show_info(self, info) -> None:
        self.name.setText(info.name)
        self.name.setToolTip(str(info.path))
        self.device.setText(f"{info.device.upper()}"
                            + (f" ({info.gpu_layers} layers)" if info.device == "gpu" else
                               f" ({info.threads} thread{'s' * (info.threads != 1)})"))
        self.context.setText(f"{info.n_ctx:,} tokens (trained {info.n_ctx_train:,})")
        self.notes.setText("\n".join(info.notes))

    def show_error(self, message: str) -> None:
        self.name.setText("Not loaded")
        self.notes.setText(message)

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
