"""The theme setting changes what the user sees, even where the platform ignores the request.

Offscreen (as on X11 without a desktop portal) `QStyleHints.setColorScheme` changes nothing;
apply_theme must notice and set Folio's own palette, and "system" must give back the one Qt
started with. These run the real apply_theme (test_ui_actions stubs it to watch the window).
"""

from __future__ import annotations

import re

import pytest
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QLineEdit, QStyleFactory

from app.ui import settings_dialog
from app.ui.chat_panel import ChatPanel
from app.ui.settings_dialog import SettingsDialog, apply_theme

R = QPalette.ColorRole


@pytest.fixture
def start(qapp, monkeypatch):
    """The application's palette and style as found; put back afterwards for other tests."""
    monkeypatch.setattr(settings_dialog, "_start", None)
    monkeypatch.setattr(settings_dialog, "_overridden", False)
    palette, style = QPalette(qapp.palette()), qapp.style().name()
    yield palette
    apply_theme("system")
    if qapp.style().name() != style:
        qapp.setStyle(style)
    qapp.setPalette(QPalette() if not palette.resolveMask() else palette)


def lightness(palette: QPalette, role, group=QPalette.ColorGroup.Active) -> int:
    return palette.color(group, role).lightness()


def readable(palette: QPalette, fg, bg, group=QPalette.ColorGroup.Active, gap=100) -> bool:
    return abs(lightness(palette, fg, group) - lightness(palette, bg, group)) >= gap


def test_dark_gives_a_dark_readable_palette(qtbot, start):
    apply_theme("dark")
    pal = QApplication.palette()
    assert pal.window().color().lightness() < 128
    assert pal.windowText().color().lightness() > 128
    assert lightness(pal, R.Base) < 128 and lightness(pal, R.Text) > 128
    for fg, bg in [(R.WindowText, R.Window), (R.Text, R.Base), (R.Text, R.AlternateBase),
                   (R.ButtonText, R.Button), (R.HighlightedText, R.Highlight),
                   (R.ToolTipText, R.ToolTipBase), (R.Link, R.Base)]:
        assert readable(pal, fg, bg), (fg, bg)
    assert readable(pal, R.PlaceholderText, R.Base, gap=60)
    # Disabled text is dimmer than enabled text, and still visible.
    disabled = QPalette.ColorGroup.Disabled
    assert lightness(pal, R.Text, disabled) < lightness(pal, R.Text)
    assert readable(pal, R.Text, R.Base, disabled, gap=40)

    # A widget shown now draws with it.
    edit = QLineEdit("typed")
    qtbot.addWidget(edit)
    edit.show()
    qtbot.waitExposed(edit)
    assert edit.palette().color(R.Base).lightness() < 128
    image = edit.grab().toImage()
    assert QColor(image.pixel(image.width() // 2, 3)).lightness() < 128


def test_light_gives_a_light_palette_after_dark(start):
    apply_theme("dark")
    apply_theme("light")
    pal = QApplication.palette()
    assert pal.window().color().lightness() > 128
    assert pal.windowText().color().lightness() < 128
    assert lightness(pal, R.Base) > 128 and lightness(pal, R.Text) < 128


def test_system_goes_back_to_the_start_palette(start):
    apply_theme("dark")
    assert QApplication.palette() != start
    apply_theme("system")
    assert QApplication.palette() == start
    apply_theme("light")
    apply_theme("system")
    assert QApplication.palette() == start


def test_a_non_fusion_style_is_switched_and_then_restored(qapp, start):
    if "Windows" not in QStyleFactory.keys():
        pytest.skip("no second style to start from")
    qapp.setStyle("Windows")
    apply_theme("dark")
    assert qapp.style().name().lower() == "fusion"  # draws every role from the palette
    assert QApplication.palette().window().color().lightness() < 128
    apply_theme("system")
    assert qapp.style().name().lower() == "windows"


def test_the_settings_dialog_and_the_chat_follow_dark(qtbot, start):
    dialog = SettingsDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    panel = ChatPanel(None, None)
    qtbot.addWidget(panel)
    panel.show()
    qtbot.waitExposed(panel)
    panel.render()

    light_style = panel.view.document().defaultStyleSheet()
    apply_theme("dark")
    # Open widgets get the new palette through posted events, as the window does.
    qtbot.waitUntil(lambda: dialog.palette().color(R.Window).lightness() < 128)
    qtbot.waitUntil(lambda: panel.view.document().defaultStyleSheet() != light_style)
    assert dialog.theme_combo.palette().color(R.ButtonText).lightness() > 128
    view = panel.view
    assert view.palette().color(R.Base).lightness() < 128
    assert view.palette().color(R.Text).lightness() > 128
    # The conversation's own colours (muted text, the "You" block) come from the palette.
    colours = [QColor(c) for c in re.findall(r"#[0-9a-fA-F]{6}", view.document()
                                              .defaultStyleSheet())]
    assert colours, view.document().defaultStyleSheet()
    muted = QColor(re.search(r"\.muted\{color:(#[0-9a-fA-F]{6})", panel.conversation_html())
                   .group(1))
    assert muted.lightness() > 128
    assert all(c.lightness() != 255 for c in colours)  # no white block left from light mode
