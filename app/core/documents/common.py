"""What the format loaders share: size limits, the running load's deadline, binary sniffing,
text decoding, whitespace, heading paths, and the zip-package checks DOCX and EPUB both need.
"""

from __future__ import annotations

import codecs
import contextvars
import logging
import re
import unicodedata
import zipfile
import zlib
from collections import Counter
from pathlib import Path

from app.core.documents.base import Block, Deadline, LoadError

log = logging.getLogger(__name__)


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
# No block is longer than this when it leaves `load()`: a longer one is cut (`cap_blocks`), at a
# line end, else at a blank, else hard, and nothing is dropped. The splitter's patterns and
# tiktoken (whose pattern panics on a run of about a million blanks) never see more; Markdown
# and reST lines longer than this are body text that no structure pattern looks at. Every
# pattern is linear besides (tests/test_regex_budget.py fuzzes them on runs twice as long).
MAX_BLOCK_CHARS = 128 * 1024
OCR_DPI = 300

MB = 1024 * 1024


load_deadline: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "folio_load_deadline", default=None
)


def check_deadline() -> None:
    deadline = load_deadline.get()
    if deadline is not None:
        deadline.check()

# --------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------

WS_RE = re.compile(r"[ \t\f\v\u00a0\u2000-\u200b\u3000]+")
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


def binary_error(head: bytes, detail: str = "") -> LoadError:
    what = _looks_like(head)
    return LoadError(f"binary data in a text file (looks like {what}{detail})")


def read_limited(path: Path, limit: int | None = None) -> bytes:
    limit = MAX_TEXT_BYTES if limit is None else limit
    size = path.stat().st_size
    if size > limit:
        raise LoadError(
            f"file too large ({size / MB:,.0f} MB; the limit for this type is {limit // MB} MB)"
        )
    with path.open("rb") as fh:
        data = fh.read(limit + 1)
    if len(data) > limit:  # grew since stat()
        raise LoadError(f"file too large (the limit for this type is {limit // MB} MB)")
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


def decode_bytes(data: bytes, declared: str | None = None) -> tuple[str, str]:
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
            raise binary_error(head)
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
            raise binary_error(
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


def collapse(text: str) -> str:
    return WS_RE.sub(" ", text).strip()


def split_long(text: str, limit: int) -> list[str]:
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


def cap_blocks(blocks: list[Block], limit: int = MAX_BLOCK_CHARS) -> list[Block]:
    """The blocks, each no longer than `limit`: a longer one becomes several with its page,
    section and kind, and a table's later pieces repeat its header row (and rule) on top."""
    if all(len(b.text) <= limit for b in blocks):
        return blocks
    out: list[Block] = []
    for b in blocks:
        if len(b.text) <= limit:
            out.append(b)
            continue
        header = _table_header(b.text, limit // 4) if b.kind == "table" else ""
        pieces = _cut(b.text, limit - len(header))
        out.extend(
            Block(header + piece if i else piece, b.page, b.section, b.kind)
            for i, piece in enumerate(pieces)
        )
    return out


def _table_header(text: str, limit: int) -> str:
    """A Markdown table's header row, with its rule when one follows, and a newline; "" when
    that is longer than `limit`."""
    first, _, rest = text.partition("\n")
    second = rest.partition("\n")[0].strip()
    head = first + "\n"
    if second and set(second) <= set("|+:-= \t") and ("---" in second or "===" in second):
        head += second + "\n"
    return head if len(head) <= limit else ""


def _cut(text: str, limit: int) -> list[str]:
    """Pieces of at most `limit` characters, cut at the last line end in the second half of
    the window, else the last blank there, else hard (never before a combining mark). The
    one line end or blank at a cut goes (the pieces become blocks, which a blank line
    separates); pieces of only blanks go; every other character stays, in order."""
    pieces: list[str] = []
    pos, n = 0, len(text)
    half = max(1, limit // 2)
    while n - pos > limit:
        end = pos + limit
        cut = text.rfind("\n", pos + half, end)
        if cut < 0:
            cut = max(text.rfind(blank, pos + half, end) for blank in " \t\u3000")
        if cut >= 0:
            piece, pos = text[pos:cut], cut + 1
        else:
            while end > pos + half and unicodedata.combining(text[end]):
                end -= 1
            piece, pos = text[pos:end], end
        if piece.strip():
            pieces.append(piece)
    if text[pos:].strip():
        pieces.append(text[pos:])
    return pieces


def markdown_table(rows: list[list[str]]) -> str:
    """Rows of cell texts as a Markdown table; the first row is the header."""
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        return ""
    width = max(len(r) for r in rows)

    def fmt(cells: list[str]) -> str:
        cells = [collapse(c).replace("|", "\\|") for c in cells] + [""] * (width - len(cells))
        return "| " + " | ".join(cells) + " |"

    lines = [fmt(rows[0]), "| " + " | ".join(["---"] * width) + " |"]
    lines.extend(fmt(r) for r in rows[1:])
    return "\n".join(lines)


class Sections:
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


# An XML part with a DOCTYPE: OOXML and EPUB packages never need one, and its entity
# declarations are how "billion laughs" (exponential expansion) and external-entity attacks
# work. Matched in UTF-8 and UTF-16 (both byte orders).
_DOCTYPE_MARKS = tuple(
    m for enc in ("utf-8", "utf-16-le", "utf-16-be") for m in {
        "<!DOCTYPE".encode(enc), "<!doctype".encode(enc), "<!ENTITY".encode(enc)
    }
)


def check_zip_package(
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
                    f"to {total / MB:,.0f} MB); refusing to open it"
                )
            if total > MAX_DOCX_UNCOMPRESSED:
                raise LoadError(
                    f"the {what} is too large to open safely ({total / MB:,.0f} MB "
                    f"uncompressed; the limit is {MAX_DOCX_UNCOMPRESSED // MB} MB)"
                )
            for info in infos:
                name = info.filename.lower()
                if not name.endswith((".xml", ".rels", ".xhtml", ".html", ".htm", ".opf",
                                      ".ncx")):
                    continue
                if info.file_size > MAX_ZIP_XML_PART:
                    raise LoadError(
                        f"the {what} is too large to open safely (its part {info.filename} is "
                        f"{info.file_size / MB:,.1f} MB of XML; the limit is "
                        f"{MAX_ZIP_XML_PART / MB:,.0f} MB)"
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
