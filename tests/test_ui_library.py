"""The library panel through the real window (pytest-qt, offscreen), on the real embedder and
LanceDB: folders added by the dialog and by a drop into the selected collection, the overall
progress line with its rate and ETA, why a file failed in the details pane, a type icon per
kind of file, rows updated in place while indexing, and the embedder Settings choose."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QFileDialog
from test_ui_actions import doc_item, listed
from test_ui_progress import harbour_text, wait_idle, window_on  # noqa: F401  (fixture)
from test_embedder_install import published  # noqa: F401  (fixture)
from test_ui_window import drop

from app.core.service import Folio
from app.core.index.ingest import IngestEvent, ingest
from app.core.index.library import Library
from app.core.settings import AppSettings
from app.ui.icons import file_type_icon, file_type_of
from app.ui.library_panel import COLLECTION_ROLE, MIN_TITLE, STATUS_COLUMN, TYPE_COLUMN
from app.ui.main_window import MainWindow
from app.core.index.search import hybrid_search


def write(folder: Path, files: dict[str, str]) -> list[str]:
    out = []
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
        out.append(str(path))
    return out


def broken_and_two(qtbot, window_on, tmp_path, md: str, txt: str):
    """A window whose library holds a PDF that failed and two documents that are ready."""
    window = window_on(tmp_path / "library")
    lib = window.library
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"%PDF-1.7\nthis is not really a PDF\n")
    paths = write(tmp_path, {md: f"# {md.split()[0].capitalize()}\n\nBoats moor here.\n",
                             txt: "Water the tomatoes twice a week.\n"})
    lib.ingest([str(bad), *paths], None)
    qtbot.waitUntil(lambda: not lib.indexing and lib.status_of(str(bad)) == "failed"
                    and all(lib.status_of(p) == "ready" for p in paths), timeout=120_000)
    qtbot.waitUntil(lambda: all(p in lib._items for p in [str(bad), *paths]))
    return window, lib, bad, paths


def top_item(lib, collection: str):
    for i in range(lib.tree.topLevelItemCount()):
        top = lib.tree.topLevelItem(i)
        if top.data(0, COLLECTION_ROLE) == collection:
            return top
    raise AssertionError(f"no collection {collection!r} in the tree")


def test_add_folder_and_drop_a_folder_into_the_selected_collection(qtbot, window_on, tmp_path,
                                                                  monkeypatch):
    window = window_on(tmp_path / "library")
    lib = window.library
    (seed,) = write(tmp_path / "seed", {"seed.md": "# Seed\n\nSeeds sprout in spring.\n"})
    lib.ingest([seed], "Garden")
    wait_idle(qtbot, lib, seed)

    # "Add folder…" (the real button; the system dialog answers with a folder) with the
    # Unsorted row selected: its files, subfolders included, go in unsorted.
    chosen = write(tmp_path / "chosen", {"a.md": "# A\n\nApples ripen in autumn.\n",
                                         "deep/b.txt": "Beans climb their poles in June.\n"})
    monkeypatch.setattr(QFileDialog, "getExistingDirectory",
                        lambda *a, **k: str(tmp_path / "chosen"))
    lib.tree.setCurrentItem(None)
    qtbot.mouseClick(lib.add_folder_btn, Qt.MouseButton.LeftButton)
    wait_idle(qtbot, lib, *chosen)
    # The tree adds rows a batch per event-loop turn: wait for the rows, not only the records.
    qtbot.waitUntil(lambda: all(listed(lib).get(p) == {""} for p in chosen))

    # A folder dropped while the Garden collection is selected goes into Garden.
    dropped = write(tmp_path / "dropped", {"c.md": "# C\n\nCarrots like sandy soil.\n",
                                           "more/d.md": "# D\n\nDill self-seeds freely.\n"})
    lib.tree.setCurrentItem(top_item(lib, "Garden"))
    drop(lib.tree.viewport(), [tmp_path / "dropped"])
    wait_idle(qtbot, lib, *dropped)
    records = {d.path: d for d in window.folio.library.documents()}
    for p in dropped:
        assert records[p].collections == ["Garden"], records[p]
    qtbot.waitUntil(lambda: all(listed(lib).get(p) == {"Garden"} for p in dropped))
    assert records[seed].collections == ["Garden"]
    qtbot.waitUntil(lambda: top_item(lib, "Garden").text(0).endswith("(3)"))


def test_progress_line_shows_files_passages_rate_and_eta(qtbot, window_on, tmp_path):
    window = window_on(tmp_path / "library")
    lib = window.library
    paths = write(tmp_path / "docs", {"harbour.txt": harbour_text(250),
                                      "quay.txt": harbour_text(60)})
    lines: list[str] = []
    lib.document_progress.connect(lambda _p, _pc: lines.append(lib.progress_label.text()))
    lib.ingest(paths, None)
    assert lib.progress_box.isVisible() and lib.cancel_btn.isEnabled()
    wait_idle(qtbot, lib, *paths)
    pattern = re.compile(r"^\d of 2 files · [\d,]+ passages · \d+\.\d passages/s · ETA \S")
    assert any(pattern.search(line) for line in lines), lines
    assert any("harbour.txt" in line for line in lines)
    assert not lib.progress_box.isVisible()


def test_failed_file_says_why_in_the_details_pane(qtbot, window_on, tmp_path):
    window = window_on(tmp_path / "library")
    lib = window.library
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"%PDF-1.7\nthis is not really a PDF\n")
    (good,) = write(tmp_path, {"fine.md": "# Fine\n\nThis one reads well.\n"})
    lib.ingest([str(bad), good], None)
    qtbot.waitUntil(lambda: not lib.indexing and lib.status_of(str(bad)) == "failed"
                    and lib.status_of(good) == "ready", timeout=120_000)
    reason = lib.error_of(str(bad))
    assert reason
    qtbot.waitUntil(lambda: any(d.path == str(bad) for d in lib.docs))
    item = doc_item(lib, str(bad))
    lib.tree.setCurrentItem(item)
    text = lib.details.toPlainText()
    assert "broken.pdf" in text and "Status: Failed" in text
    assert "Why it failed:" in text and reason in text
    assert reason in item.toolTip(STATUS_COLUMN)


def test_each_kind_of_file_has_its_own_icon(qtbot, window_on, tmp_path):
    assert file_type_of("/a/b/Guide.PDF") == "pdf"
    assert file_type_of("notes.docx") == "docx"
    assert file_type_of("page.htm") == "html"
    assert file_type_of("script.py") == "code"
    assert file_type_of("README") == "file"
    images = {kind: file_type_icon(kind).pixmap(24, 24).toImage()
              for kind in ("pdf", "docx", "md", "html", "code", "file")}
    assert all(not img.isNull() for img in images.values())
    kinds = list(images)
    for i, a in enumerate(kinds):
        for b in kinds[i + 1:]:
            assert images[a] != images[b], (a, b)

    window = window_on(tmp_path / "library")
    lib = window.library
    paths = write(tmp_path, {"one.md": "# One\n\nA line.\n", "two.txt": "Another line.\n"})
    lib.ingest(paths, None)
    wait_idle(qtbot, lib, *paths)
    md, txt = (doc_item(lib, p).icon(0).pixmap(16, 16).toImage() for p in paths)
    assert md == file_type_icon("md").pixmap(16, 16).toImage()
    assert txt == file_type_icon("txt").pixmap(16, 16).toImage()
    assert md != txt


def test_indexing_events_update_rows_in_place_and_rebuilds_are_folded(qtbot, window_on, tmp_path,
                                                                      monkeypatch):
    """Thousands of files mean thousands of events: each must not rebuild the whole tree on
    the GUI thread. A status change repaints its own row; new rows wait for one rebuild."""
    window = window_on(tmp_path / "library")
    lib = window.library
    paths = write(tmp_path / "docs", {f"f{i:03}.md": f"# F{i}\n\nLine {i}.\n" for i in range(5)})
    lib.ingest(paths, None)
    wait_idle(qtbot, lib, *paths)
    qtbot.waitUntil(lambda: not lib._rebuild_timer.isActive())

    rebuilds = []
    real_clear = lib.tree.clear
    monkeypatch.setattr(lib.tree, "clear", lambda: (rebuilds.append(1), real_clear()))
    row = doc_item(lib, paths[0])
    lib._ingest_event(IngestEvent("file_start", path=paths[0]))
    assert doc_item(lib, paths[0]) is row and row.text(STATUS_COLUMN) == "Indexing…"
    lib._ingest_event(IngestEvent("file", path=paths[0], status="ready"))
    assert doc_item(lib, paths[0]) is row and row.text(STATUS_COLUMN) == "Ready"
    assert rebuilds == []

    # 300 files announced one event at a time, 50 of them into a new collection: the rows
    # are added to the tree in place, a few hundred per turn of the loop, never rebuilt.
    many = [str(tmp_path / "many" / f"m{i:03}.md") for i in range(300)]
    lib.ingest_job_collection = None
    for n, p in enumerate(many):
        if n >= 250:
            lib._collection_of[p] = "Pumps"
        lib._ingest_event(("queued", [p]))
        lib._ingest_event(IngestEvent("file_start", path=p))
    assert len(listed(lib)) == len(paths)  # nothing walked the tree yet
    qtbot.waitUntil(lambda: len(listed(lib)) == len(paths) + len(many)
                    and not lib._rebuild_timer.isActive())
    assert rebuilds == []
    assert doc_item(lib, paths[0]) is row  # the rows already there are the same objects
    assert all(doc_item(lib, p).text(STATUS_COLUMN) == "Indexing…" for p in many[:3])
    assert listed(lib)[many[-1]] == {"Pumps"}
    names = [lib.tree.topLevelItem(i).text(0) for i in range(lib.tree.topLevelItemCount())]
    assert names == ["Pumps  (50)", f"Unsorted  ({len(paths) + 250})"]
    unsorted = lib.tree.topLevelItem(1)
    titles = [unsorted.child(i).text(0).lower() for i in range(unsorted.childCount())]
    assert titles == sorted(titles)
    lib.overlay.clear()  # leave no made-up rows for the window's close


# -- the embedder Settings choose ----------------------------------------------------------------

@pytest.fixture
def minilm_copy(tmp_path):
    """A second embedder folder: the packaged all-MiniLM-L6-v2 under another name."""
    from app.core.index.embedder import resolve_spec

    link = tmp_path / "minilm-copy"
    link.symlink_to(resolve_spec("all-MiniLM-L6-v2").path, target_is_directory=True)
    return link


def test_a_new_library_is_built_with_the_embedder_settings_choose(tmp_path, minilm_copy):
    folio = Folio(tmp_path / "library", settings=AppSettings(embedder=str(minilm_copy)))
    try:
        assert folio.library.embedder_name == "minilm-copy"
        assert folio.embedder_mismatch() is None
    finally:
        folio.close()
    # An existing library keeps what built it, and says what Settings would change.
    again = Folio(tmp_path / "library", settings=AppSettings())
    try:
        assert again.library.embedder_name == "minilm-copy"
        assert again.embedder_mismatch() == ("minilm-copy", "all-MiniLM-L6-v2")
    finally:
        again.close()


def test_settings_embedder_differs_from_the_library_offers_a_reindex(qtbot, tmp_path, monkeypatch,
                                                                     embedder, minilm_copy):
    monkeypatch.setenv("FOLIO_QSETTINGS", str(tmp_path / "folio.ini"))
    root = tmp_path / "library"
    (path,) = write(tmp_path / "docs", {"lighthouse.md": "# Lighthouse\n\nThe Karnvik "
                                        "lighthouse was built in 1894 from grey granite.\n"})
    lib = Library.open(root, embedder)
    for _ in ingest(lib, [path]):
        pass
    assert lib.embedder_name == "all-MiniLM-L6-v2"
    AppSettings(embedder=str(minilm_copy)).save()

    folio = Folio(root)
    folio._library = lib
    window = MainWindow(folio=folio, load_model=False)
    qtbot.addWidget(window)
    window.show()
    window.start()
    try:
        banner = window.banner
        qtbot.waitUntil(lambda: banner.isVisible() and banner.action_btn.isVisible(),
                        timeout=60_000)
        assert "all-MiniLM-L6-v2" in banner.text.text()
        assert "minilm-copy" in banner.text.text()
        assert banner.action_btn.text() == "Re-index with minilm-copy"
        statuses: list[tuple[str, str]] = []
        window.library.document_status.connect(lambda p, s: statuses.append((p, s)))
        qtbot.mouseClick(banner.action_btn, Qt.MouseButton.LeftButton)
        assert not banner.isVisible()
        qtbot.waitUntil(lambda: (path, "ready") in statuses and not window.library.indexing,
                        timeout=120_000)
        assert (path, "indexing") in statuses
        assert lib.embedder_name == "minilm-copy"
        assert lib.embedder.name == "minilm-copy"
        hits = hybrid_search(lib, "When was the lighthouse built?", k=1)
        assert hits and hits[0].path == path
        assert folio.embedder_mismatch() is None
    finally:
        window.close()


def test_install_a_downloadable_embedder_from_settings(qtbot, window_on, tmp_path, monkeypatch,
                                                       published):
    """Settings list a downloadable embedder as not installed; Install fetches it (a real pip
    run on local part wheels), and choosing it then offers the re-index."""
    links, spec, _ = published
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    window = window_on(tmp_path / "library")
    window.open_settings_dialog()
    dialog = window.settings_dialog
    combo = dialog.embedder_combo
    at = combo.findData(spec.name)
    assert at >= 0 and combo.itemText(at) == f"{spec.name} (not installed)"
    assert not dialog.embedder_install_btn.isVisible()
    combo.setCurrentIndex(at)
    assert dialog.embedder_install_btn.isVisible()
    assert "not installed yet" in dialog.embedder_note.text()
    qtbot.mouseClick(dialog.embedder_install_btn, Qt.MouseButton.LeftButton)
    assert window.index_status.text().startswith(f"Installing {spec.name}")
    qtbot.waitUntil(lambda: combo.itemText(at) == spec.name, timeout=120_000)
    assert not dialog.embedder_install_btn.isVisible()
    assert window.embedder_job is None and window.index_status.text() == ""
    from app.core.index.embedder_install import is_installed

    assert is_installed(spec.name)
    with qtbot.waitSignal(dialog.settings_changed):
        qtbot.mouseClick(dialog.ok_button, Qt.MouseButton.LeftButton)
    banner = window.banner
    qtbot.waitUntil(lambda: banner.action_btn.isVisible(), timeout=30_000)
    assert banner.action_btn.text() == f"Re-index with {spec.name}"


def test_the_filter_box_finds_documents_by_name_type_and_status(qtbot, window_on, tmp_path):
    import time as _time

    window, lib, bad, paths = broken_and_two(qtbot, window_on, tmp_path, "harbour notes.md",
                                             "garden.txt")

    def visible() -> set[str]:
        return {Path(p).name for p, items in lib._items.items()
                if any(not i.isHidden() for i in items)}

    qtbot.keyClicks(lib.filter_edit, "failed")
    assert visible() == {"broken.pdf"}
    lib.filter_edit.clear()
    qtbot.keyClicks(lib.filter_edit, "txt")
    assert visible() == {"garden.txt"}
    lib.filter_edit.clear()
    qtbot.keyClicks(lib.filter_edit, "NOTES harbour")  # every word, any case
    assert visible() == {"harbour notes.md"}
    top = lib.tree.topLevelItem(0)
    assert not top.isHidden() and "(1 of 3)" in top.text(0)
    qtbot.keyClicks(lib.filter_edit, " nothing")
    assert visible() == set() and top.isHidden()
    lib.filter_edit.clear()
    assert visible() == {"broken.pdf", "garden.txt", "harbour notes.md"}
    assert "(3)" in top.text(0)

    # A document added while a filter is set is filtered too.
    qtbot.keyClicks(lib.filter_edit, "ready")
    (later,) = write(tmp_path, {"later.md": "# Later\n\nOne more.\n"})
    lib.ingest([later], None)
    qtbot.waitUntil(lambda: lib.status_of(later) == "ready" and later in lib._items,
                    timeout=120_000)
    qtbot.waitUntil(lambda: "later.md" in visible())
    assert "broken.pdf" not in visible()
    # A status that comes to match the filter while it is set shows its row.
    lib.filter_edit.clear()
    qtbot.keyClicks(lib.filter_edit, "failed")
    worse = tmp_path / "worse.pdf"
    worse.write_bytes(b"%PDF-1.7\nnot a PDF either\n")
    lib.ingest([str(worse)], None)
    qtbot.waitUntil(lambda: lib.status_of(str(worse)) == "failed"
                    and visible() == {"broken.pdf", "worse.pdf"}, timeout=120_000)
    lib.filter_edit.clear()
    # The date reads as a date, with the full one in the tooltip.
    from app.core.base.units import human_date

    added = lib._all_rows()[later]["added"]
    qtbot.waitUntil(lambda: doc_item(lib, later).text(3) == human_date(added))  # the listing
    item = doc_item(lib, later)
    assert item.text(3)[:5] in ("today", "yeste")
    assert item.toolTip(3) == _time.strftime("Added %Y-%m-%d %H:%M", _time.localtime(added))


def test_sorting_by_a_column_orders_each_collection_and_follows_new_rows(qtbot, window_on,
                                                                         tmp_path):
    window, lib, bad, paths = broken_and_two(qtbot, window_on, tmp_path, "beta notes.md",
                                             "alpha.txt")

    def order() -> list[str]:  # (a rebuild makes new rows: read the tree each time)
        top = lib.tree.topLevelItem(0)
        return [Path(lib._doc_path(top.child(i))).name for i in range(top.childCount())]

    header = lib.tree.header()
    assert header.sortIndicatorSection() == 0  # by title, A to Z
    top = lib.tree.topLevelItem(0)
    titles = [top.child(i).text(0).casefold() for i in range(top.childCount())]
    assert titles == sorted(titles)

    # A click on a header sorts by it; Status puts what needs the user first.
    status_x = header.sectionViewportPosition(STATUS_COLUMN) + 5
    qtbot.mouseClick(header.viewport(), Qt.MouseButton.LeftButton,
                     pos=header.viewport().rect().topLeft() + QPoint(status_x, 5))
    assert header.sortIndicatorSection() == STATUS_COLUMN
    assert order()[0] == "broken.pdf"
    lib.sort_by(STATUS_COLUMN, Qt.SortOrder.DescendingOrder)  # a second click: reversed
    assert order()[-1] == "broken.pdf"

    # By type (the column shows once asked for): md, pdf, txt.
    window.resize(1400, 900)
    window.splitter.setSizes([700, 700, 0])  # a wide sidebar: room for more columns
    lib.show_column(TYPE_COLUMN)
    qtbot.waitUntil(lambda: not header.isSectionHidden(TYPE_COLUMN))
    assert doc_item(lib, paths[1]).text(TYPE_COLUMN) == "TXT"
    lib.sort_by(TYPE_COLUMN)
    assert order() == ["beta notes.md", "broken.pdf", "alpha.txt"]

    # By date added, newest first: a document added now goes to the top; and a row whose
    # status changes moves to its place while sorted by status.
    lib.sort_by(3, Qt.SortOrder.DescendingOrder)
    (later,) = write(tmp_path, {"zulu.md": "# Zulu\n\nOne more.\n"})
    lib.ingest([later], None)
    qtbot.waitUntil(lambda: lib.status_of(later) == "ready" and later in lib._items,
                    timeout=120_000)
    qtbot.waitUntil(lambda: order()[0] == "zulu.md")
    # From the keyboard: View > Sort library by > Status.
    view_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&View")
    by = next(a.menu() for a in view_menu.actions() if a.text() == "Sort library by")
    next(a for a in by.actions() if a.text() == "Status").trigger()
    assert header.sortIndicatorSection() == STATUS_COLUMN and not lib._descending()
    (new,) = write(tmp_path, {"aardvark.md": "# Aardvark\n\nThe last one.\n"})
    lib.ingest([new], None)
    qtbot.waitUntil(lambda: lib.status_of(new) == "ready" and new in lib._items,
                    timeout=120_000)
    # Failed first; the ready ones by title (the tie-break), the new one among them.
    qtbot.waitUntil(lambda: order() == ["broken.pdf", "aardvark.md", "alpha.txt",
                                        "beta notes.md", "zulu.md"])

    # A narrow sidebar keeps the title readable: the optional columns give way (Pages, Type,
    # then the date) and come back when it is wide again; Status always shows.
    window.splitter.setSizes([260, 1140, 0])
    qtbot.waitUntil(lambda: header.isSectionHidden(TYPE_COLUMN) and header.isSectionHidden(3))
    assert not header.isSectionHidden(STATUS_COLUMN)
    assert lib.tree.columnWidth(0) >= MIN_TITLE - 40  # (the stretch gives what is left)
    window.splitter.setSizes([700, 700, 0])
    qtbot.waitUntil(lambda: not header.isSectionHidden(TYPE_COLUMN)
                    and not header.isSectionHidden(3))
