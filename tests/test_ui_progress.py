"""Indexing as the library panel shows it, driven through the real window (pytest-qt,
offscreen) on the real embedder and LanceDB: a progress bar in the row of the document being
indexed, Cancel from the overall progress bar, and a disk that fills up (a real tmpfs)."""

from __future__ import annotations

import pytest
from fixtures_disk import small_disk_at
from PySide6.QtCore import Qt
from test_ui_actions import doc_menu
from test_ui_window import INGEST_TIMEOUT

from app.core.service import Folio
from app.core.index.library import Library
from app.ui.library_panel import PROGRESS_ROLE, STATUS_COLUMN
from app.ui.main_window import MainWindow
from app.core.index.search import hybrid_search


def harbour_text(sentences: int) -> str:
    return " ".join(f"Sentence {i} tells how harbour crane number {i} lifts containers onto "
                    f"ship {i * 7} at dawn, weighing {i * 13} tonnes." for i in range(sentences))


@pytest.fixture
def small_disk(request, tmp_path):
    """A 24 MiB tmpfs (fixtures_disk.py); None when the test already ran in a child process."""
    yield from small_disk_at(request, tmp_path / "disk", 24)


GARDEN = ("Watering. Water tomato plants deeply twice a week, early in the morning.\n\n"
          "Pruning. Remove the side shoots of tomatoes when they are five centimetres long.\n")


@pytest.fixture
def window_on(qtbot, tmp_path, monkeypatch, embedder):
    """A window without a model on a library at `root`, using the session's real embedder."""
    monkeypatch.setenv("FOLIO_QSETTINGS", str(tmp_path / "folio.ini"))
    windows = []

    def make(root, batch_size: int = 8):
        folio = Folio(root)
        folio._library = Library.open(root, embedder)  # the loaded model, not a second copy
        w = MainWindow(folio=folio, load_model=False)
        qtbot.addWidget(w)
        w.library.batch_size = batch_size  # many batches per file: progress to watch
        w.show()
        w.start()
        qtbot.waitUntil(lambda: w.library.opened, timeout=60_000)
        windows.append(w)
        return w

    yield make
    for w in windows:
        w.close()


def write_docs(tmp_path, sentences: int = 250):
    docs = tmp_path / "docs"
    docs.mkdir(exist_ok=True)
    garden, harbour = docs / "garden.txt", docs / "harbour.txt"
    garden.write_text(GARDEN, "utf-8")
    harbour.write_text(harbour_text(sentences), "utf-8")
    return str(garden), str(harbour)


def wait_idle(qtbot, lib, *paths, status="ready"):
    qtbot.waitUntil(lambda: not lib.indexing and all(
        any(d.path == p and d.status == status for d in lib.docs) for p in paths),
        timeout=INGEST_TIMEOUT)


def test_row_shows_progress_while_its_file_indexes(qtbot, window_on, tmp_path):
    garden, harbour = write_docs(tmp_path)
    window = window_on(tmp_path / "library")
    lib = window.library
    seen: list[tuple[int, object, bool]] = []

    def on_progress(path, percent):
        if path == harbour:
            items = lib.doc_items(path)
            # What the row holds at this moment, and that the delegate paints it.
            seen.append((percent, items[0].data(STATUS_COLUMN, PROGRESS_ROLE) if items else None,
                         not lib.tree.viewport().grab().isNull()))

    overall: list[int] = []
    lib.document_progress.connect(on_progress)
    lib.progress.valueChanged.connect(overall.append)
    lib.ingest([garden, harbour], None)
    wait_idle(qtbot, lib, garden, harbour)
    middle = [s for s in seen if 0 < s[0] < 100]
    assert middle, seen
    # The overall bar counts the part-done file too, not only whole files (1 of 2 = 500).
    assert any(500 < v < 1000 for v in overall), overall
    assert overall == sorted(overall)
    assert all(percent == shown and painted for percent, shown, painted in middle)
    values = [s[0] for s in seen]
    assert values == sorted(values)
    qtbot.waitUntil(lambda: all(i.text(STATUS_COLUMN) == "Ready" for i in lib.doc_items(harbour)))
    item = lib.doc_items(harbour)[0]
    assert item.data(STATUS_COLUMN, PROGRESS_ROLE) is None  # no bar on a ready row
    assert harbour not in lib.file_progress


def test_cancel_from_the_progress_bar_keeps_work_and_resumes(qtbot, window_on, tmp_path,
                                                             monkeypatch):
    garden, harbour = write_docs(tmp_path)
    window = window_on(tmp_path / "library")
    lib = window.library
    lib.ingest([garden], None)
    wait_idle(qtbot, lib, garden)

    def cancel_midway(path, percent):
        if path == harbour and percent > 0 and lib.cancel_btn.isEnabled():
            qtbot.mouseClick(lib.cancel_btn, Qt.MouseButton.LeftButton)

    lib.document_progress.connect(cancel_midway)
    with qtbot.waitSignal(lib.ingest_finished, timeout=INGEST_TIMEOUT) as finished:
        lib.ingest([harbour], None)
    lib.document_progress.disconnect(cancel_midway)
    assert finished.args[0].cancelled
    assert not lib.progress_box.isVisible()
    done, total = lib.file_progress[harbour]
    assert 0 < done < total
    # What was done stays: garden is ready and searchable; harbour is stopped, not live.
    qtbot.waitUntil(lambda: lib.is_stopped(harbour), timeout=30_000)
    record = window.folio.library.get(harbour)
    assert record.status == "indexing" and record.pending_version
    assert window.folio.library.get(garden).status == "ready"
    assert not hybrid_search(window.folio.library, "harbour crane", k=3, documents=[harbour])
    row = lib.doc_items(harbour)[0]
    assert row.text(STATUS_COLUMN).startswith("Stopped at ")
    assert "continue" in row.toolTip(STATUS_COLUMN)

    lib.tree.setCurrentItem(row)
    assert "Resume indexing" in lib.details.toPlainText()

    # Resume from its menu: it continues from what was stored, not from the start.
    starts = []
    lib.document_progress.connect(lambda p, pc: starts.append(pc) if p == harbour else None)
    doc_menu(qtbot, monkeypatch, window, harbour, "Resume indexing")
    wait_idle(qtbot, lib, harbour, garden)
    assert starts and starts[0] > 0
    assert hybrid_search(window.folio.library, "harbour crane", k=3)[0].path == harbour


def test_disk_full_shows_a_banner_and_the_window_keeps_working(qtbot, window_on, small_disk,
                                                               tmp_path):
    if small_disk is None:  # it ran, and passed, in a mount namespace of its own
        return
    garden, harbour = write_docs(tmp_path, sentences=700)
    window = window_on(small_disk.root / "library", batch_size=16)
    lib = window.library
    lib.ingest([garden], None)
    wait_idle(qtbot, lib, garden)

    small_disk.fill(leave=400_000)
    with qtbot.waitSignal(lib.error, timeout=INGEST_TIMEOUT,
                          check_params_cb=lambda m, _d: m.startswith("Disk full")):
        lib.ingest([harbour], None)
    qtbot.waitUntil(lambda: not lib.indexing)
    banner = window.banner
    assert banner.isVisible()
    text = banner.text.text()
    assert "Disk full while indexing harbour.txt" in text and "Free some space" in text
    assert not lib.progress_box.isVisible()
    qtbot.waitUntil(lambda: lib.status_of(harbour) == "failed", timeout=30_000)
    assert "disk is full" in lib.error_of(harbour)
    assert window.folio.library.get(garden).status == "ready"
    assert hybrid_search(window.folio.library, "water tomato plants", k=3)[0].path == garden

    # The window goes on: dismiss, free the space, resume; the document ends ready.
    qtbot.mouseClick(banner.close_btn, Qt.MouseButton.LeftButton)
    assert not banner.isVisible()
    small_disk.make_room()
    lib.ingest([harbour], None)
    wait_idle(qtbot, lib, harbour, garden)
    assert lib.status_of(harbour) == "ready"
