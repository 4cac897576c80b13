"""The source viewer, driven as a user would: real files, the real loader and splitter."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QApplication

pytest.importorskip("PySide6.QtPdfWidgets")

from app.core.documents.formats import load
from app.core.documents.splitter import Splitter
from app.core.documents.base import document_text
from app.ui.viewer import (
    CHANGED_NOTICE,
    SourceViewer,
    locate_passage,
    pdf_phrases,
)


def make_pdf(path: Path, pages: int = 5) -> Path:
    import pymupdf

    doc = pymupdf.open()
    for i in range(1, pages + 1):
        page = doc.new_page()
        page.insert_text((72, 80), f"Chapter {i}", fontsize=18)
        body = (
            f"This is page {i} of the pump manual. The valve assembly number {i}{i}7 must be "
            f"tightened to {i * 5} newton metres before the pump is primed. Operators should "
            f"record the reading in the page {i} logbook and check the seal for leaks after "
            f"{i + 9} minutes."
        )
        page.insert_textbox(pymupdf.Rect(72, 100, 520, 400), body, fontsize=11)
    doc.save(path)
    return path


MARKDOWN = """# Pump manual

## Safety

Always switch the pump off at the isolator before opening the housing. Wear gloves.

## Priming

Fill the casing with water through the priming plug until it overflows. Close the plug,
then start the motor and watch the pressure gauge rise above two bar within a minute.

## Storage

Drain the casing before frost and keep the manual with the pump.
"""


def source_for(path: Path, page: int | None = None, contains: str | None = None) -> dict:
    """A source as search/chat give it: a real chunk of the real file."""
    chunks = Splitter().split(load(path))
    for c in chunks:
        if (page is None or c.page == page) and (contains is None or contains in c.text):
            return {
                "path": str(path),
                "page": c.page,
                "page_end": c.page_end,
                "text": c.text,
                "char_start": c.char_start,
                "char_end": c.char_end,
                "section": list(c.section),
            }
    raise AssertionError("no such chunk")


@pytest.fixture
def viewer(qtbot):
    w = SourceViewer()
    qtbot.addWidget(w)
    w.resize(900, 800)
    w.show()
    yield w
    w.wait_for_workers()


def test_pdf_opens_at_cited_page_with_passage_highlighted(qtbot, viewer, tmp_path):
    pdf = make_pdf(tmp_path / "manual.pdf")
    source = source_for(pdf, page=3)
    with qtbot.waitSignal(viewer.source_shown) as shown:
        viewer.show_source(source)
    assert shown.args[0]["mode"] == "pdf" and shown.args[0]["found"]
    assert viewer.mode == "pdf"
    nav = viewer.pdf_view.pageNavigator()
    assert nav.currentPage() == 2
    model = viewer.search_model
    qtbot.waitUntil(lambda: viewer.pdf_view.currentSearchResultIndex() >= 0)
    current = model.resultAtIndex(viewer.pdf_view.currentSearchResultIndex())
    assert current.page() == 2
    assert "337" in model.searchString()  # a phrase of this page's passage, not another's
    assert viewer.page_box.value() == 3 and viewer.page_box.suffix() == " / 5"
    assert viewer.notice.isHidden()
    # After events settle (layout, background search) the view is still at page 3.
    qtbot.waitUntil(lambda: model.status() == model.Status.Finished)
    assert nav.currentPage() == 2

    # Toolbar: next page, then the page box, then back.
    viewer.next_action.trigger()
    assert nav.currentPage() == 3 and viewer.page_box.value() == 4
    viewer.page_box.setValue(1)
    assert nav.currentPage() == 0
    viewer.zoom_in_action.trigger()
    assert not viewer.fit_width_action.isChecked()
    viewer.fit_width_action.trigger()
    assert viewer.pdf_view.zoomMode() == viewer.pdf_view.ZoomMode.FitToWidth


def test_pdf_other_page_then_same_file_reuses_document(qtbot, viewer, tmp_path):
    pdf = make_pdf(tmp_path / "manual.pdf")
    viewer.show_source(source_for(pdf, page=5))
    assert viewer.pdf_view.pageNavigator().currentPage() == 4
    qtbot.waitUntil(lambda: viewer.pdf_view.currentSearchResultIndex() >= 0)
    viewer.show_source(source_for(pdf, page=2))
    assert viewer.pdf_view.pageNavigator().currentPage() == 1
    qtbot.waitUntil(
        lambda: (
            viewer.pdf_view.currentSearchResultIndex() >= 0
            and viewer.search_model.resultAtIndex(viewer.pdf_view.currentSearchResultIndex()).page()
            == 1
        )
    )


def test_pdf_passage_not_on_page_says_so(qtbot, viewer, tmp_path):
    pdf = make_pdf(tmp_path / "manual.pdf")
    source = {"path": str(pdf), "page": 2, "text": "Nothing like this is in the file at all."}
    viewer.show_source(source)
    assert viewer.pdf_view.pageNavigator().currentPage() == 1
    assert "not found" in viewer.notice_text()


def test_text_source_selects_the_passage(qtbot, viewer, tmp_path):
    md = tmp_path / "manual.md"
    md.write_text(MARKDOWN, "utf-8")
    source = source_for(md, contains="priming plug")
    with qtbot.waitSignal(viewer.source_shown, timeout=10000) as shown:
        viewer.show_source(source)
    assert shown.args[0] == {
        "path": str(md),
        "mode": "text",
        "page": None,
        "found": True,
        "changed": False,
    }
    assert viewer.mode == "text"
    assert viewer.text_view.isVisible() and viewer.text_view.isReadOnly()
    text = document_text(load(md).blocks)
    assert viewer.text_view.toPlainText() == text
    assert viewer.selected_passage() == text[source["char_start"] : source["char_end"]]
    assert "priming plug" in viewer.selected_passage()
    assert viewer.notice_text() == ""


def test_changed_file_shows_notice_and_still_finds_passage(qtbot, viewer, tmp_path):
    md = tmp_path / "manual.md"
    md.write_text(MARKDOWN, "utf-8")
    source = source_for(md, contains="priming plug")
    passage = source["text"]
    md.write_text(
        "# Pump manual\n\nA new introduction was added after indexing, which moves "
        "every later passage further into the file.\n\n" + MARKDOWN.split("\n", 1)[1],
        "utf-8",
    )
    with qtbot.waitSignal(viewer.source_shown, timeout=10000) as shown:
        viewer.show_source(source)
    assert shown.args[0]["changed"] and shown.args[0]["found"]
    assert viewer.notice.isVisible()
    assert CHANGED_NOTICE in viewer.notice_text()
    assert " ".join(viewer.selected_passage().split()) == " ".join(passage.split())


def test_missing_file_shows_message(qtbot, viewer, tmp_path):
    gone = tmp_path / "gone" / "report.pdf"
    with qtbot.waitSignal(viewer.source_shown) as shown:
        viewer.show_source({"path": str(gone), "page": 2, "text": "whatever"})
    assert shown.args[0]["mode"] == "message"
    assert viewer.mode == "message" and viewer.message.isVisible()
    assert str(gone) in viewer.message.text()
    assert "not there" in viewer.message.text()
    assert not viewer.open_action.isEnabled()


def test_unreadable_file_shows_reason_inline(qtbot, viewer, tmp_path):
    bad = tmp_path / "broken.docx"
    bad.write_bytes(b"this is not a zip file")
    with qtbot.waitSignal(viewer.source_shown, timeout=10000) as shown:
        viewer.show_source({"path": str(bad), "text": "whatever"})
    assert shown.args[0]["mode"] == "message"
    assert str(bad) in viewer.message.text()


def test_stale_load_is_ignored(qtbot, viewer, tmp_path):
    a, b = tmp_path / "a.md", tmp_path / "b.md"
    a.write_text("# A\n\nAlpha text about apples and orchards.\n", "utf-8")
    b.write_text("# B\n\nBeta text about bees and hives.\n", "utf-8")
    viewer.show_source({"path": str(a), "text": "Alpha text about apples and orchards."})
    with qtbot.waitSignal(
        viewer.source_shown, timeout=10000, check_params_cb=lambda info: info["path"] == str(b)
    ):
        viewer.show_source({"path": str(b), "text": "Beta text about bees and hives."})
    viewer.wait_for_workers()
    qtbot.wait(0)
    assert viewer.current_path() == str(b)
    assert viewer.selected_passage() == "Beta text about bees and hives."


def test_locate_passage_rules():
    text = "Intro.\n\nThe quick brown fox jumps.\n\nOutro 𝄞 text here."
    s = text.index("The quick")
    e = s + len("The quick brown fox jumps.")
    assert locate_passage(text, text[s:e], s, e) == locate_passage(text, text[s:e], s, e)
    exact = locate_passage(text, text[s:e], s, e)
    assert (exact.start, exact.end, exact.changed) == (s, e, False)
    # No offsets (older sources): found by text, not reported as a change.
    loose = locate_passage(text, "The quick  brown\nfox jumps.")
    assert (loose.start, loose.end, loose.changed) == (s, e, False)
    # Stale offsets: found by text, reported as a change.
    moved = locate_passage(text, text[s:e], s + 3, e + 3)
    assert (moved.start, moved.changed) == (s, True)
    # UTF-16 positions for Qt after a character outside the BMP.
    o = text.index("text here")
    after = locate_passage(text, "text here.", o, o + 10)
    assert after.qt_start == o + 1 and after.start == o
    gone = locate_passage(text, "Nothing of the sort appears anywhere in it.", 0, 5)
    assert not gone.found and gone.changed


def test_pdf_phrases_prefers_whole_passage_and_checks_page_text():
    page_text = "Chapter 3\r\nThe valve must be tightened to\r\n15 newton metres before use."
    passage = "Chapter 3\n\nThe valve must be tightened to 15 newton metres before use."
    phrases = pdf_phrases(passage, page_text)
    assert phrases[0] == "Chapter 3 The valve must be tightened to 15 newton metres before use."
    assert all(p.casefold() in " ".join(page_text.split()).casefold() for p in phrases)
    assert pdf_phrases("Entirely different words from some other page.", page_text) == []


def test_pdf_keeps_cited_page_when_shown_and_resized_later(qtbot, tmp_path):
    """The main window may open the viewer (a new tab or dock) after asking for a source."""
    pdf = make_pdf(tmp_path / "manual.pdf")
    w = SourceViewer()
    qtbot.addWidget(w)
    w.show_source(source_for(pdf, page=3))
    w.resize(700, 500)
    w.show()
    qtbot.waitExposed(w)
    w.resize(1000, 700)
    nav = w.pdf_view.pageNavigator()
    qtbot.waitUntil(lambda: w.pdf_view.viewport().width() > 900)
    QApplication.processEvents()  # the deferred re-jump (a zero timer) runs here
    assert nav.currentPage() == 2
    assert w.page_box.value() == 3
    # Once the user moves, the view no longer snaps back on resize.
    w.next_action.trigger()
    w.resize(800, 600)
    qtbot.waitUntil(lambda: w.pdf_view.viewport().width() < 900)
    QApplication.processEvents()
    assert nav.currentPage() == 3
