"""Watched folders in the window (app/ui/watched_folders.py): the list persists in
settings.json, is rescanned and watched at start, and a burst of file events reaches the GUI
as a few signals. Real embedder and LanceDB; every wait is on state."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.settings import AppSettings
from app.ui.main_window import MainWindow

TIMEOUT = 180_000  # ms: real embedder on shared cores


@pytest.fixture
def window_with_watched(qtbot, tmp_path, monkeypatch, library_dir):
    monkeypatch.setenv("FOLIO_QSETTINGS", str(tmp_path / "folio.ini"))
    folder = (tmp_path / "watched").resolve()
    folder.mkdir()
    (folder / "before.txt").write_text("Saved while Folio was closed: tulips in spring.")
    AppSettings(library=str(library_dir), watched_folders=[str(folder)]).save()
    w = MainWindow(library_dir, load_model=False)
    qtbot.addWidget(w)
    w.show()
    w.start()
    yield w, folder
    w.close()
    assert w.wait_released()


def test_watched_folder_resumes_at_start_and_follows_changes(qtbot, window_with_watched):
    w, folder = window_with_watched
    lib = w.library
    signals = []
    w.watched.batch_applied.connect(signals.append)
    # At start the folder is rescanned: the file saved while Folio was closed is indexed.
    qtbot.waitUntil(lambda: any(str(folder / "before.txt") in b.indexed for b in signals),
                    timeout=TIMEOUT)
    qtbot.waitUntil(lambda: lib.status_of(str(folder / "before.txt")) == "ready",
                    timeout=TIMEOUT)
    menu_texts = [a.text() for a in w.watched.menu.actions()]
    assert str(folder) in menu_texts and "Watch a folder…" in menu_texts

    signals.clear()
    files = [folder / f"n{i:02}.txt" for i in range(20)]
    for round_ in range(50):  # 1,000 writes in a burst
        for i, f in enumerate(files):
            f.write_text(f"Note {i} about topic{i}, round {round_}.")
    qtbot.waitUntil(lambda: all(lib.status_of(str(f)) == "ready" for f in files),
                    timeout=TIMEOUT)
    qtbot.waitUntil(lambda: bool(signals), timeout=TIMEOUT)
    assert len(signals) <= 3, [len(b.indexed) for b in signals]  # one, unless the burst paused
    assert sum(b.events for b in signals) >= 1000

    (folder / "before.txt").unlink()
    qtbot.waitUntil(lambda: lib.status_of(str(folder / "before.txt")) is None, timeout=TIMEOUT)
    assert "removed" in w.statusBar().currentMessage()


def test_toggle_persists_the_watched_list(qtbot, window_with_watched, tmp_path):
    w, folder = window_with_watched
    qtbot.waitUntil(lambda: w.library.status_of(str(folder / "before.txt")) == "ready",
                    timeout=TIMEOUT)
    toggle = next(a for a in w.watched.menu.actions() if a.text() == str(folder))
    assert toggle.isCheckable() and toggle.isChecked()
    toggle.setChecked(False)  # "stop watching this folder"
    assert AppSettings.load().watched_folders == []
    assert w.watched.watcher.folders == []
    assert w.library.status_of(str(folder / "before.txt")) == "ready"  # documents stay

    other = (tmp_path / "other").resolve()
    other.mkdir()
    (other / "x.md").write_text("# Harbour\n\nBoats rest in the harbour at night.")
    w.watched.set_watched(other, True)
    assert AppSettings.load().watched_folders == [str(other)]
    qtbot.waitUntil(lambda: w.library.status_of(str(other / "x.md")) == "ready",
                    timeout=TIMEOUT)
    (other / "y.txt").write_text("A new file in the newly watched folder.")
    qtbot.waitUntil(lambda: w.library.status_of(str(other / "y.txt")) == "ready",
                    timeout=TIMEOUT)
