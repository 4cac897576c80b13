"""What the model views share: column layouts, the memory text of an estimate, the message bar,
the URL dialog, and small helpers for paths and names.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QStyle,
    QToolButton,
    QWidget,
)

from app.core.base.units import human_bytes
from app.core.models.fit import available_ram
from app.ui.widgets import ActionButton

log = logging.getLogger(__name__)

# The defaults shown when a chat has no setting of its own (llm.GenerationSettings' values,
# repeated here so the window need not import llama.cpp's module to draw a spin box).
DEFAULTS = {"temperature": 0.7, "max_tokens": 512, "top_p": 0.95}
NAME_ROLE = Qt.ItemDataRole.UserRole
WARN_COLOR = QColor("#b3261e")
OK_COLOR = QColor("#1e7b34")

# Columns of the installed-models table.
COLUMNS = ["Model", "State", "Architecture", "Params", "Quant.", "Context", "Template",
           "Size", "License", "Memory", "Chats", "Notes"]
(COL_NAME, COL_STATE, COL_ARCH, COL_PARAMS, COL_QUANT, COL_CTX, COL_TEMPLATE, COL_SIZE,
 COL_LICENSE, COL_MEMORY, COL_CHATS, COL_NOTES) = range(len(COLUMNS))
CATALOG_COLUMNS = ["Model", "Params", "Quant.", "Size", "License", "RAM needed", "Fits?", ""]
(CAT_NAME, CAT_PARAMS, CAT_QUANT, CAT_SIZE, CAT_LICENSE, CAT_RAM, CAT_FITS,
 CAT_BUTTON) = range(len(CATALOG_COLUMNS))


# -- formatting ------------------------------------------------------------------------------

def params_label(info) -> str:
    try:
        return info.parameters_label() or "–"
    except Exception:  # noqa: BLE001 - a label must never break the listing
        return "–"


def memory_text(est) -> str:
    if est is None:
        return "–"
    if not est.fits:
        return f"{human_bytes(est.total_bytes)} · will not fit"
    if getattr(est, "vram_unknown", False):  # only the RAM part could be judged
        return f"{human_bytes(est.total_bytes)} · fits in RAM, VRAM unknown"
    return f"{human_bytes(est.total_bytes)} · fits"


def memory_tooltip(est, context: int) -> str:
    if est is None:
        return ""
    lines = [
        f"Estimated for a context of {context:,} tokens on the {str(est.device).upper()}:",
        f"  weights {human_bytes(est.weights_bytes)}",
        f"  KV cache {human_bytes(est.kv_cache_bytes)}",
        f"  overhead {human_bytes(est.overhead_bytes)}",
        f"  total {human_bytes(est.total_bytes)}",
        f"Free RAM: {human_bytes(est.free_ram_bytes)}",
    ]
    vram = getattr(est, "vram_bytes", 0)
    if vram:
        lines.append(f"In VRAM: {human_bytes(vram)} ({getattr(est, 'gpu_layers', 0)} layers)")
    if est.free_vram_bytes is not None:
        lines.append(f"Free VRAM: {human_bytes(est.free_vram_bytes)}")
    elif vram:
        lines.append("Free VRAM: unknown (no nvidia-smi), not checked")
    if not est.fits:
        lines.append("Will not fit: Folio refuses to load it unless you choose “Load anyway”.")
    elif getattr(est, "vram_unknown", False):
        lines.append("Fits in RAM; whether the GPU part fits in VRAM is not known.")
    else:
        lines.append("Fits.")
    if est.reason:
        lines.append(str(est.reason))
    return "\n".join(lines)


# -- what a listing job hands back ----------------------------------------------------------

@dataclass
class Listing:
    entries: list = field(default_factory=list)  # ModelEntry
    estimates: dict = field(default_factory=dict)  # name -> MemoryEstimate
    contexts: dict = field(default_factory=dict)  # name -> context the estimate is for
    catalog: list = field(default_factory=list)  # CatalogEntry
    catalog_error: str = ""
    partials: list = field(default_factory=list)  # resumable downloads found on disk
    free_ram: int | None = None
    default_name: str | None = None


def catalog_fit(ram_bytes: int, free: int | None) -> tuple[str, QColor | None, str]:
    """Whether a catalog model fits in the RAM free now: (text, colour, tooltip)."""
    if free is None or not ram_bytes:
        return "?", None, "The free memory could not be read."
    tip = f"Needs about {human_bytes(ram_bytes)}; {human_bytes(free)} of RAM is free now."
    if ram_bytes <= free:
        return "✓ Fits", OK_COLOR, tip
    return "⚠ Will not fit", WARN_COLOR, tip


def free_ram() -> int | None:
    """Free RAM as the memory estimate reads it; None when it cannot be read."""
    return available_ram() or None


def partial_fields(p) -> dict:
    """A PartialDownload's fields, with a file name even when the sidecar lost it."""
    url = getattr(p, "url", None)
    filename = getattr(p, "filename", "") or (
        str(url).split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] if url else "")
    return {"url": url, "filename": filename, "sha256": getattr(p, "sha256", None),
            "done_bytes": getattr(p, "done_bytes", 0) or 0,
            "total_bytes": getattr(p, "total_bytes", None),
            "error": getattr(p, "error", None)}


# -- small widgets ---------------------------------------------------------------------------

class MessageBar(QFrame):
    """An inline, dismissable message at the top of the manager: errors never open a dialog."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setAccessibleName("Model manager message")
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 8, 4)
        self.icon = QLabel()
        row.addWidget(self.icon)
        self.text = QLabel()
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row.addWidget(self.text, 1)
        self.action_btn = ActionButton("Message action")
        self.action_btn.acted.connect(self.hide)
        row.addWidget(self.action_btn)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.setAccessibleName("Dismiss model manager message")
        close.clicked.connect(self.hide)
        row.addWidget(close)
        self.hide()

    def show_message(self, text: str, *, error: bool = True, action=None) -> None:
        """`action`: (button label, callable) offered beside the message ("Load anyway");
        clicking it dismisses the message and runs the callable."""
        pix = (QStyle.StandardPixmap.SP_MessageBoxWarning if error
               else QStyle.StandardPixmap.SP_MessageBoxInformation)
        self.icon.setPixmap(self.style().standardIcon(pix).pixmap(18, 18))
        self.text.setText(text)
        self.action_btn.set_action(action)
        self.show()


class UrlDialog(QDialog):
    """Download from URL: the address and, when known, the sha256 to verify against."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Download a model")
        form = QFormLayout(self)
        self.url = QLineEdit()
        self.url.setAccessibleName("Model URL")
        self.url.setPlaceholderText("https://huggingface.co/…/resolve/main/model-Q4_K_M.gguf")
        self.url.setMinimumWidth(460)
        self.sha256 = QLineEdit()
        self.sha256.setAccessibleName("Expected sha256")
        self.sha256.setPlaceholderText("Optional: 64 hex digits")
        form.addRow("URL:", self.url)
        form.addRow("sha256:", self.sha256)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok
                                   | QDialogButtonBox.StandardButton.Cancel)
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Download")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)


def ask_copy_or_link(parent: QWidget, name: str) -> bool | None:
    """True: link, False: copy, None: cancelled."""
    box = QMessageBox(parent)
    box.setWindowTitle("Add a model")
    box.setText(f"Add {name} to the models folder:")
    box.setInformativeText("A copy stays usable if the original moves; a link saves disk "
                           "space but breaks if the original moves or is deleted.")
    copy = box.addButton("Copy", QMessageBox.ButtonRole.AcceptRole)
    link = box.addButton("Link", QMessageBox.ButtonRole.AcceptRole)
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.setDefaultButton(copy)
    box.exec()
    clicked = box.clickedButton()
    if clicked is copy:
        return False
    if clicked is link:
        return True
    return None


# -- the tab ---------------------------------------------------------------------------------

def local_paths(mime) -> list[str]:
    if mime is None or not mime.hasUrls():
        return []
    return [u.toLocalFile() for u in mime.urls() if u.isLocalFile() and u.toLocalFile()]


def same_file(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return str(a) == str(b)


def file_size(path) -> int | None:
    try:
        return Path(path).stat().st_size
    except OSError:
        return None


def model_stem(name: str | None) -> str:
    return name[:-5] if name and name.lower().endswith(".gguf") else (name or "")


def without_name(message: str, name: str) -> str:
    """'x.gguf is truncated: …' -> 'Truncated: …' (for a cell beside the file's name)."""
    for prefix in (f"{name}: ", f"{name} is ", f"{name} "):
        if message.startswith(prefix) and len(message) > len(prefix):
            rest = message[len(prefix):]
            return rest[0].upper() + rest[1:]
    return message


def link_target(path: Path) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return "?"


def escape_html(text: str) -> str:
    return (str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
