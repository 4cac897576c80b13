"""The window's switch for the local server: Settings start and stop the same API `folio serve`
runs, in the window's process, with the key Settings show."""

from __future__ import annotations

import socket

import openai
import pytest
from PySide6.QtCore import QPoint, Qt

from app.core.settings import AppSettings
from app.ui.main_window import MainWindow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def window(qtbot, tmp_path, monkeypatch, starter_model):
    monkeypatch.setenv("FOLIO_QSETTINGS", str(tmp_path / "folio.ini"))
    w = MainWindow(load_model=False)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.close()


def _click(qtbot, box) -> None:
    qtbot.mouseClick(box, Qt.MouseButton.LeftButton, pos=QPoint(8, box.height() // 2))


def test_the_settings_switch_starts_and_stops_the_server(qtbot, window):
    port = free_port()
    window.open_settings_dialog()
    dialog = window.settings_dialog
    dialog.tabs.setCurrentIndex(3)
    assert not dialog.server_check.isChecked() and window.server is None
    key = dialog.server_key_edit.text()
    assert key.startswith("folio-") and dialog.server_key_edit.isReadOnly()
    assert "http://127.0.0.1:" in dialog.server_note.text()
    _click(qtbot, dialog.server_check)
    dialog.server_port_spin.setValue(port)
    assert f"127.0.0.1:{port}/v1" in dialog.server_note.text()
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.settings_dialog is None)

    saved = AppSettings.load()
    assert saved.server_enabled and saved.server_port == port and saved.server_api_key == key
    assert window.server is not None and window.server.running

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key,
                           max_retries=0, timeout=300)
    assert [m.id for m in client.models.list()][0] == "folio"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x" * 30,
                      max_retries=0).models.list()
    # Model folio answers through the window's own engine (an empty library: it says so).
    r = client.chat.completions.create(model="folio", max_tokens=20,
                                       messages=[{"role": "user", "content": "Anchors?"}])
    assert "couldn't find" in r.choices[0].message.content
    assert r.model_extra["sources"] == []
    # The model the server loaded is the window's: its Model tab says so.
    qtbot.waitUntil(lambda: window.model.info is not None, timeout=60_000)
    qtbot.waitUntil(window._workers_idle, timeout=60_000)

    # Off again: the port is closed.
    window.open_settings_dialog()
    dialog = window.settings_dialog
    dialog.tabs.setCurrentIndex(3)
    assert dialog.server_key_edit.text() == key  # the key is kept, not made anew
    _click(qtbot, dialog.server_check)
    qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.settings_dialog is None)
    assert window.server is None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_the_server_starts_with_the_window_and_stops_when_it_closes(qtbot, tmp_path,
                                                                   monkeypatch, starter_model):
    port = free_port()
    AppSettings(server_enabled=True, server_port=port, server_api_key="k" * 32).save()
    monkeypatch.setenv("FOLIO_QSETTINGS", str(tmp_path / "folio.ini"))
    w = MainWindow(load_model=False)
    qtbot.addWidget(w)
    assert w.server is not None and w.server.running
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="k" * 32,
                           max_retries=0)
    assert "folio" in [m.id for m in client.models.list()]
    w.close()
    assert w.server is None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_a_taken_port_is_shown_not_raised(qtbot, tmp_path, monkeypatch, starter_model):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        AppSettings(server_enabled=True, server_port=port, server_api_key="k" * 32).save()
        monkeypatch.setenv("FOLIO_QSETTINGS", str(tmp_path / "folio.ini"))
        w = MainWindow(load_model=False)
        qtbot.addWidget(w)
        assert w.server is None
        assert f"port {port}" in w.server_error
        w.close()
    finally:
        taken.close()
