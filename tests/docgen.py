"""Small real documents for tests, written with PyMuPDF and python-docx."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import pymupdf


def make_pdf(path: Path, pages: list[str], toc: list | None = None, title: str = "",
             author: str = "") -> Path:
    doc = pymupdf.open()
    for text in pages:
        page = doc.new_page()
        rect = pymupdf.Rect(56, 56, page.rect.width - 56, page.rect.height - 56)
        page.insert_textbox(rect, text, fontsize=10)
    if toc:
        doc.set_toc(toc)
    if title or author:
        doc.set_metadata({"title": title, "author": author})
    doc.save(path)
    doc.close()
    return path


def make_docx(path: Path, sections: dict[str, list[str]], title: str = "") -> Path:
    import docx

    d = docx.Document()
    if title:
        d.core_properties.title = title
    for heading, paragraphs in sections.items():
        d.add_heading(heading, level=1)
        for p in paragraphs:
            d.add_paragraph(p)
    d.save(path)
    return path


LOREM = (
    "Folio reads documents and splits them into passages. Each passage keeps its page. "
    "The library stores vectors and text so that questions find their answers quickly. "
)


def long_pages(n: int, topic: str = "topic") -> list[str]:
    return [f"Page {i + 1} about {topic} number {i + 1}. " + LOREM * 6 for i in range(n)]


def unreadable_file(tmp_path):
    """A file this process may not read. Root reads any mode-000 file, but not a write-only
    /proc/sys entry, so as root the test reads one of those through a .txt link."""
    if os.geteuid() != 0:
        p = tmp_path / "secret.txt"
        p.write_text("hidden")
        p.chmod(0)
        return p
    target = Path("/proc/sys/vm/drop_caches")
    if not target.exists():
        pytest.fail("no unreadable file available to test permission denied as root")
    link = tmp_path / "secret.txt"
    link.symlink_to(target)
    return link
