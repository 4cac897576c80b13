"""The window's own icons: SVGs in resources/icons/ drawn in the palette's text colour.

Each icon is rendered from its SVG at every size a toolbar or menu asks for, at 1x, 2x and
3x, so a high-DPI screen gets pixels drawn for it rather than a small bitmap scaled up, and
a light/dark switch redraws them in the new text colour (the SVGs say `currentColor`).
"""

from __future__ import annotations

import logging
import os

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap

from app.core.base.paths import resource_path

log = logging.getLogger(__name__)

SIZES = (16, 24)  # logical sizes (menus, toolbar); each drawn at these device pixel ratios:
SCALES = (1, 1.25, 1.5, 2, 3)

_svg_cache: dict[str, str] = {}


def svg_text(name: str) -> str:
    if name not in _svg_cache:
        _svg_cache[name] = resource_path("icons", f"{name}.svg").read_text("utf-8")
    return _svg_cache[name]


def themed_icon(name: str, color: QColor) -> QIcon:
    """`resources/icons/<name>.svg` in `color`, as crisp pixmaps for every size and scale;
    an empty icon (the action keeps its text) when the SVG cannot be read."""
    try:
        text = svg_text(name)
    except OSError as exc:
        log.warning("icon %s: %s", name, exc)
        return QIcon()
    return _render(text.replace("currentColor", color.name()), name)


# Document types as the library shows them: a badge colour and a short label per kind.
FILE_TYPES = {
    "pdf": ("#d93025", "PDF"), "docx": ("#1a73e8", "DOC"), "epub": ("#188038", "EPUB"),
    "html": ("#e8710a", "HTML"), "md": ("#5f6368", "MD"), "rst": ("#5f6368", "RST"),
    "txt": ("#80868b", "TXT"), "csv": ("#137333", "CSV"), "code": ("#9334e6", "</>"),
    "file": ("#80868b", ""),
}
_SUFFIX_KIND = {
    ".pdf": "pdf", ".docx": "docx", ".doc": "docx", ".epub": "epub", ".html": "html",
    ".htm": "html", ".xhtml": "html", ".md": "md", ".markdown": "md", ".rst": "rst",
    ".txt": "txt", ".text": "txt", ".log": "txt", ".csv": "csv", ".tsv": "csv",
}
_CODE_SUFFIXES = {".py", ".js", ".ts", ".c", ".h", ".cpp", ".hpp", ".java", ".go", ".rs",
                  ".rb", ".sh", ".m", ".json", ".yaml", ".yml", ".toml", ".xml", ".sql",
                  ".css", ".cs", ".kt", ".swift", ".php", ".r", ".lua", ".pl", ".ini"}


def file_type_of(path: str) -> str:
    """The kind of document a path names, by its extension (a key of FILE_TYPES)."""
    suffix = os.path.splitext(path)[1].lower()
    if suffix in _SUFFIX_KIND:
        return _SUFFIX_KIND[suffix]
    return "code" if suffix in _CODE_SUFFIXES else "file"


def file_type_icon(kind: str) -> QIcon:
    """A page with a coloured badge naming the type (PDF red, Word blue...), so the
    library's rows tell their types apart on every platform (the system's file icons are
    one generic page under many Linux desktops)."""
    color, label = FILE_TYPES.get(kind, FILE_TYPES["file"])
    try:
        text = svg_text("file-type")
    except OSError as exc:
        log.warning("icon file-type: %s", exc)
        return QIcon()
    size = {0: "0", 1: "7", 2: "7", 3: "6.5"}.get(len(label), "5.2")
    text = (text.replace("BADGE", color if label else "none").replace("LABELSIZE", size)
            .replace("LABEL", label.replace("<", "&lt;").replace(">", "&gt;")))
    return _render(text, f"file-type {kind}")


def _render(text: str, name: str) -> QIcon:
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(QByteArray(text.encode()))
    if not renderer.isValid():
        log.warning("icon %s: not a valid SVG", name)
        return QIcon()
    icon = QIcon()  # the disabled look is derived from these by the style
    for size in SIZES:
        for scale in SCALES:
            px = round(size * scale)
            image = QImage(px, px, QImage.Format.Format_ARGB32_Premultiplied)
            image.fill(Qt.GlobalColor.transparent)
            painter = QPainter(image)
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            renderer.render(painter, QRectF(0, 0, px, px))
            painter.end()
            pixmap = QPixmap.fromImage(image)
            pixmap.setDevicePixelRatio(scale)
            icon.addPixmap(pixmap)
    return icon
