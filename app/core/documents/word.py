"""DOCX through python-docx, after the package has been checked from its zip directory.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

from app.core.documents.base import Block, LoadedDocument, LoadError
from app.core.documents.common import (
    Sections,
    check_deadline,
    check_zip_package,
    collapse,
    markdown_table,
)

# --------------------------------------------------------------------------------------
# DOCX (python-docx)
# --------------------------------------------------------------------------------------

_HEADING_STYLE_RE = re.compile(r"^heading\s*([1-9])$", re.I)
_LAST_DIGIT_RE = re.compile(r"(\d)$")


def _check_docx_package(path: Path) -> None:
    """Refuse files that are not zip packages, and zip bombs, before python-docx sees them."""
    with path.open("rb") as fh:
        head = fh.read(8)
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        raise LoadError(
            "not a valid Word document (it is an old Word 97-2003 .doc file or an encrypted "
            "document; save it as .docx without a password)"
        )
    if not zipfile.is_zipfile(path):
        raise LoadError("not a valid Word document (the file is not a .docx package)")
    check_zip_package(path, "Word document", "word/document.xml", refuse_dtd=True)
def load_docx(path: Path) -> LoadedDocument:
    _check_docx_package(path)
    import docx
    from docx.oxml.ns import qn
    from docx.text.paragraph import Paragraph

    try:
        document = docx.Document(str(path))
    except Exception as exc:  # noqa: BLE001 - python-docx raises many types for bad files
        if not path.exists():
            raise LoadError("the file was deleted while it was being read") from None
        raise LoadError(f"not a valid Word document (damaged or unreadable: {exc})") from None

    w_p, w_tbl, w_sdt, w_content = qn("w:p"), qn("w:tbl"), qn("w:sdt"), qn("w:sdtContent")
    style_levels: dict[str, int | None] = {}

    def heading_level(para: Paragraph) -> int | None:
        p_pr = para._p.pPr
        if p_pr is not None:
            outline = p_pr.find(qn("w:outlineLvl"))
            if outline is not None:
                value = outline.get(qn("w:val"), "")
                if value.isdigit() and int(value) < 9:
                    return int(value) + 1
        try:
            style = para.style
        except Exception:  # noqa: BLE001 - dangling style ids
            return None
        if style is None:
            return None
        name = style.name or ""
        if name not in style_levels:
            level: int | None = None
            m = _HEADING_STYLE_RE.match(name)
            if m:
                level = int(m.group(1))
            elif name.lower() == "title":
                level = 1
            else:
                style_ppr = style.element.pPr
                outline = style_ppr.find(qn("w:outlineLvl")) if style_ppr is not None else None
                value = outline.get(qn("w:val"), "") if outline is not None else ""
                if value.isdigit() and int(value) < 9:
                    level = int(value) + 1
            style_levels[name] = level
        return style_levels[name]

    def list_level(para: Paragraph) -> int | None:
        p_pr = para._p.pPr
        num_pr = p_pr.numPr if p_pr is not None else None
        if num_pr is not None and num_pr.numId is not None and num_pr.numId.val != 0:
            ilvl = num_pr.ilvl
            return int(ilvl.val) if ilvl is not None else 0
        try:
            name = (para.style.name or "") if para.style is not None else ""
        except Exception:  # noqa: BLE001
            return None
        if name.lower().startswith("list"):
            m = _LAST_DIGIT_RE.search(name)
            return int(m.group(1)) - 1 if m else 0
        return None

    sections = Sections()
    blocks: list[Block] = []
    list_lines: list[str] = []
    first_title = ""

    def flush_list() -> None:
        if list_lines:
            blocks.append(Block("\n".join(list_lines), None, sections.current, "list"))
            list_lines.clear()

    body = getattr(document.element, "body", None)
    if body is None:  # another root element, or no <w:body> (fuzzing found this)
        raise LoadError("not a valid Word document (the document body is missing or damaged)")
    stack = list(reversed(list(body.iterchildren())))
    seen = 0
    while stack:
        el = stack.pop()
        seen += 1
        if not seen % 256:
            check_deadline()
        if el.tag == w_sdt:  # content controls wrap ordinary paragraphs and tables
            content = el.find(w_content)
            if content is not None:
                stack.extend(reversed(list(content.iterchildren())))
            continue
        if el.tag == w_tbl:
            flush_list()
            table = _docx_table(el, document, Paragraph, qn)
            if table:
                blocks.append(Block(table, None, sections.current, "table"))
            continue
        if el.tag != w_p:
            continue
        para = Paragraph(el, document)
        text = para.text.strip()
        if not text:
            continue
        level = heading_level(para)
        if level is not None:
            flush_list()
            title = collapse(text.replace("\n", " "))
            blocks.append(Block(title, None, sections.enter(level, title), "heading"))
            first_title = first_title or title
            continue
        indent = list_level(para)
        if indent is not None:
            list_lines.append("  " * min(indent, 8) + "- " + text)
            continue
        flush_list()
        blocks.append(Block(text, None, sections.current, "text"))
    flush_list()

    props = document.core_properties
    metadata: dict[str, str] = {}
    for name in (
        "subject",
        "keywords",
        "category",
        "comments",
        "last_modified_by",
        "created",
        "modified",
        "language",
        "revision",
    ):
        try:
            value = getattr(props, name)
        except Exception:  # noqa: BLE001 - malformed core.xml values
            continue
        if value not in (None, "", 0):
            metadata[name] = value.isoformat() if hasattr(value, "isoformat") else str(value)
    title = collapse(props.title or "") or first_title
    author = collapse(props.author or "") or None
    return LoadedDocument(
        path=path,
        kind="docx",
        title=title or path.stem,
        blocks=blocks,
        author=author,
        metadata=metadata,
    )


def _docx_table(tbl, document, paragraph_cls, qn) -> str:
    w_tr, w_tc, w_p = qn("w:tr"), qn("w:tc"), qn("w:p")
    w_tcpr, w_span, w_val = qn("w:tcPr"), qn("w:gridSpan"), qn("w:val")
    rows: list[list[str]] = []
    for tr in tbl.iterchildren(w_tr):
        cells: list[str] = []
        for tc in tr.iterchildren(w_tc):
            text = " ".join(
                t for t in (paragraph_cls(p, document).text.strip() for p in tc.iter(w_p)) if t
            )
            cells.append(text)
            tc_pr = tc.find(w_tcpr)
            span = tc_pr.find(w_span) if tc_pr is not None else None
            if span is not None and (span.get(w_val) or "").isdigit():
                cells.extend([""] * (min(int(span.get(w_val)), 64) - 1))
        rows.append(cells)
    return markdown_table(rows)
