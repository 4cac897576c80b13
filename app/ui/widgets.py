"""Small widgets the panels share."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPainter, QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QLabel,
    QPushButton,
    QStyle,
    QStyleOptionComboBox,
    QStylePainter,
)


class ActionButton(QPushButton):
    """The one thing a message offers to do about itself ("Load anyway", "Re-index with…"):
    hidden while there is none; a click emits `acted` (the message hides) and runs it once."""

    acted = Signal()

    def __init__(self, default_name: str, parent=None):
        super().__init__(parent)
        self._default_name = default_name
        self._action = None
        self.setAccessibleName(default_name)
        self.hide()
        self.clicked.connect(self._act)

    def set_action(self, action) -> None:
        """`action`: (label, callable), or None for no button."""
        self._action = action[1] if action else None
        self.setText(action[0] if action else "")
        self.setAccessibleName(action[0] if action else self._default_name)
        self.setVisible(action is not None)

    def _act(self) -> None:
        action, self._action = self._action, None
        self.acted.emit()
        if action is not None:
            action()


class ElidingComboBox(QComboBox):
    """A combo box that ends a text too long for its width with "…" instead of cutting it
    off mid-letter (a model's file name in a narrow side panel). The open list shows the full
    texts; tooltips are left to the caller."""

    def displayed_text(self) -> str:
        """What the closed box shows now, after eliding (tests read it)."""
        opt = QStyleOptionComboBox()
        self.initStyleOption(opt)
        return self._elide(opt)

    def _elide(self, opt: QStyleOptionComboBox) -> str:
        field = self.style().subControlRect(
            QStyle.ComplexControl.CC_ComboBox, opt, QStyle.SubControl.SC_ComboBoxEditField, self)
        width = field.width()
        if not opt.currentIcon.isNull():
            width -= opt.iconSize.width() + 4
        return opt.fontMetrics.elidedText(opt.currentText, Qt.TextElideMode.ElideRight,
                                          max(0, width))

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        painter = QStylePainter(self)
        try:
            opt = QStyleOptionComboBox()
            self.initStyleOption(opt)
            painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, opt)
            opt.currentText = self._elide(opt)
            painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, opt)
        finally:
            painter.end()  # see ElidedLabel.paintEvent


class ElidedLabel(QLabel):
    """A one-line label that ends with "…" when its text is wider than the label (the
    indexing status line under a narrow library). `text()` stays the whole text."""

    def displayed_text(self) -> str:
        return self.fontMetrics().elidedText(self.text(), Qt.TextElideMode.ElideRight,
                                             max(0, self.contentsRect().width()))

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        try:
            self.style().drawItemText(painter, self.contentsRect(), int(self.alignment()),
                                      self.palette(), self.isEnabled(), self.displayed_text(),
                                      QPalette.ColorRole.WindowText)
        finally:
            # Ended here, not when Python drops the object: anything that keeps this frame
            # alive a moment longer (a traceback, a profiler's stack sample) would leave the
            # painter active past the paint ("endPaint() called with active painter"), and
            # the next paint of the window then crashed in Qt.
            painter.end()
