"""Loaders: every format turned into blocks with pages and sections; every failure a LoadError.

All inputs are generated here (PyMuPDF writes PDFs, python-docx writes DOCX, the rest is
written by hand), so the tests say exactly what each loader must handle.
"""

from __future__ import annotations

import os
import shutil
import zipfile
from pathlib import Path

import pymupdf
import pytest
from docgen import unreadable_file

from app.core.documents import common, formats, pdf
from app.core.documents.formats import SUPPORTED_EXTENSIONS, file_kind, is_supported, load
from app.core.documents.base import LoadedDocument, LoadError, document_text

HAS_TESSERACT = shutil.which("tesseract") is not None and pdf._ocr_setup() is not None
BLOCK_KINDS = {"heading", "text", "table", "list", "code"}


def check_doc(doc: LoadedDocument) -> LoadedDocument:
    """Invariants every loaded document must satisfy."""
    assert doc.blocks
    assert doc.title.strip()
    for b in doc.blocks:
        assert b.text.strip(), b
        assert b.kind in BLOCK_KINDS, b
        assert isinstance(b.section, tuple)
        assert b.page is None or (isinstance(b.page, int) and b.page >= 1)
        if doc.pages:
            assert b.page is not None and b.page <= doc.pages
    return doc


def text_of(doc: LoadedDocument) -> str:
    return document_text(doc.blocks)


def blocks_on(doc: LoadedDocument, page: int) -> str:
    return "\n".join(b.text for b in doc.blocks if b.page == page)


def section_of(doc: LoadedDocument, needle: str) -> tuple[str, ...]:
    for b in doc.blocks:
        if needle in b.text:
            return b.section
    raise AssertionError(f"{needle!r} not found")


# --------------------------------------------------------------------------------------
# PDF builders
# --------------------------------------------------------------------------------------


def write_pdf(
    path: Path, pages: list[list[tuple[float, str, float]]], *, toc=None, metadata=None
) -> Path:
    """pages: per page a list of (y, text, fontsize) lines written at x=72."""
    doc = pymupdf.open()
    for lines in pages:
        page = doc.new_page()
        for y, text, size in lines:
            page.insert_text((72, y), text, fontsize=size)
    if toc:
        doc.set_toc(toc)
    if metadata:
        doc.set_metadata(metadata)
    doc.save(path)
    doc.close()
    return path


def image_only_page(doc, text: str) -> None:
    """A page that shows `text` only as pixels (like a scan): no text layer."""
    src = pymupdf.open()
    page = src.new_page()
    page.insert_text((72, 150), text, fontsize=30)
    pix = page.get_pixmap(dpi=150)
    src.close()
    target = doc.new_page()
    target.insert_image(target.rect, pixmap=pix)


# --------------------------------------------------------------------------------------
# API basics and generic failures
# --------------------------------------------------------------------------------------


def test_supported_extensions_and_kinds():
    assert SUPPORTED_EXTENSIONS[".pdf"] == "pdf"
    assert SUPPORTED_EXTENSIONS[".markdown"] == "markdown"
    assert SUPPORTED_EXTENSIONS[".xhtml"] == "html"
    assert SUPPORTED_EXTENSIONS[".tsv"] == "csv"
    for ext in (".py", ".m", ".yml", ".toml", ".sql", ".rs", ".xml"):
        assert SUPPORTED_EXTENSIONS[ext] == "code"
    assert ".doc" not in SUPPORTED_EXTENSIONS
    assert file_kind(Path("A/B/Report.PDF")) == "pdf"
    assert file_kind("notes.rst") == "rst"
    assert file_kind(Path("x.xyz")) is None
    assert is_supported(Path("book.epub"))
    assert not is_supported(Path("old.doc"))


def test_unsupported_extension(tmp_path):
    p = tmp_path / "data.xyz"
    p.write_text("hello")
    with pytest.raises(LoadError, match=r"unsupported file type \.xyz"):
        load(p)


def test_missing_file(tmp_path):
    with pytest.raises(LoadError, match="no longer exists"):
        load(tmp_path / "gone.pdf")


def test_directory_is_refused(tmp_path):
    d = tmp_path / "folder.md"
    d.mkdir()
    with pytest.raises(LoadError, match="not a regular file"):
        load(d)


@pytest.mark.parametrize(
    "name", ["a.pdf", "a.docx", "a.txt", "a.md", "a.html", "a.csv", "a.epub", "a.py"]
)
def test_empty_file(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(b"")
    with pytest.raises(LoadError, match="the file is empty"):
        load(p)


def test_whitespace_only_text(tmp_path):
    p = tmp_path / "blank.txt"
    p.write_text("  \n\n \t \n")
    with pytest.raises(LoadError, match="no text"):
        load(p)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("junk.pdf", "not a valid PDF"),
        ("junk.docx", "not a valid Word document"),
        ("junk.txt", "binary data in a text file"),
        ("junk.md", "binary data in a text file"),
        ("junk.epub", "not a valid EPUB"),
    ],
)
def test_random_bytes(tmp_path, name, reason):
    p = tmp_path / name
    p.write_bytes(os.urandom(1) + bytes(range(256)) * 16)  # NUL bytes guaranteed
    with pytest.raises(LoadError, match=reason):
        load(p)


def test_unexpected_errors_become_load_errors(tmp_path, monkeypatch):
    def boom(path):
        raise ValueError("kaputt")

    monkeypatch.setitem(formats._LOADERS, "text", boom)
    p = tmp_path / "a.txt"
    p.write_text("hello")
    with pytest.raises(LoadError, match="could not read: kaputt"):
        load(p)


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
def test_permission_denied(tmp_path):
    p = unreadable_file(tmp_path)
    try:
        with pytest.raises(LoadError, match="permission denied"):
            load(p)
    finally:
        if not p.is_symlink():
            p.chmod(0o644)


def test_text_file_too_large(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "MAX_TEXT_BYTES", 1000)
    p = tmp_path / "big.txt"
    p.write_text("word " * 1000)
    with pytest.raises(LoadError, match="file too large"):
        load(p)


# --------------------------------------------------------------------------------------
# PDF
# --------------------------------------------------------------------------------------


def test_pdf_pages_toc_and_metadata(tmp_path):
    p = write_pdf(
        tmp_path / "manual.pdf",
        [
            [(72, "Intro", 18), (110, "Welcome to the alpha manual.", 11)],
            [(72, "Details", 16), (110, "The bravo subsystem is described here.", 11)],
            [(110, "More about bravo on the third page: charlie.", 11)],
            [(72, "Appendix", 18), (110, "Delta tables live in the appendix.", 11)],
        ],
        toc=[[1, "Intro", 1], [2, "Details", 2], [1, "Appendix", 4]],
        metadata={"title": "The Alpha Manual", "author": "Ada Lovelace", "subject": "testing"},
    )
    doc = check_doc(load(p))
    assert doc.kind == "pdf"
    assert doc.pages == 4
    assert doc.title == "The Alpha Manual"
    assert doc.author == "Ada Lovelace"
    assert doc.metadata.get("subject") == "testing"
    assert doc.warnings == []
    assert "alpha manual" in blocks_on(doc, 1)
    assert "bravo subsystem" in blocks_on(doc, 2)
    assert "charlie" in blocks_on(doc, 3)
    assert "Delta tables" in blocks_on(doc, 4)
    assert section_of(doc, "alpha manual") == ("Intro",)
    assert section_of(doc, "bravo subsystem") == ("Intro", "Details")
    assert section_of(doc, "charlie") == ("Intro", "Details")  # a section runs on
    assert section_of(doc, "Delta tables") == ("Appendix",)
    headings = [b for b in doc.blocks if b.kind == "heading"]
    assert [h.text for h in headings] == ["Intro", "Details", "Appendix"]
    assert [h.page for h in headings] == [1, 2, 4]


def test_pdf_page_numbers_are_physical_not_labels(tmp_path):
    p = tmp_path / "labels.pdf"
    doc = pymupdf.open()
    for i in range(3):
        doc.new_page().insert_text((72, 100), f"Physical page {i + 1} text.", fontsize=11)
    doc.set_page_labels([{"startpage": 0, "prefix": "", "style": "r", "firstpagenum": 1}])
    doc.save(p)
    doc.close()
    loaded = check_doc(load(p))
    assert [b.page for b in loaded.blocks] == [1, 2, 3]
    assert "Physical page 3" in blocks_on(loaded, 3)


def test_pdf_several_toc_entries_on_one_page(tmp_path):
    p = write_pdf(
        tmp_path / "dense.pdf",
        [
            [
                (72, "1 Overview", 16),
                (100, "Overview text about echo.", 11),
                (200, "1.1 Setup", 14),
                (230, "Setup text about foxtrot.", 11),
                (330, "1.2 Usage", 14),
                (360, "Usage text about golf.", 11),
            ],
            [(100, "Still usage on page two: hotel.", 11)],
        ],
        toc=[[1, "Overview", 1], [2, "Setup", 1], [2, "Usage", 1]],
    )
    doc = check_doc(load(p))
    assert section_of(doc, "echo") == ("Overview",)
    assert section_of(doc, "foxtrot") == ("Overview", "Setup")
    assert section_of(doc, "golf") == ("Overview", "Usage")
    assert section_of(doc, "hotel") == ("Overview", "Usage")
    # title falls back to the first heading-like text (no metadata title)
    assert doc.title


def test_pdf_toc_entry_without_visible_heading_applies_from_page_top(tmp_path):
    p = write_pdf(
        tmp_path / "hidden.pdf",
        [
            [(72, "Alpha", 16), (100, "Alpha text india.", 11)],
            [(100, "Page two text juliet.", 11), (300, "More page two text lima.", 11)],
            [(72, "Gamma", 16), (100, "Gamma text mike.", 11), (300, "Tail text november.", 11)],
        ],
        toc=[[1, "Alpha", 1], [1, "Beta Not Printed", 2], [1, "Gamma", 3], [2, "Invisible", 3]],
    )
    doc = check_doc(load(p))
    assert section_of(doc, "india") == ("Alpha",)
    assert section_of(doc, "juliet") == ("Beta Not Printed",)
    assert section_of(doc, "lima") == ("Beta Not Printed",)
    gamma = next(b for b in doc.blocks if b.text == "Gamma")
    assert gamma.kind == "heading" and gamma.section == ("Gamma",)
    # an entry that is not found after the last one found starts right after it
    assert section_of(doc, "mike") == ("Gamma", "Invisible")


def test_pdf_toc_entries_worded_otherwise_start_where_their_links_point(tmp_path):
    """An outline whose titles the page words differently ("Installing" for the heading
    "Getting it onto your machine") cuts the sections at the height each link points at,
    not all at the top of the page; entries found by title keep their place around them."""
    height = pymupdf.open().new_page().rect.height  # set_toc takes PDF space, from below

    def at(y: float) -> dict:
        return {"kind": pymupdf.LINK_GOTO, "page": 0, "to": pymupdf.Point(72, height - y)}

    p = write_pdf(
        tmp_path / "worded.pdf",
        [[(100, "Getting it onto your machine", 16), (130, "Download the file oscar.", 11),
          (250, "Usage", 16), (280, "Usage text papa.", 11),
          (400, "Making it go", 16), (430, "Press the start button quebec.", 11)]],
        toc=[[1, "Installing", 1, at(82)], [1, "Usage", 1, at(232)],
             [1, "Running", 1, at(382)]],
    )
    doc = check_doc(load(p))
    assert section_of(doc, "oscar") == ("Installing",)
    assert section_of(doc, "papa") == ("Usage",)
    assert section_of(doc, "quebec") == ("Running",)
    making = next(b for b in doc.blocks if b.text == "Making it go")
    assert making.section == ("Running",) and making.kind == "heading"
    # Without the links' heights the two unfound entries both started at the page's top.
    plain = check_doc(load(write_pdf(
        tmp_path / "plain.pdf",
        [[(100, "Getting it onto your machine", 16), (130, "Download the file oscar.", 11),
          (400, "Making it go", 16), (430, "Press the start button quebec.", 11)]],
        toc=[[1, "Installing", 1, {"kind": pymupdf.LINK_GOTO, "page": 0}],
             [1, "Running", 1, {"kind": pymupdf.LINK_GOTO, "page": 0}]])))
    assert section_of(plain, "oscar") == section_of(plain, "quebec")


def test_pdf_two_columns_read_column_by_column(tmp_path):
    p = tmp_path / "columns.pdf"
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 60), "A Two Column Article Title", fontsize=16)
    para = "word " * 40
    for i in range(4):
        y = 100 + i * 150
        page.insert_textbox(pymupdf.Rect(50, y, 290, y + 130), f"left{i} " + para, fontsize=10)
        page.insert_textbox(pymupdf.Rect(310, y, 550, y + 130), f"right{i} " + para, fontsize=10)
    page.insert_text((290, 800), "7", fontsize=9)  # a centred page number
    doc.save(p)
    doc.close()
    text = text_of(check_doc(load(p)))
    positions = {
        w: text.index(w) for w in [f"left{i}" for i in range(4)] + [f"right{i}" for i in range(4)]
    }
    assert max(positions[f"left{i}"] for i in range(4)) < min(
        positions[f"right{i}"] for i in range(4)
    )
    assert [positions[f"left{i}"] for i in range(4)] == sorted(
        positions[f"left{i}"] for i in range(4)
    )
    assert text.index("A Two Column Article Title") < positions["left0"]


def test_pdf_side_by_side_label_table_reads_row_by_row(tmp_path):
    """Narrow labels next to wide descriptions are not columns: keep rows together."""
    p = tmp_path / "defs.pdf"
    doc = pymupdf.open()
    page = doc.new_page()
    for i in range(6):
        y = 100 + i * 40
        page.insert_text((72, y), f"term{i}", fontsize=11)
        page.insert_text((200, y), f"definition{i} explains the term in words.", fontsize=11)
    doc.save(p)
    doc.close()
    text = text_of(check_doc(load(p)))
    order = [text.index(f"term{i}") for i in range(6)] + [
        text.index(f"definition{i}") for i in range(6)
    ]
    assert text.index("term1") > text.index("definition0")
    assert len(set(order)) == 12


def test_pdf_hyphenation_and_unwrapping(tmp_path):
    p = tmp_path / "hyphen.pdf"
    doc = pymupdf.open()
    doc.new_page().insert_text(
        (72, 100),
        "This sentence is an exam-\nple of careful hyphen-\nation across wrapped\n"
        "lines, and a well-\nKnown name.",
        fontsize=11,
    )
    doc.save(p)
    doc.close()
    text = text_of(check_doc(load(p)))
    assert "an example of careful hyphenation across wrapped lines" in text
    assert "well-Known" in text or "well- Known" in text  # capital after hyphen: not a split word


def test_pdf_running_headers_and_page_numbers_dropped(tmp_path):
    pages = []
    for i in range(6):
        pages.append(
            [
                (30, f"ACME Field Guide {i + 1}", 9),
                (120, f"Body of page {i + 1} talks about topic{i}.", 11),
                (820, f"{i + 1}", 9),
            ]
        )
    doc = check_doc(load(write_pdf(tmp_path / "guide.pdf", pages)))
    text = text_of(doc)
    assert "ACME Field Guide" not in text
    for i in range(6):
        assert f"topic{i}" in blocks_on(doc, i + 1)
    assert not any(b.text.strip().isdigit() for b in doc.blocks)


def test_pdf_bullets_become_list_blocks(tmp_path):
    p = tmp_path / "list.pdf"
    doc = pymupdf.open()
    doc.new_page().insert_text(
        (72, 100), "Shopping list:\n\u2022 apples\n\u2022 pears\n\u2022 plums", fontsize=11
    )
    doc.save(p)
    doc.close()
    blocks = check_doc(load(p)).blocks
    lists = [b for b in blocks if b.kind == "list"]
    assert lists and lists[0].text == "- apples\n- pears\n- plums"


def test_pdf_numbered_heading_is_not_a_list_but_numbered_items_are(tmp_path):
    p = tmp_path / "numbered.pdf"
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 80), "1. Introduction", fontsize=16)
    page.insert_text((72, 140), "Steps:\n1. unpack the box\n2. plug it in", fontsize=11)
    doc.save(p)
    doc.close()
    blocks = check_doc(load(p)).blocks
    assert blocks[0].text == "1. Introduction" and blocks[0].kind == "heading"
    steps = next(b for b in blocks if b.kind == "list")
    assert steps.text == "1. unpack the box\n2. plug it in"


def _scanned_pdf(path: Path) -> Path:
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 100), "Digital cover page text.", fontsize=12)
    image_only_page(doc, "Scanned invoice total")
    doc.save(path)
    doc.close()
    return path


def test_pdf_scanned_page_ocr_or_warning(tmp_path):
    """With Tesseract installed the image-only page is OCR'd; without it, a warning counts it."""
    doc = check_doc(load(_scanned_pdf(tmp_path / "scan.pdf")))
    assert "Digital cover page" in blocks_on(doc, 1)
    if HAS_TESSERACT:
        ocr_text = blocks_on(doc, 2).lower()
        assert "invoice" in ocr_text and "total" in ocr_text
        assert not any("no text layer" in w for w in doc.warnings)
    else:
        assert any("1 of 2 pages has no text layer" in w and "Tesseract" in w for w in doc.warnings)
        assert blocks_on(doc, 2) == ""


def test_pdf_scanned_page_with_ocr_off_warns(tmp_path):
    doc = check_doc(load(_scanned_pdf(tmp_path / "scan.pdf"), ocr=False))
    assert blocks_on(doc, 2) == ""
    assert any("1 of 2 pages has no text layer (scanned?)" in w for w in doc.warnings)


def test_pdf_without_tesseract_warns_and_suggests_it(tmp_path, monkeypatch):
    monkeypatch.setattr(pdf, "_ocr_setup", lambda: None)
    doc = check_doc(load(_scanned_pdf(tmp_path / "scan.pdf")))
    assert doc.warnings == [
        "1 of 2 pages has no text layer (scanned?); install Tesseract to OCR them"
    ]


def test_pdf_fully_scanned_without_ocr_is_an_error(tmp_path, monkeypatch):
    monkeypatch.setattr(pdf, "_ocr_setup", lambda: None)
    p = tmp_path / "allscan.pdf"
    doc = pymupdf.open()
    image_only_page(doc, "Nothing digital here")
    doc.save(p)
    doc.close()
    with pytest.raises(LoadError, match="no text could be extracted.*Tesseract"):
        load(p)


def test_pdf_blank_pages_are_not_called_scanned(tmp_path):
    p = tmp_path / "blank.pdf"
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 100), "Only the first page has text.", fontsize=11)
    doc.new_page()  # intentionally blank
    doc.save(p)
    doc.close()
    loaded = check_doc(load(p))
    assert loaded.pages == 2 and loaded.warnings == []


@pytest.mark.skipif(not HAS_TESSERACT, reason="Tesseract is not installed")
def test_ocr_setup_finds_tessdata():
    tessdata, language = pdf._ocr_setup()
    assert Path(tessdata, f"{language}.traineddata").is_file()


def test_pdf_encrypted_needs_password(tmp_path):
    p = tmp_path / "secret.pdf"
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 100), "Top secret text.", fontsize=11)
    doc.save(p, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="x", owner_pw="y")
    doc.close()
    with pytest.raises(LoadError, match="encrypted and needs a password"):
        load(p)


def test_pdf_owner_password_only_still_loads(tmp_path):
    p = tmp_path / "restricted.pdf"
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 100), "Readable but restricted.", fontsize=11)
    doc.save(
        p,
        encryption=pymupdf.PDF_ENCRYPT_AES_256,
        owner_pw="owner",
        user_pw="",
        permissions=pymupdf.PDF_PERM_PRINT,
    )
    doc.close()
    assert "Readable but restricted" in text_of(check_doc(load(p)))


def test_pdf_truncated(tmp_path):
    full = write_pdf(
        tmp_path / "full.pdf",
        [[(100, f"Page {i + 1} carries the word kilo{i}.", 11)] for i in range(8)],
    )
    data = full.read_bytes()
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(data[: len(data) // 2])
    try:
        doc = load(cut)
    except LoadError as exc:
        assert "not a valid PDF" in str(exc) or "no text" in str(exc)
    else:
        check_doc(doc)
        assert "kilo0" in text_of(doc)  # the first pages survive
        assert any("repaired" in w for w in doc.warnings)


def test_pdf_not_really_a_pdf_but_text(tmp_path):
    p = tmp_path / "fake.pdf"
    p.write_text("just some text pretending to be a PDF " * 20)
    with pytest.raises(LoadError, match="not a valid PDF"):
        load(p)


# --------------------------------------------------------------------------------------
# DOCX
# --------------------------------------------------------------------------------------


def test_docx_structure_tables_lists_properties(tmp_path):
    import datetime

    import docx

    d = docx.Document()
    d.core_properties.title = "Quarterly Report"
    d.core_properties.author = "Grace Hopper"
    d.core_properties.subject = "finance"
    d.core_properties.keywords = "q3, revenue"
    d.core_properties.created = datetime.datetime(2024, 1, 2, 3, 4, 5)
    d.add_paragraph("Preamble before any heading.")
    d.add_heading("Summary", level=1)
    d.add_paragraph("Revenue grew by ten percent.")
    d.add_heading("Regions", level=2)
    d.add_paragraph("North", style="List Bullet")
    d.add_paragraph("South", style="List Bullet")
    d.add_paragraph("Step one", style="List Number")
    d.add_paragraph("After the list.")
    table = d.add_table(rows=3, cols=2)
    for r, (a, b) in enumerate([("Region", "Sales"), ("North", "10 | 11"), ("South", "20")]):
        table.cell(r, 0).text = a
        table.cell(r, 1).text = b
    d.add_paragraph("Between table and next heading.")
    d.add_heading("Outlook", level=1)
    d.add_paragraph("Bright.")
    p = tmp_path / "report.docx"
    d.save(p)

    doc = check_doc(load(p))
    assert doc.kind == "docx"
    assert doc.pages is None and all(b.page is None for b in doc.blocks)
    assert doc.title == "Quarterly Report"
    assert doc.author == "Grace Hopper"
    assert doc.metadata["subject"] == "finance"
    assert doc.metadata["keywords"] == "q3, revenue"
    assert doc.metadata["created"].startswith("2024-01-02")
    texts = [b.text for b in doc.blocks]
    # body order is kept, table included in place
    assert texts.index("Revenue grew by ten percent.") < texts.index("After the list.")
    table_block = next(b for b in doc.blocks if b.kind == "table")
    assert texts.index("After the list.") < texts.index(table_block.text)
    assert texts.index(table_block.text) < texts.index("Between table and next heading.")
    assert table_block.text.splitlines() == [
        "| Region | Sales |",
        "| --- | --- |",
        "| North | 10 \\| 11 |",
        "| South | 20 |",
    ]
    assert table_block.section == ("Summary", "Regions")
    list_block = next(b for b in doc.blocks if b.kind == "list")
    assert list_block.text == "- North\n- South\n- Step one"
    assert list_block.section == ("Summary", "Regions")
    headings = [(b.text, b.section) for b in doc.blocks if b.kind == "heading"]
    assert headings == [
        ("Summary", ("Summary",)),
        ("Regions", ("Summary", "Regions")),
        ("Outlook", ("Outlook",)),
    ]
    assert section_of(doc, "Preamble") == ()
    assert section_of(doc, "Bright.") == ("Outlook",)


def test_docx_title_style_and_fallback_title(tmp_path):
    import docx

    d = docx.Document()
    d.add_heading("The Document Title", level=0)  # "Title" style
    d.add_paragraph("Intro under the title.")
    d.add_heading("Chapter", level=1)
    d.add_paragraph("Chapter text.")
    p = tmp_path / "untitled.docx"
    d.save(p)
    doc = check_doc(load(p))
    assert doc.title == "The Document Title"
    assert section_of(doc, "Intro under") == ("The Document Title",)
    assert section_of(doc, "Chapter text") == ("Chapter",)


def test_docx_zip_without_word_content(tmp_path):
    p = tmp_path / "other.docx"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("hello.txt", "not word")
    with pytest.raises(LoadError, match="not a valid Word document"):
        load(p)


def test_docx_old_binary_doc_renamed(tmp_path):
    p = tmp_path / "old.docx"
    p.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 600)
    with pytest.raises(LoadError, match="not a valid Word document.*97-2003"):
        load(p)


def test_docx_zip_bomb_ratio_refused(tmp_path):
    p = tmp_path / "bomb.docx"
    with zipfile.ZipFile(p, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("[Content_Types].xml", "<Types/>")
        zf.writestr("word/document.xml", b"\0" * (16 * 1024 * 1024))
    with pytest.raises(LoadError, match="zip bomb"):
        load(p)


def test_docx_too_large_uncompressed_refused(tmp_path, monkeypatch):
    import docx

    monkeypatch.setattr(common, "MAX_DOCX_UNCOMPRESSED", 10_000)
    d = docx.Document()
    d.add_paragraph("tiny")
    p = tmp_path / "big.docx"
    d.save(p)
    with pytest.raises(LoadError, match="too large to open safely"):
        load(p)


def test_docx_truncated(tmp_path):
    import docx

    d = docx.Document()
    d.add_paragraph("Some text " * 200)
    p = tmp_path / "cut.docx"
    d.save(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(LoadError, match="not a valid Word document"):
        load(p)


# --------------------------------------------------------------------------------------
# Markdown, reStructuredText, plain text, code, CSV
# --------------------------------------------------------------------------------------

MARKDOWN = """---
title: Front Matter Title
author: Someone
---
# Guide

Intro paragraph
spanning two lines.

## Install

```bash
# not a heading, a shell comment
pip install folio

## still inside the fence
```

- first item
- second item
  continued

1. one
2. two

Usage
-----

| a | b |
|---|---|
| 1 | 2 |

    indented code
    block

Setext One
==========

Last words.
"""


def test_markdown_structure(tmp_path):
    p = tmp_path / "guide.md"
    p.write_text(MARKDOWN, encoding="utf-8")
    doc = check_doc(load(p))
    assert doc.kind == "markdown"
    assert doc.title == "Front Matter Title"
    assert doc.author == "Someone"
    assert "title:" not in text_of(doc)
    headings = [(b.text, b.section) for b in doc.blocks if b.kind == "heading"]
    assert headings == [
        ("Guide", ("Guide",)),
        ("Install", ("Guide", "Install")),
        ("Usage", ("Guide", "Usage")),
        ("Setext One", ("Setext One",)),
    ]
    code = [b for b in doc.blocks if b.kind == "code"]
    assert len(code) == 2
    fence = code[0]
    assert "# not a heading" in fence.text and "## still inside the fence" in fence.text
    assert fence.text.startswith("```bash") and fence.text.endswith("```")
    assert fence.section == ("Guide", "Install")
    assert code[1].text == "indented code\nblock"
    lists = [b for b in doc.blocks if b.kind == "list"]
    assert lists[0].text == "- first item\n- second item\n  continued"
    assert lists[1].text == "1. one\n2. two"
    table = next(b for b in doc.blocks if b.kind == "table")
    assert table.section == ("Guide", "Usage")
    assert section_of(doc, "Intro paragraph") == ("Guide",)
    assert section_of(doc, "Last words") == ("Setext One",)


def test_markdown_skipped_heading_levels(tmp_path):
    p = tmp_path / "skip.md"
    p.write_text("# Top\n\n### Sub A\n\na text\n\n### Sub B\n\nb text\n\n## Mid\n\nm text\n")
    doc = check_doc(load(p))
    assert section_of(doc, "a text") == ("Top", "Sub A")
    assert section_of(doc, "b text") == ("Top", "Sub B")
    assert section_of(doc, "m text") == ("Top", "Mid")


def test_markdown_unclosed_fence_and_title_fallback(tmp_path):
    p = tmp_path / "notes.md"
    p.write_text("Some text.\n\n```\n# inside\nmore\n", encoding="utf-8")
    doc = check_doc(load(p))
    assert doc.title == "notes"
    assert [b.kind for b in doc.blocks] == ["text", "code"]
    assert "# inside" in doc.blocks[1].text


RST = """\
=============
 Project Title
=============

Intro text.

Installation
============

Run this::

    pip install thing

    thing --help

After install.

Details
-------

Deep text.

Usage
=====

- a bullet
- another

.. code-block:: python

   print("hi")
"""


def test_rst_headings_by_adornment_order(tmp_path):
    p = tmp_path / "readme.rst"
    p.write_text(RST, encoding="utf-8")
    doc = check_doc(load(p))
    assert doc.kind == "rst"
    assert doc.title == "Project Title"
    headings = [(b.text, b.section) for b in doc.blocks if b.kind == "heading"]
    assert headings == [
        ("Project Title", ("Project Title",)),
        ("Installation", ("Project Title", "Installation")),
        ("Details", ("Project Title", "Installation", "Details")),
        ("Usage", ("Project Title", "Usage")),
    ]
    code = [b for b in doc.blocks if b.kind == "code"]
    assert code[0].text == "pip install thing\n\nthing --help"
    assert code[1].text == 'print("hi")'
    assert section_of(doc, "After install") == ("Project Title", "Installation")
    assert section_of(doc, "Deep text") == ("Project Title", "Installation", "Details")
    assert any(b.kind == "list" and "a bullet" in b.text for b in doc.blocks)


def test_plain_text_paragraphs(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text(
        "First para line one\nline two.\n\n\n  \nSecond para.\r\n\r\nThird.\n", encoding="utf-8"
    )
    doc = check_doc(load(p))
    assert doc.kind == "text"
    assert doc.title == "notes"
    assert [b.text for b in doc.blocks] == [
        "First para line one\nline two.",
        "Second para.",
        "Third.",
    ]
    assert all(b.section == () and b.kind == "text" and b.page is None for b in doc.blocks)


def test_plain_text_huge_paragraph_is_cut(tmp_path):
    p = tmp_path / "log.txt"
    p.write_text("\n".join(f"line {i} " + "x" * 80 for i in range(2000)), encoding="utf-8")
    doc = check_doc(load(p))
    assert len(doc.blocks) > 1
    assert all(len(b.text) <= common.MAX_TEXT_BLOCK_CHARS for b in doc.blocks)
    assert "line 1999" in doc.blocks[-1].text


def test_cp1252_text_is_detected(tmp_path):
    text = (
        "Le café était très bon; déjà vu à la façade naïve. "
        "Straße und Äpfel für Grüße – “quoted” text.\n"
    ) * 5
    p = tmp_path / "legacy.txt"
    p.write_bytes(text.encode("cp1252"))
    doc = check_doc(load(p))
    assert "café était très bon" in text_of(doc)
    assert "Grüße – “quoted”" in text_of(doc)
    assert doc.metadata["encoding"] in ("cp1252", "windows-1252")


def test_cyrillic_cp1251_is_not_mistaken_for_western(tmp_path):
    text = "Привет, как дела? Это тест кодировки для русского текста.\n" * 3
    p = tmp_path / "ru.txt"
    p.write_bytes(text.encode("cp1251"))
    assert text_of(check_doc(load(p))) == text.strip()


def test_latin1_text_is_detected(tmp_path):
    p = tmp_path / "latin.txt"
    p.write_bytes("Ein schöner Tag in Köln. Grüße aus München!\n".encode("latin-1") * 3)
    assert "schöner Tag in Köln" in text_of(check_doc(load(p)))


def test_utf8_bom_and_utf16_bom(tmp_path):
    p8 = tmp_path / "bom8.txt"
    p8.write_bytes(b"\xef\xbb\xbf" + "Grüße aus UTF-8.".encode())
    assert text_of(check_doc(load(p8))) == "Grüße aus UTF-8."
    for enc in ("utf-16", "utf-16-be"):
        p16 = tmp_path / f"{enc}.md"
        data = "# Überschrift\n\nText mit Umlauten: äöü – 日本語.\n".encode(enc)
        if enc == "utf-16-be":
            data = b"\xfe\xff" + data
        p16.write_bytes(data)
        doc = check_doc(load(p16))
        assert doc.title == "Überschrift"
        assert "äöü – 日本語" in text_of(doc)


@pytest.mark.parametrize(
    ("data", "looks_like"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(200), "a PNG image"),
        (b"\x7fELF\x02\x01\x01" + bytes(300), "ELF executable"),
        (b"text with a NUL\x00 in the middle" * 3, "arbitrary binary data"),
        (bytes(range(1, 32)) * 40, "control or undecodable characters"),
    ],
)
def test_binary_data_in_text_file_refused(tmp_path, data, looks_like):
    p = tmp_path / "data.txt"
    p.write_bytes(data)
    with pytest.raises(LoadError, match="binary data in a text file") as err:
        load(p)
    assert looks_like in str(err.value)


PYTHON_SOURCE = '''\
"""Module doc."""
import os
import sys


def alpha(x):
    """First function."""
    y = x + 1

    return y


class Beta:
    def method(self):
        return 1

    def other(self):
        return 2


@decorator
def gamma():
    pass
'''


def test_code_file_split_by_top_level_definitions(tmp_path):
    p = tmp_path / "mod.py"
    p.write_text(PYTHON_SOURCE, encoding="utf-8")
    doc = check_doc(load(p))
    assert doc.kind == "code"
    assert doc.title == "mod.py"
    assert all(b.kind == "code" for b in doc.blocks)
    texts = [b.text for b in doc.blocks]
    assert texts[0].startswith('"""Module doc."""') and "def alpha" in texts[0]  # imports folded in
    alpha = next(b for b in doc.blocks if "def alpha" in b.text)
    assert "return y" in alpha.text  # blank line inside the body does not split it
    beta = next(b for b in doc.blocks if "class Beta" in b.text)
    assert "def other" in beta.text
    assert beta.section == ("class Beta",)
    gamma = next(b for b in doc.blocks if "def gamma" in b.text)
    assert gamma.text.startswith("@decorator")
    assert "".join(texts).replace("\n", "") == PYTHON_SOURCE.replace("\n", "")


def test_octave_m_file(tmp_path):
    p = tmp_path / "area.m"
    p.write_text(
        "% compute areas\nfunction a = circle_area(r)\n  a = pi * r .^ 2;\nend\n\n"
        "function a = square_area(s)\n  a = s .^ 2;\nend\n",
        encoding="utf-8",
    )
    doc = check_doc(load(p))
    assert doc.kind == "code"
    assert any("circle_area" in b.text for b in doc.blocks)
    assert any(b.section == ("function a = square_area(s)",) for b in doc.blocks)


def test_csv_rows_as_records(tmp_path):
    p = tmp_path / "people.csv"
    lines = ["name,age,city"] + [f"Person{i},{20 + i},Town{i}" for i in range(45)]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    doc = check_doc(load(p))
    assert doc.kind == "csv"
    assert doc.title == "people.csv"
    assert len(doc.blocks) == 3  # 20 + 20 + 5 rows
    assert doc.blocks[0].text.splitlines()[0] == "name: Person0; age: 20; city: Town0"
    assert doc.blocks[2].text.splitlines()[-1] == "name: Person44; age: 64; city: Town44"
    assert all(b.kind == "table" for b in doc.blocks)
    assert doc.metadata["columns"] == "name, age, city"


def test_tsv_and_semicolon_csv(tmp_path):
    tsv = tmp_path / "t.tsv"
    tsv.write_text("Produkt\tPreis\nÄpfel\t1,20\nBirnen\t2,50\n", encoding="utf-8")
    assert "Produkt: Äpfel; Preis: 1,20" in text_of(check_doc(load(tsv)))
    semi = tmp_path / "s.csv"
    semi.write_text("Produkt;Preis;Menge\nÄpfel;1,20;3\nBirnen;2,50;4\n", encoding="utf-8")
    assert "Produkt: Birnen; Preis: 2,50; Menge: 4" in text_of(check_doc(load(semi)))


# --------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------

HTML = """<!DOCTYPE html>
<html><head><meta charset="iso-8859-1"><title>Café Guide</title>
<meta name="author" content="Jane Doe">
<style>body { color: red }</style><script>var secret = "SCRIPTTEXT";</script></head>
<body>
<header><a href="/">SITEHEADER</a></header>
<nav><ul><li>NAVLINK one</li><li>NAVLINK two</li></ul></nav>
<div role="navigation">ROLENAV</div>
<main>
<h1>Welcome</h1>
<p>Intro about the café and its <b>naïve</b> charm.</p>
<div>Loose text directly in a div<br>with a break.</div>
<h2>Menu</h2>
<ul><li>Espresso</li><li>Tea<ul><li>Green</li></ul></li></ul>
<table><tr><th>Item</th><th>Price</th></tr><tr><td>Cake</td><td>3</td></tr></table>
<pre>def brew():
    return "coffee"</pre>
<h3>Details</h3>
<dl><dt>Opening</dt><dd>Daily from nine.</dd></dl>
<blockquote>Best coffee in town.</blockquote>
<h2>Contact</h2>
<p>Call us.</p>
<noscript>NOSCRIPT</noscript><form>FORMTEXT<input></form><aside>ASIDETEXT</aside>
<svg><text>SVGTEXT</text></svg><template>TEMPLATETEXT</template>
</main>
<footer>FOOTERTEXT</footer>
</body></html>
"""


def test_html_structure_and_stripping(tmp_path):
    p = tmp_path / "page.html"
    p.write_bytes(HTML.encode("latin-1"))
    doc = check_doc(load(p))
    assert doc.kind == "html"
    assert doc.title == "Café Guide"
    assert doc.author == "Jane Doe"
    text = text_of(doc)
    for junk in (
        "SCRIPTTEXT",
        "color: red",
        "SITEHEADER",
        "NAVLINK",
        "ROLENAV",
        "NOSCRIPT",
        "FORMTEXT",
        "ASIDETEXT",
        "SVGTEXT",
        "TEMPLATETEXT",
        "FOOTERTEXT",
    ):
        assert junk not in text, junk
    assert "Intro about the café and its naïve charm." in text
    assert "Loose text directly in a div\nwith a break." in text
    headings = [(b.text, b.section) for b in doc.blocks if b.kind == "heading"]
    assert headings == [
        ("Welcome", ("Welcome",)),
        ("Menu", ("Welcome", "Menu")),
        ("Details", ("Welcome", "Menu", "Details")),
        ("Contact", ("Welcome", "Contact")),
    ]
    lst = next(b for b in doc.blocks if b.kind == "list")
    assert lst.text == "- Espresso\n- Tea\n  - Green"
    assert lst.section == ("Welcome", "Menu")
    table = next(b for b in doc.blocks if b.kind == "table")
    assert table.text == "| Item | Price |\n| --- | --- |\n| Cake | 3 |"
    code = next(b for b in doc.blocks if b.kind == "code")
    assert code.text == 'def brew():\n    return "coffee"'
    assert section_of(doc, "Daily from nine") == ("Welcome", "Menu", "Details")
    assert "Best coffee in town." in text
    assert section_of(doc, "Call us") == ("Welcome", "Contact")


def test_html_heading_permalinks_are_not_part_of_the_heading(tmp_path):
    """Sphinx and MkDocs put a "¶" link in every heading, other generators a "#": chrome,
    not words of the section path a passage carries and a citation shows."""
    p = tmp_path / "sphinx.html"
    p.write_text(
        '<html><body><div class="body">'
        '<h1>4. More Control Flow Tools<a class="headerlink" href="#more" title="Link">¶</a>'
        '</h1><p>Intro text alfa.</p>'
        '<h2>4.7. Defining Functions<a class="headerlink" href="#def">¶</a></h2>'
        '<p>Functions text bravo.</p>'
        '<h2><a class="anchor-link" href="#x">#</a>Notebook heading</h2><p>Charlie.</p>'
        '<p>A <a href="#def">link in a paragraph</a> stays.</p>'
        '</div></body></html>', "utf-8")
    doc = check_doc(load(p))
    assert section_of(doc, "bravo") == ("4. More Control Flow Tools", "4.7. Defining Functions")
    assert section_of(doc, "Charlie") == ("4. More Control Flow Tools", "Notebook heading")
    assert "¶" not in text_of(doc)
    assert "A link in a paragraph stays." in text_of(doc)


def test_html_skipped_levels_and_source_newlines(tmp_path):
    p = tmp_path / "manual.html"
    p.write_text(
        '<html><body><div class="header"><p>Next: Foo, Up: Bar [Contents]</p></div>'
        "<h2>1.2 Examples</h2><p>Wrapped\nsource\n  lines.</p>"
        "<h4>1.2.1 First</h4><p>one</p><h4>1.2.2 Second</h4><p>two</p>"
        "<article><header><h1>Kept Title</h1></header><p>Article body.</p></article>"
        "</body></html>",
        encoding="utf-8",
    )
    doc = check_doc(load(p))
    text = text_of(doc)
    assert "Next: Foo" not in text
    assert "Wrapped source lines." in text
    assert section_of(doc, "one") == ("1.2 Examples", "1.2.1 First")
    assert section_of(doc, "two") == ("1.2 Examples", "1.2.2 Second")
    assert section_of(doc, "Article body") == ("Kept Title",)


def test_html_title_falls_back_to_h1_and_utf8_detection(tmp_path):
    p = tmp_path / "plain.htm"
    p.write_bytes("<html><body><h1>Grüße</h1><p>Schön.</p></body></html>".encode())
    doc = check_doc(load(p))
    assert doc.title == "Grüße"
    assert "Schön." in text_of(doc)


def test_html_deeply_nested_does_not_crash(tmp_path):
    depth = 10_000
    html = (
        "<html><body>"
        + "<div>" * depth
        + "<p>deep text</p>"
        + "</div>" * depth
        + "<p>after the depths</p></body></html>"
    )
    p = tmp_path / "deep.html"
    p.write_text(html, encoding="utf-8")
    text = text_of(check_doc(load(p)))
    assert "deep text" in text
    assert "after the depths" in text


def test_html_only_navigation_has_no_text(tmp_path):
    p = tmp_path / "nav.html"
    p.write_text("<html><body><nav>Home | About</nav><script>x()</script></body></html>")
    with pytest.raises(LoadError, match="no text"):
        load(p)


# --------------------------------------------------------------------------------------
# EPUB
# --------------------------------------------------------------------------------------


def write_epub(path: Path) -> Path:
    container = """<?xml version="1.0"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles>
    <rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>
  </rootfiles>
</container>"""
    opf = """<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="id">
  <metadata xmlns:dc="http://purl.org/dc/elements/1.1/">
    <dc:identifier id="id">urn:uuid:12345678-1234-1234-1234-123456789abc</dc:identifier>
    <dc:title>A Tiny Novel</dc:title>
    <dc:creator>Mary Shelley</dc:creator>
    <dc:language>en</dc:language>
    <meta property="dcterms:modified">2024-01-01T00:00:00Z</meta>
  </metadata>
  <manifest>
    <item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>
    <item id="ncx" href="toc.ncx" media-type="application/x-dtbncx+xml"/>
    <item id="c1" href="ch1.xhtml" media-type="application/xhtml+xml"/>
    <item id="c2" href="ch2.xhtml" media-type="application/xhtml+xml"/>
  </manifest>
  <spine toc="ncx"><itemref idref="c1"/><itemref idref="c2"/></spine>
</package>"""
    nav = """<?xml version="1.0" encoding="utf-8"?>
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">
<head><title>Contents</title></head><body>
<nav epub:type="toc"><ol>
<li><a href="ch1.xhtml">Chapter One</a></li><li><a href="ch2.xhtml">Chapter Two</a></li>
</ol></nav></body></html>"""
    ncx = """<?xml version="1.0" encoding="utf-8"?>
<ncx xmlns="http://www.daisy.org/z3986/2005/ncx/" version="2005-1">
<head><meta name="dtb:uid" content="urn:uuid:12345678-1234-1234-1234-123456789abc"/></head>
<docTitle><text>A Tiny Novel</text></docTitle>
<navMap>
<navPoint id="n1" playOrder="1"><navLabel><text>Chapter One</text></navLabel>
  <content src="ch1.xhtml"/></navPoint>
<navPoint id="n2" playOrder="2"><navLabel><text>Chapter Two</text></navLabel>
  <content src="ch2.xhtml"/></navPoint>
</navMap></ncx>"""

    def chapter(title: str, words: str) -> str:
        paras = "".join(f"<p>{words} paragraph {i}.</p>" for i in range(3))
        return (
            '<?xml version="1.0" encoding="utf-8"?>\n'
            '<html xmlns="http://www.w3.org/1999/xhtml"><head><title>'
            f"{title}</title></head><body><h1>{title}</h1>{paras}</body></html>"
        )

    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip")
        zf.writestr("META-INF/container.xml", container, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("OEBPS/content.opf", opf, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("OEBPS/nav.xhtml", nav, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr("OEBPS/toc.ncx", ncx, compress_type=zipfile.ZIP_DEFLATED)
        zf.writestr(
            "OEBPS/ch1.xhtml",
            chapter("Chapter One", "Foggy moor"),
            compress_type=zipfile.ZIP_DEFLATED,
        )
        zf.writestr(
            "OEBPS/ch2.xhtml",
            chapter("Chapter Two", "Arctic ice"),
            compress_type=zipfile.ZIP_DEFLATED,
        )
    return path


def test_epub_chapters_as_sections(tmp_path):
    doc = check_doc(load(write_epub(tmp_path / "novel.epub")))
    assert doc.kind == "epub"
    assert doc.title == "A Tiny Novel"
    assert doc.author == "Mary Shelley"
    assert doc.pages and doc.pages >= 2
    assert section_of(doc, "Foggy moor paragraph 2") == ("Chapter One",)
    assert section_of(doc, "Arctic ice paragraph 0") == ("Chapter Two",)
    first = next(b for b in doc.blocks if "Foggy moor" in b.text)
    second = next(b for b in doc.blocks if "Arctic ice" in b.text)
    assert 1 <= first.page < second.page <= doc.pages
    assert any(b.kind == "heading" and b.text == "Chapter Two" for b in doc.blocks)


def test_epub_without_content_is_an_error(tmp_path):
    p = tmp_path / "broken.epub"
    with zipfile.ZipFile(p, "w") as zf:
        zf.writestr("mimetype", "application/epub+zip")
    with pytest.raises(LoadError):
        load(p)


# --------------------------------------------------------------------------------------
# Regressions from fuzzing (benchmarks/fuzz_loaders.py): each was an unexpected exception
# that only load()'s safety net turned into "could not read: ..."
# --------------------------------------------------------------------------------------


def _no_safety_net(monkeypatch):
    """Make load()'s last-resort wrapper fail the test instead of hiding a loader bug."""

    def fail(*args, **kwargs):
        raise AssertionError("a loader raised an unexpected exception")

    monkeypatch.setattr(formats.log, "exception", fail)


@pytest.mark.parametrize("count", [b"-1", b"2147483648"])
def test_fuzz_pdf_page_tree_with_impossible_count(tmp_path, monkeypatch, count):
    """MuPDF raised RuntimeError("Invalid number of pages") from doc.page_count."""
    _no_safety_net(monkeypatch)
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 100), "One page.", fontsize=11)
    data = doc.tobytes(garbage=0, deflate=False)
    doc.close()
    assert b"/Count 1" in data
    p = tmp_path / "count.pdf"
    p.write_bytes(data.replace(b"/Count 1", b"/Count " + count))
    with pytest.raises(LoadError, match=r"not a valid PDF \(damaged: .*Invalid number of pages"):
        load(p)


@pytest.mark.parametrize(
    "xml",
    [
        (
            b'<w:notdocument xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
            b"<w:body><w:p><w:r><w:t>x</w:t></w:r></w:p></w:body></w:notdocument>"
        ),
        b'<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"/>',
        b"<document><body><p>plain</p></body></document>",
    ],
)
def test_fuzz_docx_without_a_document_body(tmp_path, monkeypatch, xml):
    """python-docx returned a root without .body (another root element, or no <w:body>)."""
    import docx

    _no_safety_net(monkeypatch)
    d = docx.Document()
    d.add_paragraph("placeholder")
    good = tmp_path / "good.docx"
    d.save(good)
    p = tmp_path / "nobody.docx"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(p, "w") as dst:
        for name in src.namelist():
            data = xml if name == "word/document.xml" else src.read(name)
            dst.writestr(name, data)
    with pytest.raises(LoadError, match="not a valid Word document"):
        load(p)


def test_an_odd_outline_destination_costs_only_its_position(tmp_path):
    """A destination whose point cannot be read keeps its entry (placed by title), and the
    other entries keep their heights: one bad link does not lose the outline."""
    from app.core.documents import pdf as pdf_mod

    path = write_pdf(tmp_path / "odd.pdf", [[(100, "Alpha", 16), (130, "Text.", 11)]])
    doc = pymupdf.open(path)
    good = {"kind": pymupdf.LINK_GOTO, "page": 0, "to": pymupdf.Point(72, 700)}
    odd = {"kind": pymupdf.LINK_GOTO, "page": 0, "to": "not a point"}
    doc.get_toc = lambda simple=True: [[1, "Alpha", 1, good], [1, "Beta", 1, odd]]
    entries = pdf_mod._outline(doc)
    assert [(e[1], e[3] is None) for e in entries] == [("Alpha", False), ("Beta", True)]
    assert entries[0][3] == pytest.approx(doc[0].rect.height - 700)
