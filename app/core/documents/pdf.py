"""PDF and EPUB through PyMuPDF: blocks in reading order (columns), headings from the outline or
font sizes, running headers and footers dropped, OCR of scanned pages when Tesseract is there.

About 970 lines: one format, read the way a person reads a page (columns, headings, running
headers, hyphenation, OCR); the parts share the block model at the top and would only be
harder to follow apart.
"""

from __future__ import annotations

import functools
import glob
import logging
import os
import re
import shutil
import subprocess
import unicodedata
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from app.core.documents.base import Block, LoadedDocument, LoadError
from app.core.documents.common import (
    OCR_DPI,
    WS_RE,
    Sections,
    check_deadline,
    check_zip_package,
    collapse,
)

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------
# PDF and EPUB (PyMuPDF)
# --------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Segment:
    """A paragraph, list or code run cut from one PDF text block."""

    text: str
    kind: str  # "text", "list", "code"
    lines: int


@dataclass(slots=True)
class _PdfBlock:
    x0: float
    y0: float
    x1: float
    y1: float
    segments: list[_Segment]
    bold: float  # share of characters set in bold
    size: float  # largest font size in the block
    vertical: bool = False

    @property
    def text(self) -> str:
        return "\n".join(s.text for s in self.segments)


@dataclass(slots=True)
class _PdfPage:
    number: int  # 1-based, physical
    width: float
    height: float
    blocks: list[_PdfBlock] = field(default_factory=list)


_BULLET_RE = re.compile(
    r"^\s*([\u2022\u2023\u25aa\u25ab\u25cf\u25cb\u25e6\u2043\u2219\u00b7\u25a0\u25a1\u27a2\u2713\u2714\uf0b7\uf0a7*\-\u2013]|\(?\d{1,3}[.)]|\(?[a-z][.)])\s+"
)
_GLYPH_BULLET_RE = re.compile(
    r"^\s*[\u2022\u2023\u25aa\u25ab\u25cf\u25cb\u25e6\u2043\u2219\u00b7\u25a0\u25a1\u27a2\u2713\u2714\uf0b7\uf0a7\u2013]\s*"
)
_MONO_FONT_RE = re.compile(
    r"mono|courier|consol|menlo|inconsolata|cmtt|lmtt|typewriter|lucidaconsole|sourcecodepro|firacode|andalemono",
    re.I,
)
_BOLD_FONT_RE = re.compile(r"bold|black|heavy|semibold|demi|cmbx|-bd|,bd", re.I)
_HYPHENS = "-\u2010"
# TeX fonts often emit an accent as its own spacing glyph before the letter ("J¨uschke").
_SPACING_ACCENTS = {
    "\u00a8": "\u0308",
    "\u00b4": "\u0301",
    "\u02c6": "\u0302",
    "\u02dc": "\u0303",
    "\u00b8": "\u0327",
    "\u02c7": "\u030c",
    "\u02d8": "\u0306",
    "\u02d9": "\u0307",
    "\u02da": "\u030a",
    "\u02dd": "\u030b",
    "\u00af": "\u0304",
}
_SPACING_ACCENT_RE = re.compile("([" + "".join(_SPACING_ACCENTS) + "])([A-Za-z\u0131])")
# Dot leaders ("Chapter 1 . . . . 12"). Leading blanks are taken only from the start of their
# run, and every run is possessive: tried again at every blank of a long run, the plain form
# was quadratic. A later start in the same run sees the same text, so it could only fail too.
_LEADER_RE = re.compile(
    r"(?:(?<![ \t])[ \t]++)?(?:\.(?:[ \t]*+\.){3,}+|\u2026{2,}+)[ \t]*+"
)


def _fix_accents(text: str) -> str:
    def combine(m: re.Match) -> str:
        letter = "i" if m.group(2) == "\u0131" else m.group(2)
        return unicodedata.normalize("NFC", letter + _SPACING_ACCENTS[m.group(1)])

    return _SPACING_ACCENT_RE.sub(combine, text)


def load_pdf(path: Path, ocr: bool | None) -> LoadedDocument:
    return _load_fitz(path, "pdf", ocr)


def load_epub(path: Path, ocr: bool | None) -> LoadedDocument:
    if zipfile.is_zipfile(path):  # MuPDF inflates the chapters: refuse zip bombs first
        check_zip_package(path, "EPUB")
    return _load_fitz(path, "epub", False)


def _open_fitz(path: Path, kind: str):
    import pymupdf

    what = "PDF" if kind == "pdf" else "EPUB"
    try:
        return pymupdf.open(path, filetype=kind)
    except pymupdf.EmptyFileError:
        raise LoadError("the file is empty") from None
    except FileNotFoundError:
        raise LoadError("the file no longer exists") from None
    except PermissionError:
        raise LoadError("permission denied") from None
    except (pymupdf.FileDataError, RuntimeError, ValueError) as exc:
        log.info("cannot open %s as %s: %s", path, what, exc)
        raise LoadError(f"the file is not a valid {what} (damaged or truncated)") from None


def _load_fitz(path: Path, kind: str, ocr: bool | None) -> LoadedDocument:
    doc = _open_fitz(path, kind)
    try:
        return _read_fitz(doc, path, kind, ocr)
    finally:
        doc.close()


def _read_fitz(doc, path: Path, kind: str, ocr: bool | None) -> LoadedDocument:
    what = "PDF" if kind == "pdf" else "EPUB"
    if doc.needs_pass:
        if not doc.authenticate(""):
            raise LoadError(
                f"the {what} is password-protected: it is encrypted and needs a password to "
                "open; save a copy without the password to add it"
            )
    warnings: list[str] = []
    try:
        page_count = doc.page_count
    except RuntimeError as exc:  # MuPDF: a page tree it cannot count (fuzzing found this)
        log.info("cannot count the pages of %s: %s", path, exc)
        raise LoadError(f"the file is not a valid {what} (damaged: {exc})") from None
    if page_count == 0:
        raise LoadError(f"the file is not a valid {what} (it has no pages)")

    ocr_setup = _ocr_setup() if ocr is not False and kind == "pdf" else None
    sizes: Counter[float] = Counter()
    pages: list[_PdfPage] = []
    no_text: list[int] = []
    unreadable: list[int] = []
    ocr_done = 0
    for index in range(page_count):
        check_deadline()
        try:
            page = doc.load_page(index)
            result = _extract_page(page, sizes)
        except Exception as exc:  # noqa: BLE001 - a broken page must not lose the rest
            log.info("page %d of %s unreadable: %s", index + 1, path, exc)
            unreadable.append(index + 1)
            continue
        if not result.blocks and kind == "pdf" and _looks_scanned(page):
            if ocr_setup is not None:
                try:
                    tessdata, language = ocr_setup
                    textpage = page.get_textpage_ocr(
                        flags=_PDF_FLAGS,
                        language=language,
                        dpi=OCR_DPI,
                        full=True,
                        tessdata=tessdata,
                    )
                    result = _extract_page(page, sizes, textpage=textpage)
                    ocr_done += 1 if result.blocks else 0
                except Exception as exc:  # noqa: BLE001 - OCR is best effort
                    log.warning("OCR failed on page %d of %s: %s", index + 1, path, exc)
            if not result.blocks:
                no_text.append(index + 1)
        pages.append(result)

    # MuPDF quietly repairs many slightly broken files; only mention it when pages came out
    # unreadable or empty, which is when the repair may have lost text.
    if getattr(doc, "is_repaired", False) and (unreadable or any(not p.blocks for p in pages)):
        warnings.append(f"the {what} was damaged and has been repaired; some text may be missing")
    if unreadable:
        warnings.append(
            f"{_count(len(unreadable), 'page')} could not be read: {_page_list(unreadable)}"
        )
    if no_text:
        if ocr is False:
            hint = "OCR is turned off"
        elif ocr_setup is None:
            hint = "install Tesseract to OCR them"
        else:
            hint = "OCR found no text on them"
        verb = "has" if len(no_text) == 1 else "have"
        warnings.append(
            f"{len(no_text)} of {page_count} pages {verb} no text layer (scanned?); {hint}"
        )
    if ocr_done:
        log.info("OCR read %d pages of %s", ocr_done, path)

    body_size = sizes.most_common(1)[0][0] if sizes else 0.0
    _drop_running_headers(pages)
    try:
        toc = _outline(doc)
    except Exception as exc:  # noqa: BLE001 - a damaged outline must not lose the text
        log.info("unreadable outline in %s: %s", path, exc)
        toc = []
    blocks = _assemble_fitz_blocks(pages, toc, page_count, body_size)
    if not blocks:
        if no_text and ocr is False:
            raise LoadError(
                f"no text could be extracted: the {what} seems to be scanned images and OCR "
                "is turned off"
            )
        if no_text and ocr_setup is None:
            raise LoadError(
                f"no text could be extracted: the {what} seems to be scanned images; "
                "install Tesseract to OCR it"
            )
        raise LoadError(f"no text could be extracted from the {what}")

    try:
        raw_meta = doc.metadata or {}
    except Exception as exc:  # noqa: BLE001 - damaged metadata must not lose the text
        log.info("unreadable metadata in %s: %s", path, exc)
        raw_meta = {}
    meta = {k: v for k, v in raw_meta.items() if isinstance(v, str) and v.strip()}
    title = _clean_pdf_title(meta.get("title", "")) or _pdf_title_fallback(pages, blocks, body_size)
    author = meta.get("author", "").strip() or None
    metadata = {
        k: meta[k].strip()
        for k in ("subject", "keywords", "creator", "producer", "creationDate", "modDate", "format")
        if k in meta
    }
    return LoadedDocument(
        path=path,
        kind=kind,
        title=title or path.stem,
        blocks=blocks,
        author=author,
        pages=page_count,
        warnings=warnings,
        metadata=metadata,
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _page_list(numbers: list[int], limit: int = 10) -> str:
    shown = ", ".join(str(n) for n in numbers[:limit])
    return shown + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")


def _looks_scanned(page) -> bool:
    """A page without text is 'scanned' if it shows an image; blank pages are just blank."""
    try:
        return bool(page.get_image_info())
    except Exception:  # noqa: BLE001
        return False


# pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP, literal so that importing
# this module does not import PyMuPDF (about a second). Deliberately without
# TEXT_PRESERVE_LIGATURES ("ﬁ" comes out as "fi", which is what people search for) and
# TEXT_PRESERVE_IMAGES (image bytes would be copied for nothing).
_PDF_FLAGS = 2 | 64


_TRAITS_CACHE: dict[tuple[str, int], tuple[bool, bool]] = {}


def _font_traits(font: str, flags: int) -> tuple[bool, bool]:
    """(monospaced, bold) from PyMuPDF's span flags or, failing those, the font name."""
    mono = bool(flags & 8) or bool(_MONO_FONT_RE.search(font))
    bold = bool(flags & 16) or bool(_BOLD_FONT_RE.search(font))
    return mono, bold


def _extract_page(page, sizes: Counter, textpage=None) -> _PdfPage:
    """Text blocks of one page (reading order), each cut into paragraphs/lists/code."""
    rect = page.rect
    result = _PdfPage(number=page.number + 1, width=rect.width, height=rect.height)
    data = page.get_text("dict", flags=_PDF_FLAGS, textpage=textpage)
    for raw in data.get("blocks", ()):
        if raw.get("type", 0) != 0:
            continue
        block = _build_block(raw, sizes)
        if block is not None:
            result.blocks.append(block)
    upright = [b for b in result.blocks if not b.vertical]
    ordered = _merge_continuations(_reading_order(upright))
    result.blocks = ordered + [b for b in result.blocks if b.vertical]
    return result


def _merge_continuations(blocks: list[_PdfBlock]) -> list[_PdfBlock]:
    """Glue a block that continues the previous one's last sentence (PDF producers often
    start a new block at an indentation change, e.g. after a list item's first line)."""
    out: list[_PdfBlock] = []
    for block in blocks:
        if out:
            prev = out[-1]
            tail, head = prev.segments[-1], block.segments[0]
            gap = block.y0 - prev.y1
            if (
                tail.kind in ("text", "list")
                and head.kind == "text"
                and head.text[:1].islower()
                and not tail.text.rstrip().endswith((".", ":", "!", "?"))
                and -2.0 <= gap < 0.8 * max(block.size, 1.0)
                and block.x0 < prev.x1
                and prev.x0 < block.x1  # same column
            ):
                tail.text = _unwrap([tail.text, head.text])
                tail.lines += head.lines
                prev.segments.extend(block.segments[1:])
                prev.y1 = max(prev.y1, block.y1)
                prev.x0, prev.x1 = min(prev.x0, block.x0), max(prev.x1, block.x1)
                continue
        out.append(block)
    return out


def _build_block(raw: dict, sizes: Counter) -> _PdfBlock | None:
    # lines: [x0, y0, x1, y1, parts, size]; lines on one baseline are merged (justified text
    # and tables of contents often come out as several "lines" per visual line).
    # This loop runs for every span of every page, hence the plain, local-variable style.
    lines: list[list] = []
    chars = mono_chars = bold_chars = 0
    max_size = 0.0
    vertical = False
    block_sizes: dict[float, int] = {}
    traits_cache = _TRAITS_CACHE
    for line in raw.get("lines", ()):
        spans = line.get("spans")
        if not spans:
            continue
        parts: list[str] = []
        line_size = 0.0
        for span in spans:
            text = span["text"]
            if not text:
                continue
            if "\ufffd" in text:
                text = text.replace("\ufffd", "")
            parts.append(text)
            if text == " ":
                continue
            n = len(text) - text.count(" ")
            if n <= 0:
                continue
            size = span["size"]
            if size > line_size:
                line_size = size
            key = (span["font"], span["flags"])
            traits = traits_cache.get(key)
            if traits is None:
                if len(traits_cache) > 4096:
                    traits_cache.clear()
                traits = traits_cache[key] = _font_traits(*key)
            chars += n
            if traits[0]:
                mono_chars += n
            if traits[1]:
                bold_chars += n
            block_sizes[size] = block_sizes.get(size, 0) + n
        if not line_size:  # nothing but whitespace
            continue
        x0, y0, x1, y1 = line["bbox"]
        if abs(line["dir"][1]) > 0.3:
            vertical = True
        if line_size > max_size:
            max_size = line_size
        if lines:
            prev = lines[-1]
            if abs(y1 - prev[3]) < 0.5 * max(y1 - y0, 1.0) and x0 >= prev[2] - 0.5 * line_size:
                if x0 - prev[2] > 0.1 * line_size and not prev[4][-1].endswith(" "):
                    prev[4].append(" ")
                prev[4].extend(parts)
                prev[2] = max(prev[2], x1)
                continue
        lines.append([x0, y0, x1, y1, parts, line_size])
    if not chars:
        return None
    for size, n in block_sizes.items():
        sizes[round(size * 2) / 2] += n
    bx0, by0, bx1, by1 = raw["bbox"]
    if mono_chars >= 0.8 * chars:
        segments = [_code_segment(lines)]
    else:
        segments = _text_segments(lines)
    segments = [s for s in segments if s.text.strip()]
    if not segments:
        return None
    return _PdfBlock(bx0, by0, bx1, by1, segments, bold_chars / chars, max_size, vertical)


def _code_segment(lines: list[list]) -> _Segment:
    texts = ["".join(ln[4]).rstrip() for ln in lines]
    left = min(ln[0] for ln in lines)
    widths = sum(ln[2] - ln[0] for ln in lines)
    nchars = sum(len(t.strip()) for t in texts) or 1
    char_width = max(widths / nchars, 1.0)
    out = []
    for line, text in zip(lines, texts):
        indent = int(round((line[0] - left) / char_width))
        out.append(" " * min(indent, 40) + text.strip())
    return _Segment("\n".join(out), "code", len(out))


def _text_segments(lines: list[list]) -> list[_Segment]:
    """Unwrap a block's lines into paragraphs; bullet lines become list segments and
    dot-leader lines (tables of contents, indexes) stay one entry per line."""
    xs = Counter(round(ln[0]) for ln in lines)
    base_x = xs.most_common(1)[0][0]
    sizes = sorted(ln[5] for ln in lines if ln[5]) or [10.0]
    em = sizes[len(sizes) // 2]
    segments: list[_Segment] = []
    paragraph: list[str] = []
    items: list[list[str]] = []  # list items, each a list of wrapped lines
    entries: list[str] = []  # "Title ..... 12" lines

    def flush_paragraph() -> None:
        if paragraph:
            segments.append(_Segment(_unwrap(paragraph), "text", len(paragraph)))
            paragraph.clear()

    def flush_items() -> None:
        if items:
            text = "\n".join(_unwrap(item) for item in items)
            segments.append(_Segment(text, "list", sum(len(i) for i in items)))
            items.clear()

    def flush_entries() -> None:
        if entries:
            segments.append(_Segment("\n".join(entries), "text", len(entries)))
            entries.clear()

    texts = [WS_RE.sub(" ", "".join(line[4])).strip() for line in lines]
    # "1." or "-" starts a list item only when the block has several such lines ("1. Intro"
    # alone is a heading); bullet glyphs always do. Glyphs become "- ", numbers stay.
    markers = sum(1 for t in texts if _BULLET_RE.match(t))
    for line, text in zip(lines, texts):
        if not text:
            continue
        if _SPACING_ACCENT_RE.search(text):
            text = _fix_accents(text)
        if _LEADER_RE.search(text):
            flush_paragraph()
            flush_items()
            entries.append(_LEADER_RE.sub(" ... ", text).strip())
            continue
        flush_entries()
        glyph = _GLYPH_BULLET_RE.match(text)
        if glyph or (markers >= 2 and _BULLET_RE.match(text)):
            flush_paragraph()
            items.append(["- " + text[glyph.end() :] if glyph else text])
            continue
        if items:
            if line[0] >= base_x - 1 or round(line[0]) > min(xs):  # hanging continuation
                items[-1].append(text)
                continue
            flush_items()
        indent = line[0] - base_x
        if paragraph and 0.8 * em < indent < 6 * em:  # first-line indent starts a paragraph
            flush_paragraph()
        paragraph.append(text)
    flush_paragraph()
    flush_items()
    flush_entries()
    return segments


def _unwrap(lines: list[str]) -> str:
    """Join wrapped lines; "exam-" + "ple" -> "example" (a soft hyphen always joins)."""
    parts = [lines[0]]
    for nxt in lines[1:]:
        prev = parts[-1]
        if prev.endswith("\u00ad"):
            parts[-1] = prev[:-1]
        elif prev[-1:] in _HYPHENS and len(prev) >= 2 and prev[-2].isalpha() and nxt[:1].islower():
            parts[-1] = prev[:-1]
        else:
            parts.append(" ")
        parts.append(nxt)
    return "".join(parts).replace("\u00ad", "")


# ---- reading order -------------------------------------------------------------------

_MIN_COLUMN_SHARE = 0.22  # a column is at least this share of the band's width
_MIN_GUTTER = 6.0  # points


def _reading_order(blocks: list[_PdfBlock], depth: int = 0) -> list[_PdfBlock]:
    """Order blocks for reading: top to bottom, but multi-column regions column by column.

    The page is cut into horizontal bands at vertical gaps that cross every column. A band
    whose blocks form two or more side-by-side columns (separated by a clear gutter, each
    column reasonably wide) opens a column region; following bands that do not straddle
    its gutters belong to it. A region is read column by column, everything else row-wise.
    """
    if len(blocks) <= 1 or depth > 8:
        return _row_order(blocks)
    bands = _bands(blocks)
    out: list[_PdfBlock] = []
    region: list[_PdfBlock] = []
    gutters: list[float] = []
    for band in bands:
        if gutters and not _straddles(band, gutters):
            region.extend(band)
            continue
        if region:
            out.extend(_read_region(region, gutters, depth))
            region, gutters = [], []
        band_gutters = _column_gutters(band)
        if band_gutters:
            region, gutters = list(band), band_gutters
        else:
            out.extend(_row_order(band))
    if region:
        out.extend(_read_region(region, gutters, depth))
    return out


def _row_order(blocks: list[_PdfBlock]) -> list[_PdfBlock]:
    """Top to bottom; blocks starting at (almost) the same height left to right."""
    ordered = sorted(blocks, key=lambda b: (b.y0, b.x0))
    out: list[_PdfBlock] = []
    row: list[_PdfBlock] = []
    for block in ordered:
        if row and block.y0 - row[0].y0 > 3.0:
            out.extend(sorted(row, key=lambda b: b.x0))
            row = []
        row.append(block)
    out.extend(sorted(row, key=lambda b: b.x0))
    return out


def _bands(blocks: list[_PdfBlock]) -> list[list[_PdfBlock]]:
    ordered = sorted(blocks, key=lambda b: b.y0)
    bands: list[list[_PdfBlock]] = []
    bottom = float("-inf")
    for block in ordered:
        if bands and block.y0 < bottom - 1.0:
            bands[-1].append(block)
        else:
            bands.append([block])
        bottom = max(bottom, block.y1) if len(bands[-1]) > 1 else block.y1
    return bands


def _column_gutters(band: list[_PdfBlock]) -> list[float]:
    """Midpoints of the gutters between the band's columns, or [] when it is one column."""
    if len(band) < 2:
        return []
    ordered = sorted(band, key=lambda b: b.x0)
    groups: list[list[float]] = []  # [x0, x1]
    for block in ordered:
        if groups and block.x0 < groups[-1][1] + _MIN_GUTTER:
            groups[-1][1] = max(groups[-1][1], block.x1)
        else:
            groups.append([block.x0, block.x1])
    if len(groups) < 2:
        return []
    width = groups[-1][1] - groups[0][0]
    if any(g[1] - g[0] < _MIN_COLUMN_SHARE * width for g in groups):
        return []
    return [(a[1] + b[0]) / 2 for a, b in zip(groups, groups[1:])]


def _straddles(band: list[_PdfBlock], gutters: list[float]) -> bool:
    return any(b.x0 < g - 1.0 and b.x1 > g + 1.0 for b in band for g in gutters)


def _read_region(region: list[_PdfBlock], gutters: list[float], depth: int) -> list[_PdfBlock]:
    columns: list[list[_PdfBlock]] = [[] for _ in range(len(gutters) + 1)]
    for block in region:
        centre = (block.x0 + block.x1) / 2
        columns[sum(1 for g in gutters if centre > g)].append(block)
    if _aligned_rows(columns):  # a table or form laid out in blocks: read row by row
        return _row_order(region)
    out: list[_PdfBlock] = []
    for column in columns:
        out.extend(_reading_order(column, depth + 1))
    return out


def _aligned_rows(columns: list[list[_PdfBlock]]) -> bool:
    """True when most blocks have a neighbour in another column starting at the same height."""
    blocks = [b for c in columns for b in c]
    if len(blocks) < 6:
        return False
    tall = sum(1 for b in blocks if b.y1 - b.y0 > 3.2 * max(b.size, 1.0))
    if tall > len(blocks) / 2:  # paragraphs side by side are columns, not table rows
        return False
    tops = [{round(b.y0) for b in c} for c in columns]
    aligned = total = 0
    for i, column in enumerate(columns):
        others = set().union(*(t for j, t in enumerate(tops) if j != i))
        for block in column:
            total += 1
            y = round(block.y0)
            aligned += any(abs(y - o) <= 2 for o in others) if others else 0
    return aligned >= 0.7 * total


# ---- running headers / footers, headings, sections --------------------------------------

_DIGITS_RE = re.compile(r"\d+")
_ROMAN_RE = re.compile(r"^[ivxlcdm]+$", re.I)


def _drop_running_headers(pages: list[_PdfPage]) -> None:
    """Remove blocks repeated at the same place in the top/bottom margin of most pages.

    A candidate is short and sits in the top or bottom 10% of the page. Candidates are
    grouped by position; a group seen on at least 40% of the pages whose texts (digits
    ignored) are few and repetitive is a running header/footer, e.g. "Chapter 5: Strings 85"
    and "86 GNU Octave (version 7.3.0)". Slide titles at a fixed place differ too much to
    be caught.
    """
    if len(pages) < 4:
        return
    groups: dict[tuple[str, int, int], list[tuple[_PdfPage, _PdfBlock, str]]] = {}
    for page in pages:
        top, bottom = 0.1 * page.height, 0.9 * page.height
        for block in page.blocks:
            if block.vertical:
                continue
            zone = "top" if block.y1 <= top else "bottom" if block.y0 >= bottom else None
            if zone is None:
                continue
            text = block.text
            if len(text) > 120 or text.count("\n") > 2:
                continue
            key = (zone, round(block.y0 / 2), round(block.y1 / 2))
            norm = _DIGITS_RE.sub("#", collapse(text).lower())
            norm = " ".join("#" if _ROMAN_RE.match(w) else w for w in norm.split())
            groups.setdefault(key, []).append((page, block, norm))
    for members in groups.values():
        page_ids = {id(p) for p, _, _ in members}
        if len(page_ids) < max(3, 0.4 * len(pages)):
            continue
        counts = Counter(norm for _, _, norm in members)
        if len(counts) > 0.3 * len(members):
            continue
        for page, block, norm in members:
            if counts[norm] >= 2:
                page.blocks = [b for b in page.blocks if b is not block]


_ENUM_PREFIX_RE = re.compile(
    r"^(?:(?:chapter|appendix|part|section|kapitel|chapitre)\s+[\w.]+\s*[:.\-\u2013\u2014]?\s*"
    r"|\d+(?:\.\d+)*\.?\s+|[a-z](?:\.\d+)+\.?\s+|[a-z]\.\s+|[ivxlc]+\.\s+)",
)
_NON_WORD_RE = re.compile(r"[\W_]+")


def _heading_key(text: str) -> str:
    text = collapse(text).casefold()
    text = _ENUM_PREFIX_RE.sub("", text, count=1)
    return _NON_WORD_RE.sub("", text)


def _outline(doc) -> list[tuple[int, str, int, float | None]]:
    """The outline: (level, title, page, y), y the height on the page its link points at
    (top-left coordinates, as the text blocks have them), None where it names none."""
    out = []
    matrices: dict[int, object] = {}
    for entry in doc.get_toc(simple=False):
        level, title, page_no = entry[0], entry[1], entry[2]
        dest = entry[3] if len(entry) > 3 and isinstance(entry[3], dict) else {}
        try:
            y = _destination_y(doc, dest.get("to"), int(page_no), matrices)
        except Exception:  # noqa: BLE001 - one odd destination: that entry by title only
            y = None
        out.append((level, title, page_no, y))
    return out


def _destination_y(doc, to, page_no: int, matrices: dict) -> float | None:
    """The height a link's point lies at on its page (None: no point, or (0, 0), which
    names none), turned from PDF space (from below) into the page's, as blocks have it."""
    if to is None or not 1 <= page_no <= doc.page_count or not (to.x or to.y):
        return None
    if page_no not in matrices:
        matrices[page_no] = doc[page_no - 1].transformation_matrix
    return float((to * matrices[page_no]).y)


def _assemble_fitz_blocks(
    pages: list[_PdfPage], toc: list, page_count: int, body_size: float
) -> list[Block]:
    """Blocks with page numbers, heading kinds and TOC section paths.

    A TOC entry pointing at page N takes effect on page N: at the block whose text is the
    entry's title when one is found; else at the height its link points at, when it names
    one (the first block from there down); else from the top of the page (entries after the
    last one found take effect right after it).
    """
    starts: dict[int, list[tuple[int, str, float | None]]] = {}
    last_page = 1
    for entry in toc or ():
        try:
            level, title, page_no = int(entry[0]), collapse(str(entry[1])), int(entry[2])
            y = float(entry[3]) if len(entry) > 3 and entry[3] is not None else None
        except (TypeError, ValueError, IndexError):
            continue
        if not title:
            continue
        if page_no < 1 or page_no > page_count:
            page_no, y = last_page, None  # entries without a target follow their predecessor
        last_page = page_no
        starts.setdefault(page_no, []).append((max(level, 1), title, y))

    sections = Sections()
    blocks: list[Block] = []
    for page in pages:
        pending = starts.get(page.number, [])
        flat: list[tuple[_PdfBlock, _Segment]] = [(b, s) for b in page.blocks for s in b.segments]
        matches = _match_toc(pending, [s for _, s in flat]) if pending else {}
        if pending and len(matches) < len(pending):
            _place_by_position(pending, [b.y0 for b, _ in flat], matches)
        applied = min(matches) if matches else len(pending)
        for level, title, _y in pending[:applied]:
            sections.enter(level, title)
        last_entry = max(matches) if matches else -1
        by_segment = {m[0]: (e, m) for e, m in sorted(matches.items())}  # the last entry wins
        skip_next = False
        for i, (block, segment) in enumerate(flat):
            if skip_next:
                skip_next = False
                continue
            text, kind = segment.text, segment.kind
            trailing = False
            if i in by_segment:
                e, (_, span, exact) = by_segment[i]
                for level, title, _y in pending[applied : e + 1]:
                    sections.enter(level, title)
                applied = e + 1
                trailing = e == last_entry
                if exact:
                    kind = "heading"
                elif kind == "text" and _looks_like_heading(block, segment, body_size):
                    kind = "heading"  # placed by its link's height: the heading reads otherwise
                if span == 2:
                    text = collapse(text + " " + flat[i + 1][1].text)
                    skip_next = True
            elif kind == "text" and _looks_like_heading(block, segment, body_size):
                kind = "heading"
            blocks.append(Block(text, page.number, sections.current, kind))
            if trailing:  # entries not found on the page start right after the last one found
                for level, title, _y in pending[applied:]:
                    sections.enter(level, title)
                applied = len(pending)
        for level, title, _y in pending[applied:]:
            sections.enter(level, title)
    return blocks


def _place_by_position(
    pending: list[tuple[int, str, float | None]], tops: list[float],
    matches: dict[int, tuple[int, int, bool]],
) -> None:
    """Entries whose title the text does not hold (a TOC that words it otherwise), placed
    at the first segment at or below the height their link points at, in order between the
    entries found by title. `tops`: each segment's block top, in reading order."""
    for e, (_, _, y) in enumerate(pending):
        if e in matches or y is None:
            continue
        before = [m for k, m in matches.items() if k < e]
        after = [m[0] for k, m in matches.items() if k > e]
        lo = max((m[0] + (m[1] if m[2] or m[1] > 1 else 0) for m in before), default=0)
        hi = min(after, default=len(tops))
        for i in range(lo, hi):
            if tops[i] >= y - 2:  # the link points a little above its heading's first line
                matches[e] = (i, 1, False)
                break


def _match_toc(
    pending: list[tuple[int, str]], segments: list[_Segment]
) -> dict[int, tuple[int, int, bool]]:
    """Where each TOC entry of a page starts: entry index -> (segment index, segments
    spanned, whether the segment *is* the heading). Entries are matched in order; a title
    may be split over two segments, or run into its paragraph (a prefix match)."""
    keys = [_heading_key(s.text) if s.lines <= 3 and len(s.text) < 250 else "" for s in segments]
    matches: dict[int, tuple[int, int, bool]] = {}
    cursor = 0
    for e, (_, title, _y) in enumerate(pending):
        want = _heading_key(title)
        if not want:
            continue
        found = None
        for i in range(cursor, len(segments)):
            key = keys[i]
            if key and (key == want or _same_title(key, want)):
                found = (i, 1, True)
                break
            if (
                key
                and i + 1 < len(segments)
                and keys[i + 1]
                and want.startswith(key)
                and key + keys[i + 1] == want
            ):
                found = (i, 2, True)
                break
        if found is None and len(want) >= 8:
            for i in range(cursor, len(segments)):
                text = segments[i].text
                if segments[i].kind == "text" and _heading_key(text[: len(title) + 30]).startswith(
                    want
                ):
                    found = (i, 1, False)
                    break
        if found is not None:
            matches[e] = found
            cursor = found[0] + found[1]
    return matches


def _same_title(a: str, b: str) -> bool:
    """ "externalcodeinterface" vs "aexternalcodeinterface" ("Appendix A ..." vs "A ...")."""
    short, long_ = sorted((a, b), key=len)
    return len(short) >= 0.8 * len(long_) and long_.endswith(short)


def _looks_like_heading(block: _PdfBlock, segment: _Segment, body_size: float) -> bool:
    if len(block.segments) != 1 or segment.lines > 2 or len(segment.text) > 150:
        return False
    if " ... " in segment.text:  # a table-of-contents line
        return False
    if not any(c.isalpha() for c in segment.text) or segment.text.rstrip().endswith(
        (".", ",", ";")
    ):
        return False
    larger = body_size > 0 and block.size >= 1.15 * body_size
    return larger or block.bold >= 0.9


_JUNK_TITLE_RE = re.compile(
    r"^(untitled|microsoft word - .*|.*\.(docx?|pdf|tex|dvi|indd|odt|rtf))$", re.I
)


_WORD_SUFFIX_RE = re.compile(r"\.(docx?|rtf)$", re.I)


def _clean_pdf_title(title: str) -> str:
    title = collapse(title)
    if title.lower().startswith("microsoft word - "):
        title = _WORD_SUFFIX_RE.sub("", title[len("microsoft word - ") :])
    if not title or _JUNK_TITLE_RE.match(title) or not any(c.isalpha() for c in title):
        return ""
    return title


def _pdf_title_fallback(pages: list[_PdfPage], blocks: list[Block], body_size: float) -> str:
    """Largest short line on the first page with text, else the first heading."""
    for page in pages[:3]:
        if not page.blocks:
            continue
        best = max(page.blocks, key=lambda b: b.size)
        text = collapse(best.segments[0].text.replace("\n", " "))
        if body_size and best.size >= 1.25 * body_size and 0 < len(text) <= 150:
            return text
        break
    for block in blocks[:200]:
        if block.kind == "heading" and len(block.text) <= 150:
            return collapse(block.text)
    return ""


# ---- OCR -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _ocr_setup() -> tuple[str, str] | None:
    """(tessdata folder, language) when Tesseract OCR can be used, else None.

    PyMuPDF needs the folder with the *.traineddata files; we pass it explicitly
    (`tessdata=`) rather than relying on TESSDATA_PREFIX being set.
    """
    if shutil.which("tesseract") is None:
        return None
    tessdata = _find_tessdata()
    if tessdata is None:
        log.warning("tesseract is installed but its tessdata folder was not found")
        return None
    languages = {p.name[: -len(".traineddata")] for p in Path(tessdata).glob("*.traineddata")}
    language = "eng" if "eng" in languages else next(iter(sorted(languages - {"osd"})), None)
    if language is None:
        return None
    log.info("OCR available: tessdata=%s language=%s", tessdata, language)
    return tessdata, language


_TESS_LANGS_RE = re.compile(r'available languages in "(.+?)"')


def _has_traineddata(folder: str | os.PathLike) -> bool:
    try:
        return any(Path(folder).glob("*.traineddata"))
    except OSError:
        return False


def _find_tessdata() -> str | None:
    candidates: list[str] = []
    prefix = os.environ.get("TESSDATA_PREFIX")
    if prefix:
        candidates += [prefix, os.path.join(prefix, "tessdata")]
    exe = shutil.which("tesseract")
    if exe:
        real = os.path.dirname(os.path.realpath(exe))
        candidates += [
            os.path.join(real, "tessdata"),
            os.path.join(real, "..", "share", "tessdata"),
        ]
    for pattern in (
        "/usr/share/tesseract-ocr/*/tessdata",
        "/usr/share/tesseract-ocr/tessdata",
        "/usr/share/tessdata",
        "/usr/local/share/tessdata",
        "/usr/local/share/tesseract-ocr/*/tessdata",
        "/opt/homebrew/share/tessdata",
        "/opt/local/share/tessdata",
        r"C:\Program Files\Tesseract-OCR\tessdata",
        r"C:\Program Files (x86)\Tesseract-OCR\tessdata",
    ):
        candidates += sorted(glob.glob(pattern), reverse=True)  # newest version first
    for folder in candidates:
        if os.path.isdir(folder) and _has_traineddata(folder):
            return os.path.normpath(folder)
    try:  # last resort: ask tesseract itself
        out = subprocess.run(
            [exe or "tesseract", "--list-langs"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        m = _TESS_LANGS_RE.search(out.stdout + out.stderr)
        if m and _has_traineddata(m.group(1)):
            return m.group(1)
    except (OSError, subprocess.SubprocessError):
        pass
    return None
