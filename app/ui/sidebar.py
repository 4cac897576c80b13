"""The window's left sidebar: Chats, Library and Models as sections that fold away.

Each section is a header (a button with an arrow, and the section's own buttons) above its
body. The sections share the sidebar's height in a vertical splitter; a folded section keeps
only its header, and its height goes to the others until it unfolds again, at the height it
had. Which sections are folded and their heights are saved with the window.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

UNLIMITED = 16_777_215  # QWIDGETSIZE_MAX


class Section(QWidget):
    """A titled part of the sidebar that folds to its header."""

    toggled = Signal(bool)  # expanded

    def __init__(self, title: str, body: QWidget, *, extras: tuple[QWidget, ...] = (),
                 stretch: int = 1, parent: QWidget | None = None):
        super().__init__(parent)
        self.title = title
        self.stretch = stretch  # its share of the sidebar's height, before the user's
        self.body = body
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        self.header = QWidget()
        row = QHBoxLayout(self.header)
        row.setContentsMargins(4, 4, 6, 2)
        self.button = QToolButton()
        self.button.setText(title)
        self.button.setCheckable(True)
        self.button.setChecked(True)
        self.button.setAutoRaise(True)
        self.button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.button.setArrowType(Qt.ArrowType.DownArrow)
        font = self.button.font()
        font.setBold(True)
        self.button.setFont(font)
        # Flat, a heading rather than a pressed button (checked = unfolded).
        self.button.setStyleSheet("QToolButton { border: none; background: transparent; "
                                  "padding: 2px 4px 2px 0; }")
        self.button.setAccessibleName(f"{title} section")
        self.button.setToolTip(f"Fold or unfold {title}")
        self.button.toggled.connect(self.set_expanded)
        row.addWidget(self.button)
        row.addStretch(1)
        for widget in extras:
            row.addWidget(widget)
        layout.addWidget(self.header)
        layout.addWidget(body, 1)

    def expanded(self) -> bool:
        return self.button.isChecked()

    def set_expanded(self, expanded: bool) -> None:
        if self.button.isChecked() != expanded:
            self.button.setChecked(expanded)  # comes back here through `toggled`
            return
        self.button.setArrowType(Qt.ArrowType.DownArrow if expanded
                                 else Qt.ArrowType.RightArrow)
        self.body.setVisible(expanded)
        self.setMaximumHeight(UNLIMITED if expanded else self.header.sizeHint().height())
        self.setSizePolicy(QSizePolicy.Policy.Preferred,
                           QSizePolicy.Policy.Expanding if expanded
                           else QSizePolicy.Policy.Fixed)
        self.toggled.emit(expanded)


class Sidebar(QWidget):
    """Sections stacked in a vertical splitter. `state()` / `restore()` carry what is folded
    and the heights between runs."""

    def __init__(self, sections: list[Section], parent: QWidget | None = None):
        super().__init__(parent)
        self.setAccessibleName("Sidebar")
        self.sections = sections
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setChildrenCollapsible(False)
        self.splitter.setHandleWidth(6)
        for i, section in enumerate(sections):
            self.splitter.addWidget(section)
            self.splitter.setStretchFactor(i, section.stretch)
            section.toggled.connect(lambda on, s=section: self._toggled(s, on))
        layout.addWidget(self.splitter)
        self._heights: dict[str, int] = {}  # a folded section's height, for when it unfolds

    def section(self, title: str) -> Section:
        return next(s for s in self.sections if s.title == title)

    def _toggled(self, section: Section, expanded: bool) -> None:
        i = self.sections.index(section)
        sizes = self.splitter.sizes()
        if not any(sizes):  # not laid out yet: the splitter sizes them when shown
            return
        if not expanded:
            self._heights[section.title] = sizes[i]
            freed = sizes[i] - section.header.sizeHint().height()
            sizes[i] -= freed
            sizes[self._taker(i, sizes)] += freed
        else:
            want = self._heights.pop(section.title, None) or max(sizes) // 2
            giver = self._taker(i, sizes)
            take = min(want - sizes[i], max(0, sizes[giver] - 80))
            sizes[i] += take
            sizes[giver] -= take
        self.splitter.setSizes(sizes)

    def _taker(self, i: int, sizes: list[int]) -> int:
        """The unfolded section (other than i) with the most height: it gives or takes."""
        open_ = [j for j, s in enumerate(self.sections) if j != i and s.expanded()]
        return max(open_, key=lambda j: sizes[j]) if open_ else i

    def state(self) -> dict:
        return {"sizes": self.splitter.sizes(),
                "folded": [s.title for s in self.sections if not s.expanded()],
                "heights": dict(self._heights)}

    def restore(self, state: dict | None) -> None:
        state = state if isinstance(state, dict) else {}
        folded = set(state.get("folded") or [])
        heights = state.get("heights") or {}
        for section in self.sections:  # folded first: an unfolded one has a minimum height
            section.set_expanded(section.title not in folded)
        sizes = [int(x) for x in state.get("sizes") or [] if str(x).lstrip("-").isdigit()]
        if len(sizes) != len(self.sections) or sum(sizes) <= 0:  # by each one's share
            sizes = [s.stretch * 300 or s.sizeHint().height() for s in self.sections]
        self.splitter.setSizes(sizes)
        self._heights = {str(k): int(v) for k, v in heights.items()
                         if str(v).isdigit() and k in folded}


class ModelBox(QWidget):
    """The Models section: what answers now, and the ways to change it. The window sets
    the text (`show_state`); the starter model carries a hint toward a better one."""

    settings_requested = Signal()
    manager_requested = Signal()
    guide_requested = Signal()  # the first-run guide, at its model step

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 0, 6, 6)
        self.state = QLabel("Loading model…")
        self.state.setWordWrap(True)
        self.state.setAccessibleName("Loaded model")
        layout.addWidget(self.state)
        self.hint = QLabel("The starter model is tiny: its answers are weak.<br>"
                           "<a href='guide'>Choose a better model…</a>")
        self.hint.setWordWrap(True)
        self.hint.setAccessibleName("Starter model hint")
        self.hint.setTextInteractionFlags(Qt.TextInteractionFlag.LinksAccessibleByMouse
                                          | Qt.TextInteractionFlag.LinksAccessibleByKeyboard)
        self.hint.linkActivated.connect(lambda _link: self.guide_requested.emit())
        self.hint.hide()
        layout.addWidget(self.hint)
        row = QHBoxLayout()
        self.settings_btn = QPushButton("Settings")
        self.settings_btn.setAccessibleName("Model and chat settings")
        self.settings_btn.setToolTip("This chat's model settings, in the side panel "
                                     "(Ctrl+Shift+M)")
        self.settings_btn.clicked.connect(self.settings_requested)
        self.manage_btn = QPushButton("Manage models…")
        self.manage_btn.setAccessibleName("Manage models")
        self.manage_btn.setToolTip("Download, add, remove models and choose the default")
        self.manage_btn.clicked.connect(self.manager_requested)
        row.addWidget(self.settings_btn)
        row.addWidget(self.manage_btn)
        row.addStretch(1)
        layout.addLayout(row)
        layout.addStretch(1)

    def show_state(self, text: str, *, starter: bool = False) -> None:
        self.state.setText(text)
        self.hint.setVisible(starter)
