"""Turn the files a user adds to Folio into text with structure.

Why this module exists: every later stage (splitter, embedder, search, citations) needs the
same thing from very different formats: the text in reading order, cut into blocks that know
their page (so an answer can cite "p. 214") and the heading path they sit under (so a chunk
about "Options" under "Plotting > Axes" can be found by either). Each format has a small
private helper here; all of them return a `LoadedDocument`, and every failure surfaces as a
`LoadError` whose message can be shown to the user as is.

Public API: `SUPPORTED_EXTENSIONS`, `file_kind`, `is_supported`, `load`.
"""

from __future__ import annotations

import codecs
import contextvars
import csv
import functools
import glob
import io
import logging
import os
import re
import shutil
import subprocess
import unicodedata
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.core.types import Block, Deadline, LoadedDocument, LoadError

log = logging.getLogger(__name__)

__all__ = [
    "BAD_NAME_REASON",
    "SUPPORTED_EXTENSIONS",
    "displayable_path",
    "file_kind",
    "is_supported",
    "load",
]

_CODE_EXTENSIONS = (
    ".py .pyw .pyi .ipy .js .mjs .cjs .jsx .ts .tsx .vue .svelte "
    ".c .h .cc .cpp .cxx .hpp .hh .hxx .m .mm .java .kt .kts .scala .groovy .gradle "
    ".go .rs .rb .php .pl .pm .swift .cs .fs .vb .lua .r .jl .hs .ml .ex .exs .erl .clj "
    ".dart .zig .nim .f90 .f95 .sh .bash .zsh .fish .ps1 .bat .cmd .cmake "
    ".json .jsonl .yaml .yml .toml .ini .cfg .conf .properties .sql .css .scss .sass .less "
    ".xml .xsd .xsl .proto .graphql .tf"
).split()

SUPPORTED_EXTENSIONS: dict[str, str] = {
    ".pdf": "pdf",
    ".docx": "docx",
    ".txt": "text",
    ".text": "text",
    ".log": "text",
    ".tex": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".rst": "rst",
    ".html": "html",
    ".htm": "html",
    ".xhtml": "html",
    ".csv": "csv",
    ".tsv": "csv",
    ".epub": "epub",
    **{ext: "code" for ext in _CODE_EXTENSIONS},
}

# Size policy (what keeps memory bounded; see docs/ARCHITECTURE.md "Bad input"):
# text-like formats (text, Markdown, reST, code, CSV, HTML) are read into memory whole, and
# loading plus splitting holds about ten copies of the text, so they are refused above 32 MB
# (some 45,000 chunks, and minutes of splitting: a 63 MB text took 762 s to load and split on
# a busy 2-core machine, past the 300 s time limit, and peaked 650 MiB above the embedder);
# the size is checked before anything is read.
MAX_TEXT_BYTES = 32 * 1024 * 1024
# Zip packages (DOCX, EPUB) are checked from their directory before they are opened:
# python-docx reads every part into memory and parses the XML parts into trees.
MAX_DOCX_UNCOMPRESSED = 500 * 1024 * 1024  # all parts together
MAX_ZIP_XML_PART = 32 * 1024 * 1024  # one XML part (its tree takes about ten times that)
MAX_DOCX_RATIO = 100
DOCX_RATIO_MIN_SIZE = 10 * 1024 * 1024  # tiny packages compress well and are harmless
CSV_ROWS_PER_BLOCK = 20
MAX_TEXT_BLOCK_CHARS = 20_000  # plain-text paragraphs longer than this are cut at line ends
MAX_CODE_BLOCK_CHARS = 4_000
OCR_DPI = 300

_MB = 1024 * 1024


def file_kind(path: Path | str) -> str | None:
    """The loader kind for a file name ("pdf", "markdown", "code", ...), or None if unsupported."""
    return SUPPORTED_EXTENSIONS.get(Path(path).suffix.lower())


def is_supported(path: Path | str) -> bool:
    """Whether `load` knows the file's type (by extension; the content is not checked)."""
    return file_kind(path) is not None


BAD_NAME_REASON = (
    "the file name is not valid UTF-8 (it was written in another encoding); rename the file "
    "to add it"
)


def displayable_path(path: Path | str) -> str:
    """The path as text that can be shown and stored. Linux allows any bytes in a file name;
    Python keeps bytes that are not UTF-8 as lone surrogates, which cannot be written to the
    library, a log file or a terminal, so they become U+FFFD here. A valid name is unchanged."""
    text = str(path)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:  # a surrogate that no file system byte produces
        return text.encode("utf-8", "replace").decode("utf-8")


# The running load's time limit; loaders call _check_deadline() between pages and blocks.
_deadline: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "folio_load_deadline", default=None
)


def _check_deadline() -> None:
    deadline = _deadline.get()
    if deadline is not None:
        deadline.check()


def load(
    path: Path | str, *, ocr: bool | None = None, deadline: Deadline | None = None
) -> LoadedDocument:
    """Read a document into blocks of text in reading order.

    `ocr`: None = OCR scanned PDF pages when Tesseract is available, False = never,
    True = OCR when available (a warning says so when it is not).
    `deadline`: the file's time limit, checked between pages and blocks (None: no limit).
    Raises LoadError, with a reason meant for the user, for every failure.
    """
    token = _deadline.set(deadline)
    try:
        return _load(Path(path), ocr)
    finally:
        _deadline.reset(token)


def _load(path: Path, ocr: bool | None) -> LoadedDocument:
    kind = file_kind(path)
    if kind is None:
        suffix = path.suffix.lower()
        if suffix == ".doc":
            raise LoadError("old Word .doc files are not supported; save it as .docx")
        raise LoadError(f"unsupported file type {suffix or '(no extension)'}")
    try:
        st = path.stat()
        if not path.is_file():
            raise LoadError("not a regular file")
        with path.open("rb") as fh:
            fh.read(1)
    except LoadError:
        raise
    except FileNotFoundError:
        raise LoadError("the file no longer exists") from None
    except PermissionError:
        raise LoadError("permission denied") from None
    except OSError as exc:
        raise LoadError(f"could not read: {exc.strerror or exc}") from None
    if st.st_size == 0:
        raise LoadError("the file is empty")

    loader = _LOADERS[kind]
    try:
        doc = loader(path, ocr) if kind in ("pdf", "epub") else loader(path)
        _check_unchanged(path, st)
    except LoadError:
        raise
    except FileNotFoundError:
        raise LoadError("the file no longer exists") from None
    except PermissionError:
        raise LoadError("permission denied") from None
    except MemoryError:
        raise LoadError("not enough memory to read the file") from None
    except RecursionError:
        raise LoadError("the document is nested too deeply to read") from None
    except Exception as exc:  # noqa: BLE001 - every failure must reach the user as a LoadError
        log.exception("unexpected error loading %s", path)
        raise LoadError(f"could not read: {exc}") from exc

    doc.blocks = [b for b in doc.blocks if b.text.strip()]
    if not doc.blocks:
        raise LoadError("no text could be found in the file")
    doc.title = (doc.title or "").strip() or path.stem
    return doc


def _check_unchanged(path: Path, before: os.stat_result) -> None:
    """Refuse what was read when the file was deleted, replaced or rewritten meanwhile:
    the text could be half old, half new, and would not match the hash taken of the file."""
    try:
        after = path.stat()
    except FileNotFoundError:
        raise LoadError("the file was deleted while it was being read") from None
    if before.st_ino and (after.st_ino, after.st_dev) != (before.st_ino, before.st_dev):
        raise LoadError("the file was replaced while it was being read; add it again")
    if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
        raise LoadError("the file changed while it was being read; add it again")


# --------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------

_WS_RE = re.compile(r"[ \t\f\v\u00a0\u2000-\u200b\u3000]+")
_BINARY_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a zip archive or an Office document"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Microsoft Office document"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"BM", "a bitmap image"),
    (b"\x7fELF", "a program (ELF executable)"),
    (b"MZ", "a Windows program"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"BZh", "bzip2-compressed data"),
    (b"\xfd7zXZ", "xz-compressed data"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"Rar!", "a RAR archive"),
    (b"SQLite format 3\x00", "an SQLite database"),
    (b"OggS", "audio or video"),
    (b"ID3", "an MP3 file"),
    (b"fLaC", "a FLAC audio file"),
    (b"RIFF", "audio, video or an image (RIFF)"),
    (b"\x00\x00\x00", "a media file or other binary data"),
)


def _looks_like(head: bytes) -> str:
    for sig, what in _BINARY_SIGNATURES:
        if head.startswith(sig):
            return what
    return "arbitrary binary data"


def _binary_error(head: bytes, detail: str = "") -> LoadError:
    what = _looks_like(head)
    return LoadError(f"binary data in a text file (looks like {what}{detail})")


def _read_limited(path: Path, limit: int | None = None) -> bytes:
    limit = MAX_TEXT_BYTES if limit is None else limit
    size = path.stat().st_size
    if size > limit:
        raise LoadError(
            f"file too large ({size / _MB:,.0f} MB; the limit for this type is {limit // _MB} MB)"
        )
    with path.open("rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:  # grew since stat()
        raise LoadError(f"file too large (the limit for this type is {limit // _MB} MB)")
    return data


_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),  # before UTF-16 LE: it starts with the same bytes
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
# Encodings that decode to the same text for most Western files; charset-normalizer often
# reports a tie between them and picks cp1250 (Central European), which garbles ï/è/à.
_PREFERRED_TIES = ("utf_8", "cp1252", "latin_1", "iso8859_15")
# Control characters other than tab/newline/CR/FF/VT/ESC (ESC is common in terminal logs).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f\x80-\x9f\ufffd]")


def _decode_bytes(data: bytes, declared: str | None = None) -> tuple[str, str]:
    """Decode text of unknown encoding. Returns (text with \\n newlines, encoding name).

    Order: BOM, then `declared` (e.g. an HTML meta charset), strict UTF-8, then
    charset-normalizer. Refuses binary data (NUL bytes, many control characters).
    """
    head = data[:64]
    text: str | None = None
    encoding = ""
    for bom, enc in _BOMS:
        if data.startswith(bom):
            try:
                text = data.decode(enc)
            except UnicodeDecodeError:
                # A cut-off last character or a stray surrogate: keep the rest. Binary data
                # behind a BOM is refused by the control-character check below.
                text = data.decode(enc, errors="replace")
            encoding = enc
            break
    if text is None:
        utf16 = _bomless_utf16(data)
        if utf16 is not None:
            text = data.decode(utf16, errors="replace")
            encoding = utf16
    if text is None:
        if b"\x00" in data:
            raise _binary_error(head)
        if declared:
            try:
                text = data.decode(declared)
                encoding = declared
            except (UnicodeDecodeError, LookupError):
                text = None
        if text is None:
            try:
                text = data.decode("utf-8")
                encoding = "utf-8"
            except UnicodeDecodeError as exc:
                text = _mostly_utf8(data)
                if text is not None:
                    encoding = "utf-8"
                else:
                    detected = _detect_encoding(data, exc.start)
                    if detected is None:
                        # Nothing fits cleanly; the control-character check below still
                        # refuses binary data, and real text keeps its ASCII at least.
                        log.info("no encoding detected; decoding as cp1252 with replacements")
                        detected = "cp1252"
                    encoding = detected
                    text = data.decode(encoding, errors="replace")
    sample = text[:200_000]
    if sample:
        controls = len(_CONTROL_RE.findall(sample))
        if controls > 0.05 * len(sample):
            raise _binary_error(
                head, f"; {controls * 100 // len(sample)}% control or undecodable characters"
            )
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text, encoding


def _mostly_utf8(data: bytes) -> str | None:
    """The text decoded as UTF-8 with replacements when it is UTF-8 with a few broken bytes
    (a stray Latin-1 byte, a character cut at the end): more well-formed multi-byte
    characters than broken ones. A legacy 8-bit file almost never contains well-formed
    UTF-8 sequences, so it still goes to encoding detection."""
    text = data.decode("utf-8", errors="replace")
    broken = text.count("\ufffd") - data.count(b"\xef\xbf\xbd")  # minus real U+FFFD
    well_formed = len(text) - len(text.encode("ascii", "ignore")) - broken
    return text if broken > 0 and well_formed > broken else None


def _bomless_utf16(data: bytes) -> str | None:
    """"utf-16-le"/"utf-16-be" for UTF-16 text without a BOM, else None.

    Text in Latin, Greek or Cyrillic scripts has a zero in (nearly) every other byte, on
    the same side. Binary data with zeros has them on both sides.
    """
    sample = data[:65536]
    half = len(sample) // 2
    if half < 2:
        return None
    even = sample[0::2].count(0)
    odd = sample[1::2].count(0)
    for zeros, other, enc in ((odd, even, "utf-16-le"), (even, odd, "utf-16-be")):
        if zeros >= 0.4 * half and other <= 0.02 * half:
            return enc
    return None


_WESTERN_CHARS = frozenset(
    "ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖØÙÚÛÜÝÞßàáâãäåæçèéêëìíîïðñòóôõöøùúûüýþÿŒœŠšŽžŸ"
    "\u2018\u2019\u201a\u201c\u201d\u201e\u2013\u2014\u2026\u2022\u20ac\u2122°§©®«»·¡¿\u00a0"
)


def _looks_western(text: str) -> bool:
    """Whether text decoded as cp1252 reads like a Western European language: mostly ASCII
    letters, and the rest common accented letters and typographic punctuation. Cyrillic or
    Greek bytes decoded this way are nearly all non-ASCII; Central European ones produce
    oddities like "³" and "¹" (for "ł" and "ą")."""
    counts = Counter(text)
    ascii_letters = sum(n for ch, n in counts.items() if ch.isascii() and ch.isalpha())
    other = {ch: n for ch, n in counts.items() if not ch.isascii()}
    total_other = sum(other.values())
    if not total_other:
        return True
    plausible = sum(n for ch, n in other.items() if ch in _WESTERN_CHARS)
    other_letters = sum(n for ch, n in other.items() if ch.isalpha())
    return plausible >= 0.97 * total_other and other_letters <= 0.3 * (
        ascii_letters + other_letters
    )


def _detect_encoding(data: bytes, bad_at: int) -> str | None:
    from charset_normalizer import from_bytes

    # The start of the file plus the region around the first non-UTF-8 byte is what matters;
    # detecting on a sample keeps a 300 MB file fast.
    sample = (
        data
        if len(data) <= 1_000_000
        else (data[:300_000] + data[max(300_000, bad_at - 300_000) : bad_at + 300_000])
    )
    # charset-normalizer is weak on short Western texts (it may pick cp1257 for French), and
    # cp1252 is by far the most common legacy encoding: prefer it when it reads naturally.
    try:
        if _looks_western(sample.decode("cp1252")):
            return "cp1252"
    except UnicodeDecodeError:
        pass
    results = from_bytes(sample)
    best = results.best()
    if best is None:
        return None
    tied = [
        m for m in results if m.chaos <= best.chaos + 0.01 and m.coherence >= best.coherence - 0.01
    ]
    for preferred in _PREFERRED_TIES:
        for match in tied:
            if match.encoding == preferred or preferred in match.could_be_from_charset:
                return preferred
    return best.encoding


def _collapse(text: str) -> str:
    return _WS_RE.sub(" ", text).strip()


def _split_long(text: str, limit: int) -> list[str]:
    """Cut text longer than `limit` at line ends (or hard, for one giant line)."""
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    current: list[str] = []
    size = 0
    for line in text.split("\n"):
        while len(line) > limit:
            if current:
                pieces.append("\n".join(current))
                current, size = [], 0
            pieces.append(line[:limit])
            line = line[limit:]
        if size + len(line) + 1 > limit and current:
            pieces.append("\n".join(current))
            current, size = [], 0
        current.append(line)
        size += len(line) + 1
    if current:
        pieces.append("\n".join(current))
    return [p for p in pieces if p.strip()]


def _markdown_table(rows: list[list[str]]) -> str:
    """Rows of cell texts as a Markdown table; the first row is the header."""
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        return ""
    width = max(len(r) for r in rows)

    def fmt(cells: list[str]) -> str:
        cells = [_collapse(c).replace("|", "\\|") for c in cells] + [""] * (width - len(cells))
        return "| " + " | ".join(cells) + " |"

    lines = [fmt(rows[0]), "| " + " | ".join(["---"] * width) + " |"]
    lines.extend(fmt(r) for r in rows[1:])
    return "\n".join(lines)


class _Sections:
    """Heading path bookkeeping: `enter(level, title)` returns the new path.

    Levels may skip (an h2 followed by h4s): a heading closes every open heading of the
    same or a deeper level, so sibling h4s replace each other.
    """

    def __init__(self) -> None:
        self._open: list[tuple[int, str]] = []
        self.current: tuple[str, ...] = ()

    def enter(self, level: int, title: str) -> tuple[str, ...]:
        while self._open and self._open[-1][0] >= level:
            self._open.pop()
        self._open.append((level, title))
        self.current = tuple(t for _, t in self._open)
        return self.current


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
_LEADER_RE = re.compile(r"(?:[ \t]*\.){4,}[ \t]*|[ \t]*\u2026{2,}[ \t]*")


def _fix_accents(text: str) -> str:
    def combine(m: re.Match) -> str:
        letter = "i" if m.group(2) == "\u0131" else m.group(2)
        return unicodedata.normalize("NFC", letter + _SPACING_ACCENTS[m.group(1)])

    return _SPACING_ACCENT_RE.sub(combine, text)


def _load_pdf(path: Path, ocr: bool | None) -> LoadedDocument:
    return _load_fitz(path, "pdf", ocr)


def _load_epub(path: Path, ocr: bool | None) -> LoadedDocument:
    if zipfile.is_zipfile(path):  # MuPDF inflates the chapters: refuse zip bombs first
        _check_zip_package(path, "EPUB")
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
        _check_deadline()
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
        toc = doc.get_toc(simple=True)
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

    texts = [_WS_RE.sub(" ", "".join(line[4])).strip() for line in lines]
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
            norm = _DIGITS_RE.sub("#", _collapse(text).lower())
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
    text = _collapse(text).casefold()
    text = _ENUM_PREFIX_RE.sub("", text, count=1)
    return _NON_WORD_RE.sub("", text)


def _assemble_fitz_blocks(
    pages: list[_PdfPage], toc: list, page_count: int, body_size: float
) -> list[Block]:
    """Blocks with page numbers, heading kinds and TOC section paths.

    A TOC entry pointing at page N takes effect on page N: at the block whose text is the
    entry's title when one is found, else from the top of the page (entries after the last
    one found take effect right after it).
    """
    starts: dict[int, list[tuple[int, str]]] = {}
    last_page = 1
    for entry in toc or ():
        try:
            level, title, page_no = int(entry[0]), _collapse(str(entry[1])), int(entry[2])
        except (TypeError, ValueError, IndexError):
            continue
        if not title:
            continue
        if page_no < 1 or page_no > page_count:
            page_no = last_page  # entries without a target follow their predecessor
        last_page = page_no
        starts.setdefault(page_no, []).append((max(level, 1), title))

    sections = _Sections()
    blocks: list[Block] = []
    for page in pages:
        pending = starts.get(page.number, [])
        flat: list[tuple[_PdfBlock, _Segment]] = [(b, s) for b in page.blocks for s in b.segments]
        matches = _match_toc(pending, [s for _, s in flat]) if pending else {}
        applied = min(matches) if matches else len(pending)
        for level, title in pending[:applied]:
            sections.enter(level, title)
        last_entry = max(matches) if matches else -1
        by_segment = {m[0]: (e, m) for e, m in matches.items()}
        skip_next = False
        for i, (block, segment) in enumerate(flat):
            if skip_next:
                skip_next = False
                continue
            text, kind = segment.text, segment.kind
            trailing = False
            if i in by_segment:
                e, (_, span, exact) = by_segment[i]
                for level, title in pending[applied : e + 1]:
                    sections.enter(level, title)
                applied = e + 1
                trailing = e == last_entry
                if exact:
                    kind = "heading"
                if span == 2:
                    text = _collapse(text + " " + flat[i + 1][1].text)
                    skip_next = True
            elif kind == "text" and _looks_like_heading(block, segment, body_size):
                kind = "heading"
            blocks.append(Block(text, page.number, sections.current, kind))
            if trailing:  # entries not found on the page start right after the last one found
                for level, title in pending[applied:]:
                    sections.enter(level, title)
                applied = len(pending)
        for level, title in pending[applied:]:
            sections.enter(level, title)
    return blocks


def _match_toc(
    pending: list[tuple[int, str]], segments: list[_Segment]
) -> dict[int, tuple[int, int, bool]]:
    """Where each TOC entry of a page starts: entry index -> (segment index, segments
    spanned, whether the segment *is* the heading). Entries are matched in order; a title
    may be split over two segments, or run into its paragraph (a prefix match)."""
    keys = [_heading_key(s.text) if s.lines <= 3 and len(s.text) < 250 else "" for s in segments]
    matches: dict[int, tuple[int, int, bool]] = {}
    cursor = 0
    for e, (_, title) in enumerate(pending):
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


def _clean_pdf_title(title: str) -> str:
    title = _collapse(title)
    if title.lower().startswith("microsoft word - "):
        title = re.sub(r"\.(docx?|rtf)$", "", title[len("microsoft word - ") :], flags=re.I)
    if not title or _JUNK_TITLE_RE.match(title) or not any(c.isalpha() for c in title):
        return ""
    return title


def _pdf_title_fallback(pages: list[_PdfPage], blocks: list[Block], body_size: float) -> str:
    """Largest short line on the first page with text, else the first heading."""
    for page in pages[:3]:
        if not page.blocks:
            continue
        best = max(page.blocks, key=lambda b: b.size)
        text = _collapse(best.segments[0].text.replace("\n", " "))
        if body_size and best.size >= 1.25 * body_size and 0 < len(text) <= 150:
            return text
        break
    for block in blocks[:200]:
        if block.kind == "heading" and len(block.text) <= 150:
            return _collapse(block.text)
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
        m = re.search(r'available languages in "(.+?)"', out.stdout + out.stderr)
        if m and _has_traineddata(m.group(1)):
            return m.group(1)
    except (OSError, subprocess.SubprocessError):
        pass
    return None


# --------------------------------------------------------------------------------------
# DOCX (python-docx)
# --------------------------------------------------------------------------------------

_HEADING_STYLE_RE = re.compile(r"^heading\s*([1-9])$", re.I)


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
    _check_zip_package(path, "Word document", "word/document.xml", refuse_dtd=True)


# An XML part with a DOCTYPE: OOXML and EPUB packages never need one, and its entity
# declarations are how "billion laughs" (exponential expansion) and external-entity attacks
# work. Matched in UTF-8 and UTF-16 (both byte orders).
_DOCTYPE_MARKS = tuple(
    m for enc in ("utf-8", "utf-16-le", "utf-16-be") for m in {
        "<!DOCTYPE".encode(enc), "<!doctype".encode(enc), "<!ENTITY".encode(enc)
    }
)


def _check_zip_package(
    path: Path, what: str, required: str | None = None, refuse_dtd: bool = False
) -> None:
    """Check a zip package from its directory before anything is inflated: size, ratio (zip
    bombs), and (`refuse_dtd`) XML parts with DTDs or entities (billion laughs). The sizes in
    the directory can lie, but zipfile stops at the declared size (and then fails the CRC), so
    a part can never inflate beyond what is checked here."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            names = {i.filename for i in infos}
            if required is not None and required not in names:
                raise LoadError(
                    f"not a valid {what} (no document body; is it another Office format?)"
                )
            total = sum(i.file_size for i in infos)
            packed = sum(i.compress_size for i in infos)
            if total > DOCX_RATIO_MIN_SIZE and total > MAX_DOCX_RATIO * max(packed, 1):
                raise LoadError(
                    f"the {what} looks like a zip bomb (it expands {total // max(packed, 1)}x "
                    f"to {total / _MB:,.0f} MB); refusing to open it"
                )
            if total > MAX_DOCX_UNCOMPRESSED:
                raise LoadError(
                    f"the {what} is too large to open safely ({total / _MB:,.0f} MB "
                    f"uncompressed; the limit is {MAX_DOCX_UNCOMPRESSED // _MB} MB)"
                )
            for info in infos:
                name = info.filename.lower()
                if not name.endswith((".xml", ".rels", ".xhtml", ".html", ".htm", ".opf",
                                      ".ncx")):
                    continue
                if info.file_size > MAX_ZIP_XML_PART:
                    raise LoadError(
                        f"the {what} is too large to open safely (its part {info.filename} is "
                        f"{info.file_size / _MB:,.1f} MB of XML; the limit is "
                        f"{MAX_ZIP_XML_PART / _MB:,.0f} MB)"
                    )
                if not refuse_dtd:
                    continue
                with zf.open(info) as part:
                    head = part.read(64 * 1024)  # a DTD comes before the root element
                if any(mark in head for mark in _DOCTYPE_MARKS):
                    raise LoadError(
                        f"the {what} contains an XML document type declaration "
                        f"({info.filename}), which Word never writes and which can hide an "
                        "entity-expansion attack; refusing to open it"
                    )
    except LoadError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, OSError, ValueError,
            EOFError, NotImplementedError, RuntimeError) as exc:
        raise LoadError(f"not a valid {what} (damaged package: {exc})") from None


def _load_docx(path: Path) -> LoadedDocument:
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
            m = re.search(r"(\d)$", name)
            return int(m.group(1)) - 1 if m else 0
        return None

    sections = _Sections()
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
            _check_deadline()
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
            title = _collapse(text.replace("\n", " "))
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
    title = _collapse(props.title or "") or first_title
    author = _collapse(props.author or "") or None
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
    return _markdown_table(rows)


# --------------------------------------------------------------------------------------
# Plain text, Markdown, reStructuredText, source code, CSV
# --------------------------------------------------------------------------------------


def _read_text(path: Path) -> tuple[str, str]:
    text, encoding = _decode_bytes(_read_limited(path))
    if not text.strip():
        raise LoadError("the file contains no text (only whitespace)")
    return text, encoding


def _load_plain(path: Path) -> LoadedDocument:
    text, encoding = _read_text(path)
    blocks: list[Block] = []
    for i, para in enumerate(_paragraphs(text)):
        if not i % 4096:
            _check_deadline()
        pieces = _split_long(para, MAX_TEXT_BLOCK_CHARS)
        blocks.extend(Block(piece, None, (), "text") for piece in pieces)
    return LoadedDocument(
        path=path, kind="text", title=path.stem, blocks=blocks, metadata={"encoding": encoding}
    )


_BLANK_SPLIT_RE = re.compile(r"\n[ \t]*\n")


def _paragraphs(text: str) -> list[str]:
    return [p.strip("\n").rstrip() for p in _BLANK_SPLIT_RE.split(text) if p.strip()]


# ---- Markdown ------------------------------------------------------------------------

_MD_ATX_RE = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_MD_FENCE_RE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
_MD_SETEXT_RE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_MD_HR_RE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_MD_LIST_RE = re.compile(r"^ {0,12}(?:[-*+]|\d{1,9}[.)])(?:[ \t]+|$)")
_MD_TABLE_SEP_RE = re.compile(r"^[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")


def _load_markdown(path: Path) -> LoadedDocument:
    text, encoding = _read_text(path)
    lines = text.split("\n")
    metadata = {"encoding": encoding}
    start = _skip_front_matter(lines, metadata)
    blocks = _parse_markdown(lines, start)
    title = metadata.pop("title", "")
    if not title:
        headings = [b for b in blocks if b.kind == "heading"]
        top = [b for b in headings if len(b.section) == 1]
        title = (top or headings)[0].text if headings else ""
    return LoadedDocument(
        path=path,
        kind="markdown",
        title=title or path.stem,
        blocks=blocks,
        author=metadata.pop("author", None) or None,
        metadata=metadata,
    )


def _skip_front_matter(lines: list[str], metadata: dict[str, str]) -> int:
    """YAML front matter ("---" ... "---") at the top: read title/author, skip the rest."""
    if not lines or lines[0].strip() != "---":
        return 0
    for i in range(1, min(len(lines), 200)):
        if lines[i].strip() in ("---", "..."):
            for line in lines[1:i]:
                m = re.match(r"^(title|author)\s*:\s*(.+)$", line.strip(), re.I)
                if m:
                    metadata[m.group(1).lower()] = m.group(2).strip().strip("'\"")
            return i + 1
    return 0


def _md_marker(line: str) -> str:
    """The kind of list marker: "-", "*", "+" or "1" for ordered lists."""
    stripped = line.lstrip()
    return "1" if stripped[:1].isdigit() else stripped[:1]


def _parse_markdown(lines: list[str], start: int = 0) -> list[Block]:
    sections = _Sections()
    blocks: list[Block] = []
    para: list[str] = []
    para_kind = "text"

    def flush() -> None:
        nonlocal para_kind
        if para:
            text = "\n".join(para).strip("\n")
            kind = para_kind
            if (
                kind == "text"
                and len(para) >= 2
                and "|" in para[0]
                and "|" in para[1]
                and _MD_TABLE_SEP_RE.match(para[1])
            ):
                kind = "table"
            if text.strip():
                blocks.append(Block(text, None, sections.current, kind))
            para.clear()
        para_kind = "text"

    def heading(level: int, title: str) -> None:
        flush()
        title = _collapse(title)
        if title:
            blocks.append(Block(title, None, sections.enter(level, title), "heading"))

    i, n = start, len(lines)
    checked = i
    while i < n:
        if i - checked >= 4096:
            _check_deadline()
            checked = i
        line = lines[i]
        fence = _MD_FENCE_RE.match(line)
        if fence and not (fence.group(2)[0] == "`" and "`" in fence.group(3)):
            flush()
            marker = fence.group(2)
            body = [line]
            i += 1
            while i < n:
                body.append(lines[i])
                closing = lines[i].strip()
                i += 1
                if (
                    closing.startswith(marker[0] * len(marker))
                    and not closing.strip(marker[0])
                    and len(lines[i - 1]) - len(lines[i - 1].lstrip()) <= 3
                ):
                    break
            blocks.append(Block("\n".join(body).rstrip(), None, sections.current, "code"))
            continue
        if not line.strip():
            if para and para_kind == "list":
                j = i + 1
                while j < n and not lines[j].strip():
                    j += 1
                if j < n and (
                    lines[j].startswith(("  ", "\t"))
                    or (_MD_LIST_RE.match(lines[j]) and _md_marker(lines[j]) == _md_marker(para[0]))
                ):
                    i = j  # loose list: the items continue after blank lines
                    continue
            flush()
            i += 1
            continue
        atx = _MD_ATX_RE.match(line)
        if atx:
            heading(len(atx.group(1)), atx.group(2) or "")
            i += 1
            continue
        setext = _MD_SETEXT_RE.match(line)
        if (
            setext
            and para
            and para_kind == "text"
            and not (
                len(para) >= 1 and "|" in para[0] and setext.group(1)[0] == "-" and "|" in line
            )
        ):
            title = " ".join(p.strip() for p in para)
            para.clear()
            heading(1 if setext.group(1)[0] == "=" else 2, title)
            i += 1
            continue
        if _MD_HR_RE.match(line):
            flush()
            i += 1
            continue
        if _MD_LIST_RE.match(line):
            if para_kind != "list":
                flush()
                para_kind = "list"
            para.append(line.rstrip())
            i += 1
            continue
        if not para and (line.startswith("    ") or line.startswith("\t")):
            body = []
            while i < n and (not lines[i].strip() or lines[i].startswith(("    ", "\t"))):
                body.append(lines[i][4:] if lines[i].startswith("    ") else lines[i][1:])
                i += 1
            code = "\n".join(body).strip("\n")
            if code.strip():
                blocks.append(Block(code, None, sections.current, "code"))
            continue
        para.append(line.rstrip())
        i += 1
    flush()
    return blocks


# ---- reStructuredText ----------------------------------------------------------------

_RST_ADORN_RE = re.compile(r"^([!-/:-@\[-`{-~])\1{2,}[ \t]*$")
_RST_LIST_RE = re.compile(r"^(?:[-*+\u2022]|\d+[.)]|#\.|\(?[a-zA-Z0-9]+\))[ \t]+")
_RST_CODE_DIRECTIVE_RE = re.compile(r"^\.\.\s+(?:code-block|code|sourcecode|literalinclude)::")


def _load_rst(path: Path) -> LoadedDocument:
    text, encoding = _read_text(path)
    blocks = _parse_rst(text.split("\n"))
    headings = [b for b in blocks if b.kind == "heading"]
    title = headings[0].text if headings else path.stem
    return LoadedDocument(
        path=path, kind="rst", title=title, blocks=blocks, metadata={"encoding": encoding}
    )


def _parse_rst(lines: list[str]) -> list[Block]:
    sections = _Sections()
    styles: list[tuple[str, bool]] = []  # adornment styles in order of first use = level
    blocks: list[Block] = []
    para: list[str] = []
    expect_code = False  # the previous paragraph ended with "::" or was a code directive

    def is_adorn(line: str) -> bool:
        return bool(_RST_ADORN_RE.match(line))

    def heading(style: tuple[str, bool], title: str) -> None:
        if style not in styles:
            styles.append(style)
        title = _collapse(title)
        if title:
            blocks.append(
                Block(title, None, sections.enter(styles.index(style) + 1, title), "heading")
            )

    def flush() -> None:
        nonlocal expect_code
        if not para:
            return
        text = "\n".join(para).strip("\n")
        para.clear()
        first = text.lstrip("\n")
        indented = first[:1] in (" ", "\t")
        if expect_code and indented:
            blocks.append(Block(_dedent(text), None, sections.current, "code"))
            expect_code = False
            return
        if _RST_CODE_DIRECTIVE_RE.match(first):
            expect_code = True
            rest = text.partition("\n")[2]
            # directive options (":linenos:") and the content may follow without a blank line
            body = "\n".join(ln for ln in rest.split("\n") if not re.match(r"^\s+:\w[\w-]*:", ln))
            if body.strip():
                blocks.append(Block(_dedent(body), None, sections.current, "code"))
                expect_code = False
            return
        if (
            first.startswith("..")
            and "::" not in first.split("\n")[0]
            and not first.startswith(".. _")
        ):
            expect_code = False  # a comment
            return
        expect_code = text.rstrip().endswith("::")
        kind = "list" if _RST_LIST_RE.match(first.lstrip()) else "text"
        blocks.append(Block(text, None, sections.current, kind))

    i, n = 0, len(lines)
    checked = 0
    while i < n:
        if i - checked >= 4096:
            _check_deadline()
            checked = i
        line = lines[i]
        prev_blank = i == 0 or not lines[i - 1].strip() or not para
        # overline + title + underline
        if (
            is_adorn(line)
            and i + 2 < n
            and lines[i + 1].strip()
            and is_adorn(lines[i + 2])
            and lines[i + 2].strip()[0] == line.strip()[0]
            and not is_adorn(lines[i + 1])
        ):
            flush()
            heading((line.strip()[0], True), lines[i + 1])
            i += 3
            continue
        # title + underline (the title is a one-line paragraph)
        if (
            line.strip()
            and not line[:1].isspace()
            and not is_adorn(line)
            and prev_blank
            and i + 1 < n
            and is_adorn(lines[i + 1])
            and len(lines[i + 1].strip()) >= min(len(line.strip()), 3)
        ):
            flush()
            heading((lines[i + 1].strip()[0], False), line)
            i += 2
            continue
        if not line.strip():
            flush()
            i += 1
            continue
        if is_adorn(line) and not para:  # transition
            i += 1
            continue
        if expect_code and not para and line[:1] in (" ", "\t"):
            # a literal block may contain blank lines: take everything indented
            body = []
            while i < n and (not lines[i].strip() or lines[i][:1] in (" ", "\t")):
                body.append(lines[i])
                i += 1
            para.extend(body)
            flush()
            continue
        para.append(line.rstrip())
        i += 1
    flush()
    return blocks


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text).strip("\n")


# ---- source code ---------------------------------------------------------------------

_CODE_DEF_RE = re.compile(
    r"^(?:export\s+|default\s+|public\s+|private\s+|protected\s+|static\s+|async\s+|pub(?:\([^)]*\))?\s+|"
    r"abstract\s+|final\s+|inline\s+|unsafe\s+)*"
    r"(?:def|class|function|func|fn|sub|module|interface|struct|enum|impl|trait|object|"
    r"type|namespace|procedure|subroutine|program|macro|defun|defn)\b"
)
_CODE_CLOSER_RE = re.compile(r"^(?:[}\])]|end\b|endfunction\b|</|#end|fi\b|done\b|esac\b)")
_CODE_PREAMBLE_RE = re.compile(r"^\s*(?:@|#|//|/\*|\*|%|--|;|\")")


def _load_code(path: Path) -> LoadedDocument:
    text, encoding = _read_text(path)
    blocks: list[Block] = []
    for i, (segment, section) in enumerate(_code_segments(text)):
        if not i % 1024:
            _check_deadline()
        for piece in _pack_code(segment):
            blocks.append(Block(piece, None, section, "code"))
    return LoadedDocument(
        path=path,
        kind="code",
        title=path.name,
        blocks=blocks,
        metadata={"encoding": encoding, "language": path.suffix.lower().lstrip(".")},
    )


def _code_segments(text: str) -> list[tuple[str, tuple[str, ...]]]:
    """Split at blank lines that are followed by a top-level (unindented) line.

    Returns (text, section) pairs; the section names the definition a piece holds.
    Small pieces that define nothing (imports, a comment) are folded into the next piece.
    """
    lines = text.rstrip().split("\n")
    segments: list[list[str]] = [[]]
    blank_before = False
    for line in lines:
        stripped = line.strip()
        if not stripped:
            blank_before = True
            segments[-1].append("")
            continue
        top_level = not line[:1].isspace()
        if blank_before and top_level and segments[-1] and not _CODE_CLOSER_RE.match(stripped):
            segments.append([])
        blank_before = False
        segments[-1].append(line.rstrip())
    pieces = [t for t in ("\n".join(s).strip("\n") for s in segments) if t.strip()]
    merged: list[tuple[str, tuple[str, ...]]] = []
    carry = ""
    for piece in pieces:
        section = _code_section(piece)
        text_ = carry + "\n\n" + piece if carry else piece
        carry = ""
        if not section and len(text_) < 200:
            carry = text_
        else:
            merged.append((text_, section))
    if carry:
        if merged and len(merged[-1][0]) + len(carry) < MAX_CODE_BLOCK_CHARS:
            merged[-1] = (merged[-1][0] + "\n\n" + carry, merged[-1][1])
        else:
            merged.append((carry, ()))
    return merged


def _first_code_line(text: str) -> str:
    for line in text.split("\n"):
        if line.strip() and not _CODE_PREAMBLE_RE.match(line):
            return line.strip()
    return ""


def _code_section(segment: str) -> tuple[str, ...]:
    first = _first_code_line(segment)
    target = (
        re.sub(r"^[\w\s,<>\[\]\*&:~]*?=\s*", "", first) if first.startswith("function") else first
    )
    if first and (_CODE_DEF_RE.match(first) or _CODE_DEF_RE.match(target)):
        label = first.rstrip("{:").strip()
        return (label[:120],)
    return ()


def _pack_code(segment: str) -> list[str]:
    """Keep a segment whole unless it is long; then cut at blank lines, then at lines."""
    if len(segment) <= MAX_CODE_BLOCK_CHARS:
        return [segment]
    pieces: list[str] = []
    current = ""
    for part in _paragraphs(segment):
        if current and len(current) + len(part) + 2 > MAX_CODE_BLOCK_CHARS:
            pieces.append(current)
            current = ""
        current = current + "\n\n" + part if current else part
    if current:
        pieces.append(current)
    return [p for piece in pieces for p in _split_long(piece, MAX_CODE_BLOCK_CHARS)]


# ---- CSV / TSV -----------------------------------------------------------------------


def _load_csv(path: Path) -> LoadedDocument:
    """Each row as "header: value; ..." so a chunk of rows stands alone; 20 rows a block."""
    text, encoding = _read_text(path)
    sample = text[: 64 * 1024]
    tsv = path.suffix.lower() == ".tsv"
    sniffer = csv.Sniffer()
    try:
        dialect: type[csv.Dialect] | csv.Dialect = sniffer.sniff(
            sample, delimiters="\t" if tsv else ",;\t|"
        )
    except csv.Error:
        dialect = csv.excel_tab if tsv else csv.excel
    try:
        has_header = sniffer.has_header(sample)
    except csv.Error:
        has_header = False

    rows = (r for r in csv.reader(io.StringIO(text), dialect) if any(c.strip() for c in r))
    blocks: list[Block] = []
    lines: list[str] = []
    header: list[str] | None = None
    count = 0
    try:
        for row in rows:
            if header is None:
                first = [_collapse(c) for c in row]
                looks_like_names = (
                    all(first)
                    and len(set(first)) == len(first)
                    and not any(_is_number(c) for c in first)
                )
                if has_header or looks_like_names:
                    header = [h or f"column {i + 1}" for i, h in enumerate(first)]
                    continue
                header = [f"column {i + 1}" for i in range(len(first))]
            count += 1
            cells = []
            for i, value in enumerate(row):
                value = _collapse(value)
                if value:
                    name = header[i] if i < len(header) else f"column {i + 1}"
                    cells.append(f"{name}: {value}")
            if cells:
                lines.append("; ".join(cells))
            if len(lines) >= CSV_ROWS_PER_BLOCK:
                blocks.append(Block("\n".join(lines), None, (), "table"))
                lines = []
                if not len(blocks) % 256:
                    _check_deadline()
    except csv.Error as exc:
        raise LoadError(f"could not parse the table: {exc}") from None
    if header is None:
        raise LoadError("the file contains no rows")
    if lines:
        blocks.append(Block("\n".join(lines), None, (), "table"))
    if not blocks:  # only a header line: keep it, it is all there is
        blocks.append(Block("; ".join(header), None, (), "table"))
    metadata = {"encoding": encoding, "columns": ", ".join(header), "rows": str(count)}
    return LoadedDocument(path=path, kind="csv", title=path.name, blocks=blocks, metadata=metadata)


def _is_number(value: str) -> bool:
    try:
        float(value.replace(",", ""))
        return True
    except ValueError:
        return False


# --------------------------------------------------------------------------------------
# HTML (lxml, streaming parser target: no tree, so no depth limit and no recursion)
# --------------------------------------------------------------------------------------

_HTML_SKIP = frozenset(
    "script style noscript nav aside form svg iframe template button select datalist "
    "object canvas".split()
)
_HTML_HEADINGS = {f"h{i}": i for i in range(1, 7)}
_NEWLINES_RE = re.compile(r"[\r\n]+")
# class/id tokens that mark navigation chrome in generated docs and common site themes
_HTML_NAV_TOKENS = frozenset(
    "nav navbar nav-panel navigation navheader navfooter breadcrumb breadcrumbs "
    "skip-link skiplink sidebar toc-sidebar cookie-banner".split()
)
_HTML_BLOCK_TAGS = frozenset(
    "address article aside blockquote body center dd details dialog dir div dl dt fieldset "
    "figcaption figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr html li main menu nav ol "
    "p pre section summary table tbody thead tfoot tr td th caption ul".split()
)
_HTML_TEXT_LEAVES = frozenset("p dt dd blockquote figcaption caption address summary li".split())
_META_CHARSET_RE = re.compile(
    rb"""<meta[^>]+?charset\s*=\s*["']?\s*([A-Za-z0-9_.:\-]+)|<\?xml[^>]+encoding\s*=\s*["']([A-Za-z0-9_.:\-]+)""",
    re.I,
)


class _Capture:
    __slots__ = ("type", "root_depth", "level", "parts", "rows", "items", "nest")

    def __init__(self, type_: str, root_depth: int, level: int = 0) -> None:
        self.type = type_  # "text", "heading", "pre", "table", "list"
        self.root_depth = root_depth
        self.level = level
        self.parts: list[str] = []
        self.rows: list[list[list[str]]] = []  # table: rows of cells of text parts
        self.items: list[tuple[int, list[str]]] = []  # list: (depth, text parts)
        self.nest = 1  # nesting of tables (table capture) or lists (list capture)

    def add(self, text: str) -> None:
        if self.type == "table":
            if not self.rows:
                self.rows.append([])
            if not self.rows[-1]:
                self.rows[-1].append([])
            self.rows[-1][-1].append(text)
        elif self.type == "list":
            if not self.items:
                self.items.append((0, []))
            self.items[-1][1].append(text)
        else:
            self.parts.append(text)


class _HtmlExtractor:
    """lxml parser target: receives start/end/data events and builds Blocks."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.sections = _Sections()
        self.stack: list[tuple[str, bool, bool]] = []  # (tag, starts skip, is article/main)
        self.skip = 0
        self.articles = 0
        self.in_head = 0
        self.in_title = False
        self.title_parts: list[str] = []
        self.first_h1 = ""
        self.meta: dict[str, str] = {}
        self.inline: list[str] = []
        self.cap: _Capture | None = None

    # -- parser target interface --
    def start(self, tag, attrib) -> None:
        tag = tag.lower() if isinstance(tag, str) else ""
        skip_here = False
        if not self.skip:
            role = (attrib.get("role") or "").lower()
            if (
                tag in _HTML_SKIP
                or role == "navigation"
                or "hidden" in attrib
                or (tag in ("header", "footer") and not self.articles)
                or _is_nav_chrome(tag, attrib, inside_article=self.articles > 0)
            ):
                skip_here = True
        article = tag in ("article", "main") and not self.skip and not skip_here
        self.stack.append((tag, skip_here, article))
        if skip_here:
            self.skip += 1
            return
        if self.skip:
            return
        if article:
            self.articles += 1
        if tag == "head":
            self.in_head += 1
        elif tag == "title" and self.in_head:
            self.in_title = True
        elif tag == "meta":
            name = (attrib.get("name") or attrib.get("property") or "").lower()
            content = attrib.get("content") or ""
            if name and content.strip():
                self.meta.setdefault(name, _collapse(content))
        if self.in_head:
            return
        cap = self.cap
        if cap is not None:
            self._start_inside(cap, tag)
            return
        depth = len(self.stack)
        if tag in _HTML_HEADINGS:
            self._flush_inline()
            self.cap = _Capture("heading", depth, _HTML_HEADINGS[tag])
        elif tag == "pre":
            self._flush_inline()
            self.cap = _Capture("pre", depth)
        elif tag == "table":
            self._flush_inline()
            self.cap = _Capture("table", depth)
        elif tag in ("ul", "ol", "menu", "dir"):
            self._flush_inline()
            self.cap = _Capture("list", depth)
        elif tag in _HTML_TEXT_LEAVES:
            self._flush_inline()
            self.cap = _Capture("text", depth)
        elif tag == "br":
            self.inline.append("\n")
        elif tag in _HTML_BLOCK_TAGS:
            self._flush_inline()

    def end(self, tag) -> None:
        tag = tag.lower() if isinstance(tag, str) else ""
        for i in range(len(self.stack) - 1, -1, -1):
            if self.stack[i][0] == tag:
                break
        else:
            return  # a stray end tag
        while len(self.stack) > i:
            self._close()

    def data(self, text: str) -> None:
        if self.skip:
            return
        if self.in_title:
            self.title_parts.append(text)
        elif self.in_head:
            return
        elif self.cap is not None:
            # Only <pre> keeps source line breaks; elsewhere "\n" marks <br> and block ends.
            self.cap.add(text if self.cap.type == "pre" else _NEWLINES_RE.sub(" ", text))
        else:
            self.inline.append(_NEWLINES_RE.sub(" ", text))

    def close(self) -> _HtmlExtractor:
        while self.stack:
            self._close()
        self._flush_inline()
        return self

    # -- helpers --
    def _start_inside(self, cap: _Capture, tag: str) -> None:
        if cap.type == "table":
            if tag == "table":
                cap.nest += 1
            elif cap.nest == 1 and tag == "tr":
                cap.rows.append([])
            elif cap.nest == 1 and tag in ("td", "th"):
                if not cap.rows:
                    cap.rows.append([])
                cap.rows[-1].append([])
            elif tag == "br" or tag in _HTML_BLOCK_TAGS:
                cap.add(" ")
        elif cap.type == "list":
            if tag in ("ul", "ol", "menu", "dir"):
                cap.nest += 1
            elif tag == "li":
                cap.items.append((cap.nest - 1, []))
            elif tag == "br" or tag in _HTML_BLOCK_TAGS:
                cap.add(" ")
        elif cap.type == "pre":
            if tag == "br":
                cap.add("\n")
        elif tag == "br" or tag in _HTML_BLOCK_TAGS:
            cap.add("\n")

    def _close(self) -> None:
        tag, skip_here, article = self.stack.pop()
        if skip_here:
            self.skip -= 1
            return
        if self.skip:
            return
        if article:
            self.articles -= 1
        if tag == "head":
            self.in_head = max(self.in_head - 1, 0)
            return
        if tag == "title":
            self.in_title = False
            return
        if self.in_head:
            return
        cap = self.cap
        if cap is not None:
            if len(self.stack) + 1 == cap.root_depth:
                self.cap = None
                self._emit(cap)
            elif cap.type in ("table", "list") and tag in ("table", "ul", "ol", "menu", "dir"):
                cap.nest -= 1
            elif cap.type == "text" and tag in _HTML_BLOCK_TAGS:
                cap.add("\n")
            return
        if tag in _HTML_BLOCK_TAGS:
            self._flush_inline()

    def _flush_inline(self) -> None:
        if self.inline:
            text = _lines_text(self.inline)
            self.inline = []
            if text:
                self.blocks.append(Block(text, None, self.sections.current, "text"))

    def _emit(self, cap: _Capture) -> None:
        current = self.sections.current
        if cap.type == "heading":
            title = _collapse("".join(cap.parts).replace("\n", " "))
            if title:
                if cap.level == 1 and not self.first_h1:
                    self.first_h1 = title
                self.blocks.append(
                    Block(title, None, self.sections.enter(cap.level, title), "heading")
                )
        elif cap.type == "pre":
            text = "".join(cap.parts).strip("\n").rstrip()
            if text.strip():
                self.blocks.append(Block(text, None, current, "code"))
        elif cap.type == "table":
            rows = [["".join(cell) for cell in row] for row in cap.rows]
            text = _markdown_table(rows)
            if text:
                self.blocks.append(Block(text, None, current, "table"))
        elif cap.type == "list":
            lines = []
            for depth, parts in cap.items:
                item = _collapse("".join(parts).replace("\n", " "))
                if item:
                    lines.append("  " * min(depth, 8) + "- " + item)
            if lines:
                self.blocks.append(Block("\n".join(lines), None, current, "list"))
        else:
            text = _lines_text(cap.parts)
            if text:
                self.blocks.append(Block(text, None, current, "text"))


def _is_nav_chrome(tag: str, attrib, inside_article: bool) -> bool:
    """Navigation panels marked by class or id (e.g. Texinfo's <div class="header"> or
    "nav-panel" that hold Next/Previous/Up links). Only block containers are considered;
    like <header>, a div.header inside <article>/<main> is kept (it often holds the title)."""
    if tag not in ("div", "ul", "table", "section", "span", "p"):
        return False
    tokens = set((attrib.get("class") or "").lower().split())
    ident = (attrib.get("id") or "").lower()
    if tokens & _HTML_NAV_TOKENS or ident in _HTML_NAV_TOKENS:
        return True
    # Texinfo: <div class="header"><p>Next: ... Up: ...</p></div> (no <header> element)
    return tag == "div" and tokens == {"header"} and not inside_article


def _lines_text(parts: list[str]) -> str:
    lines = (_collapse(line) for line in "".join(parts).split("\n"))
    return "\n".join(line for line in lines if line)


def _html_declared_encoding(data: bytes) -> str | None:
    m = _META_CHARSET_RE.search(data[:8192])
    if not m:
        return None
    name = (m.group(1) or m.group(2)).decode("ascii", "ignore").lower()
    try:
        name = codecs.lookup(name).name
    except LookupError:
        return None
    if name in ("latin-1", "iso8859-1", "ascii"):
        return "cp1252"  # what browsers do, per the WHATWG encoding standard
    if name.startswith(("utf-16", "utf-32")):
        return None  # a BOM decides; a declared UTF-16 without one is almost always wrong
    return name


def _load_html(path: Path) -> LoadedDocument:
    from lxml import etree

    data = _read_limited(path)
    text, encoding = _decode_bytes(data, declared=_html_declared_encoding(data))
    if not text.strip():
        raise LoadError("the file contains no text (only whitespace)")
    extractor = _HtmlExtractor()
    parser = etree.HTMLParser(
        target=extractor,
        encoding="utf-8",
        huge_tree=True,
        no_network=True,
        remove_comments=True,
        remove_pis=True,
    )
    data = text.encode("utf-8")
    del text
    step = 1 << 20
    pos = 0
    while pos < len(data):  # fed in slices so that the time limit is checked between them
        end = min(pos + step, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # not inside a UTF-8 sequence
            end += 1
        parser.feed(data[pos:end])
        pos = end
        _check_deadline()
    result: _HtmlExtractor = parser.close()
    title = _collapse("".join(result.title_parts)) or result.first_h1 or path.stem
    meta = result.meta
    metadata = {"encoding": encoding}
    for key in ("description", "keywords", "og:title", "dc.title"):
        if key in meta:
            metadata[key] = meta[key]
    author = meta.get("author") or meta.get("dc.creator") or None
    return LoadedDocument(
        path=path, kind="html", title=title, blocks=result.blocks, author=author, metadata=metadata
    )


# --------------------------------------------------------------------------------------

_LOADERS: dict[str, Callable[..., LoadedDocument]] = {
    "pdf": _load_pdf,
    "epub": _load_epub,
    "docx": _load_docx,
    "text": _load_plain,
    "markdown": _load_markdown,
    "rst": _load_rst,
    "code": _load_code,
    "csv": _load_csv,
    "html": _load_html,
}
