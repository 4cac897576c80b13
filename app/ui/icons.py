"""The window's own icons: SVGs in resources/icons/ drawn in the palette's text colour.

Each icon is rendered from its SVG at every size a toolbar or menu asks for, at 1x, 2x and
3x, so a high-DPI screen gets pixels drawn for it rather than a small bitmap scaled up, and
a light/dark switch redraws them in the new text colour (the SVGs say `currentColor`).
"""

from __future__ import annotations

import logging

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPixmap

from app.core.paths import resource_path

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
    from PySide6.QtSvg import QSvgRenderer

    try:
        text = svg_text(name)
    except OSError as exc:
        log.warning("icon %s: %s", name, exc)
        return QIcon()
    renderer = QSvgRenderer(QByteArray(text.replace("currentColor", color.name()).encode()))
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
