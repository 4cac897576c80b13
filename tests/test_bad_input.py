"""Bad input: every file either ingests correctly or fails alone with a reason naming it.

The corpus is generated here into tmp folders (nothing big is committed): truncated,
corrupted and random files, an encrypted PDF, a 3,000-page PDF, a multi-GB DOCX zip bomb,
a billion-laughs DOCX, deeply nested HTML, a 200 MB text file, invalid UTF-8 and UTF-16,
odd file names, a symlink loop, and files deleted or rewritten while they are read.
Long runs join it: Markdown, HTML and text files made of one run of dots, end marks, blanks,
backticks or CJK full stops, each of which once made a pattern backtrack for minutes (the
sentence end, a heading or table rule, a dot leader) or tiktoken's own pattern panic (blanks).
Their time per megabyte is asserted in tests/test_regex_budget.py.

The end-to-end test ingests the whole corpus in a child process with the real embedder and
the real LanceDB, and bounds that process's peak memory (ru_maxrss of RUSAGE_CHILDREN) at
2 GB; the good file in the same batch must end ready and be found by search.
"""

from __future__ import annotations

import io
import json
import os
import random
import re
import struct
import subprocess
import sys
import textwrap
import threading
import zipfile
import zlib
from pathlib import Path

import pymupdf
import pytest

from app.core.index import ingest as ingest_mod
from app.core.documents import common, pdf, word
from app.core.documents import text as text_loader
from app.core.documents import base as types_mod
from app.core.index.ingest import IngestOptions, IngestSummary, discover, ingest
from app.core.index.library import FAILED, READY, Library
from app.core.documents.formats import BAD_NAME_REASON, load
from app.core.documents.splitter import Splitter
from app.core.documents.base import Deadline, LoadError, document_text
from app.core.index.search import hybrid_search

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024
GOOD_TEXT = "The okapi lives in the Ituri rainforest and eats leaves, fruit and fungi.\n"
MANY_PAGES = 3000
BOMB_BYTES = 2 * 1024 * MiB  # the uncompressed size of the zip bomb's document.xml
HUGE_TEXT_BYTES = 200 * MiB
NEAR_CAP_TEXT_BYTES = common.MAX_TEXT_BYTES - MiB  # read whole: just under the text cap
NEAR_CAP_XML_BYTES = common.MAX_ZIP_XML_PART - 4 * MiB  # parsed whole: just under the part cap
MEMORY_BOUND = 2 * 1024 * MiB  # peak RSS of a process ingesting the whole corpus


# --------------------------------------------------------------------------------------
# corpus builders
# --------------------------------------------------------------------------------------


def _pdf_string(text: str) -> bytes:
    return (
        text.encode("latin-1").replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
    )


def raw_pdf(texts: list[str]) -> bytes:
    """A PDF with one short line per page, written directly (PyMuPDF needs ~6 ms a page to
    write one; this takes milliseconds for thousands of pages)."""
    n = len(texts)
    out = bytearray(b"%PDF-1.4\n")
    offsets: dict[int, int] = {}

    def add(num: int, body: bytes) -> None:
        offsets[num] = len(out)
        out.extend(b"%d 0 obj\n" % num + body + b"\nendobj\n")

    kids = b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(n))
    add(1, b"<< /Type /Catalog /Pages 2 0 R >>")
    add(2, b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % n)
    add(3, b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for i, text in enumerate(texts):
        stream = b"BT /F1 9 Tf 20 160 Td (" + _pdf_string(text) + b") Tj ET"
        add(
            4 + 2 * i,
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 300 200] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i),
        )
        add(5 + 2 * i, b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    size = 4 + 2 * n
    xref = len(out)
    out.extend(b"xref\n0 %d\n0000000000 65535 f \n" % size)
    out.extend(b"".join(b"%010d 00000 n \n" % offsets[k] for k in range(1, size)))
    out.extend(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref))
    return bytes(out)


def pymupdf_pdf(path: Path, pages: list[str], **save) -> Path:
    doc = pymupdf.open()
    for text in pages:
        doc.new_page().insert_text((72, 100), text, fontsize=11)
    doc.save(path, **save)
    doc.close()
    return path


def docx_parts() -> dict[str, bytes]:
    import docx

    d = docx.Document()
    d.add_paragraph("placeholder")
    buf = io.BytesIO()
    d.save(buf)
    with zipfile.ZipFile(buf) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


W_NS = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
DOC_HEAD = (
    f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<w:document xmlns:w="{W_NS}">'
    "<w:body><w:p><w:r><w:t>"
).encode()
DOC_TAIL = b"</w:t></w:r></w:p></w:body></w:document>"


def write_zip(path: Path, entries: list[tuple[str, int, int, bytes, int]]) -> Path:
    """A zip written by hand from (name, method, crc, compressed bytes, declared size), so
    an entry can hold a pre-built deflate stream (and declare any size)."""
    out = bytearray()
    central = bytearray()
    for name, method, crc, data, size in entries:
        raw = name.encode()
        offset = len(out)
        out += (
            struct.pack(
                "<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 33, crc, len(data), size, len(raw), 0
            )
            + raw
            + data
        )
        central += (
            struct.pack(
                "<4s6H3L5H2L",
                b"PK\x01\x02",
                20,
                20,
                0,
                method,
                0,
                33,
                crc,
                len(data),
                size,
                len(raw),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + raw
        )
    start = len(out)
    out += central + struct.pack(
        "<4s4H2LH", b"PK\x05\x06", 0, 0, len(entries), len(entries), len(central), start, 0
    )
    path.write_bytes(bytes(out))
    return path


def _deflated(data: bytes) -> bytes:
    """A self-contained, byte-aligned piece of a raw deflate stream (repeatable)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush(zlib.Z_FULL_FLUSH)


def docx_zip_bomb(path: Path, body_size: int = BOMB_BYTES, declared: int | None = None) -> Path:
    """A DOCX whose word/document.xml inflates to `body_size` bytes (about 1,000:1) from a
    couple of MB: a valid XML document around a run of spaces. `declared` lets the zip
    directory lie about the size."""
    block = b" " * MiB
    seg = _deflated(block)
    n = body_size // MiB
    stream = (
        _deflated(DOC_HEAD)
        + seg * n
        + _deflated(DOC_TAIL)
        + zlib.compressobj(9, zlib.DEFLATED, -15).flush()
    )
    crc = zlib.crc32(DOC_HEAD)
    for _ in range(n):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(DOC_TAIL, crc)
    size = len(DOC_HEAD) + n * MiB + len(DOC_TAIL)
    entries = [
        (name, 0, zlib.crc32(data), data, len(data))
        for name, data in docx_parts().items()
        if name != "word/document.xml"
    ]
    entries.append(("word/document.xml", 8, crc, stream, size if declared is None else declared))
    return write_zip(path, entries)


BILLION_LAUGHS = f"""<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<w:document xmlns:w="{W_NS}"><w:body><w:p><w:r><w:t>Laughs: &lol9;</w:t></w:r></w:p>
<w:p><w:r><w:t>Plain words after the laughter.</w:t></w:r></w:p></w:body></w:document>"""


def docx_with_document_xml(path: Path, xml: str | bytes) -> Path:
    parts = docx_parts()
    parts["word/document.xml"] = xml.encode() if isinstance(xml, str) else xml
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in parts.items():
            zf.writestr(name, data)
    return path


def huge_text(path: Path, size: int = HUGE_TEXT_BYTES) -> Path:
    """`size` bytes of text, written in 4 MB blocks (200 MB in well under a second)."""
    line = b"A line of an enormous log file that nobody should index whole. " * 16 + b"\n"
    block = line * (4 * MiB // len(line))
    with path.open("wb") as fh:
        written = 0
        while written < size:
            piece = block[: size - written]
            fh.write(piece)
            written += len(piece)
    return path


def near_cap_text(path: Path, size: int = NEAR_CAP_TEXT_BYTES) -> Path:
    """A text file just under the size cap, so it is read, decoded and split whole, mostly
    blank lines around one word per kilobyte: the loader handles all of its bytes (31,000
    paragraphs), while the splitter makes a few hundred chunks. The same size of prose would
    be 44,000 chunks, hours of embedding on a CI machine (docs/BENCHMARKS.md, Reliability)."""
    unit = b"wapiti\n\n" + b" \n" * 500
    path.write_bytes((unit * (size // len(unit) + 1))[:size])
    return path


def near_cap_docx(path: Path, size: int = NEAR_CAP_XML_BYTES) -> Path:
    """A DOCX whose word/document.xml is just under the part cap: about 400,000 empty but
    formatted paragraphs with Word's random revision ids (so it compresses about 11:1, under
    the zip-bomb ratio), and one line of text. python-docx parses the whole tree, the
    memory-hungriest thing a file under the caps can ask for."""
    rnd = random.Random(11)
    head = (f'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<w:document '
            f'xmlns:w="{W_NS}"><w:body><w:p><w:r><w:t>The near-cap memo names the wapiti.'
            "</w:t></w:r></w:p>").encode()
    tail = b"</w:body></w:document>"
    pieces, n = [head], len(head) + len(tail)
    while True:
        piece = (b'<w:p w:rsidR="%08X" w:rsidRDefault="%08X"><w:pPr><w:spacing w:after="0"/>'
                 b"</w:pPr><w:r><w:rPr><w:b/></w:rPr><w:t></w:t></w:r></w:p>"
                 % (rnd.getrandbits(32), rnd.getrandbits(32)))
        if n + len(piece) > size:
            break
        pieces.append(piece)
        n += len(piece)
    pieces.append(tail)
    return docx_with_document_xml(path, b"".join(pieces))


def deep_html(depth: int = 100_000) -> str:
    return (
        "<html><head><title>Deep</title></head><body>"
        + "<div>" * depth
        + "<p>The bottom of the well holds a quokka.</p>"
        + "</div>" * depth
        + "<ul>" * 5000
        + "<li>nested item</li>"
        + "</ul>" * 5000
        + "</body></html>"
    )


CP1252_TEXT = (
    "Caf\u00e9 cr\u00e8me, na\u00efve fa\u00e7ade \u2013 the r\u00e9sum\u00e9 costs 5 \u20ac.\n"
)
UTF16_TEXT = "Unicode text with \u00e9\u00e8 and \u0436\u0443\u0440\u043d\u0430\u043b words.\n\nA second paragraph.\n"

# file name -> expected outcome: "ready", or a regex the failure reason must match.
EXPECTED: dict[str, str] = {
    "good.md": "ready",
    "truncated.pdf": r"ready|not a valid PDF|no text",
    "corrupted.pdf": r"ready|not a valid PDF|no text",
    "random.pdf": r"not a valid PDF",
    "random.docx": r"not a valid Word document",
    "random.txt": r"binary data in a text file",
    "encrypted.pdf": r"password-protected",
    "owner-password-only.pdf": "ready",
    "many-pages.pdf": "ready",
    "zip-bomb.docx": r"zip bomb|too large to open safely",
    "lying-zip-bomb.docx": r"not a valid Word document",
    "billion-laughs.docx": r"document type declaration",
    "deep.html": "ready",
    "huge.txt": r"file too large \(200 MB; the limit for this type is 32 MB\)",
    "cp1252.txt": "ready",
    "utf8-broken.txt": "ready",
    "utf16-bom.txt": "ready",
    "utf16le-nobom.txt": "ready",
    "utf16be-nobom.md": "ready",
}
ODD_NAMES = [
    "with space & 'quote'.txt",
    "\u00fcn\u00efc\u00f8d\u00e9 \u65e5\u672c\u8a9e.txt",
    "new\nline.txt",
    "-leading-dash.txt",
    "l" * 240 + ".txt",  # with the folder, a long path; 244 bytes is near the 255 limit
]
EXPECTED.update({name: "ready" for name in ODD_NAMES})
# One long run each, twice the block cap (common.MAX_BLOCK_CHARS); see test_regex_budget.py.
RUN = 256 * 1024
LONG_RUNS: dict[str, str] = {
    "run-dots.md": "# Dots\n\n" + "." * RUN + "\n",
    "run-marks.html": (
        "<html><body><h1>Bang</h1><p>" + "!?\u2026." * (RUN // 4) + "</p></body></html>"
    ),
    "run-blank-heading.md": "# a" + " " * RUN + "x\n\nUnder the blank heading lives a tapir.\n",
    "run-tab-table.md": "| a |\n|" + "\t" * RUN + "x\n",
    "run-leaders.txt": "Contents" + " ." * (RUN // 2) + " 7\n",
    "run-backticks.md": "`" * RUN + "\ncode\n",
    "run-cjk-stops.txt": "\u3002" * RUN,
    "run-closers.txt": ".)" * (RUN // 2) + " end\n",
    "run-blanks.md": "Start." + " " * (4 * RUN) + "end.\n",  # tiktoken panicked on ~1M blanks
}
EXPECTED.update({name: "ready" for name in LONG_RUNS})
# Scripts someone else wrote: indexed as code like any source file, and never handed to the
# desktop's default app, which would run them (test_opening.py, test_ui_opening.py).
SCRIPTS = {
    "nightly-backup.bat": "@echo off\r\nREM Back up the ledger\r\ndel /q C:\\ledger\\*\r\n",
    "invoice.pdf.ps1": "# Invoice viewer\nRemove-Item -Recurse -Force $HOME\\Documents\n",
    "readme.txt.js": "// Opens the readme\nWScript.CreateObject('WScript.Shell').Run('calc');\n",
}
EXPECTED.update({name: "ready" for name in SCRIPTS})
# Files just under the caps, read whole: they weigh on the memory bound of the whole-corpus
# test (the bigger ones above are refused before they are read). Not loaded one by one as well:
# the DOCX alone takes about half a minute.
NEAR_CAP = {"near-cap.txt": "ready", "near-cap.docx": "ready"}
BAD_BYTES_NAME = b"latin1-caf\xe9.txt"  # not valid UTF-8: a Linux name from another encoding


def build_corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "good.md").write_text("# Okapi\n\n" + GOOD_TEXT)
    full = pymupdf_pdf(folder / "full.tmp", [f"Page {i} says kilo{i}." for i in range(8)])
    data = full.read_bytes()
    full.unlink()
    (folder / "truncated.pdf").write_bytes(data[: len(data) // 2])
    corrupted = bytearray(data)
    rnd = random.Random(7)
    for _ in range(40):
        corrupted[rnd.randrange(len(corrupted))] = rnd.randrange(256)
    (folder / "corrupted.pdf").write_bytes(bytes(corrupted))
    noise = bytes(rnd.randrange(256) for _ in range(8192)) + b"\x00"
    for name in ("random.pdf", "random.docx", "random.txt"):
        (folder / name).write_bytes(noise)
    pymupdf_pdf(
        folder / "encrypted.pdf",
        ["Top secret."],
        encryption=pymupdf.PDF_ENCRYPT_AES_256,
        user_pw="user",
        owner_pw="owner",
    )
    pymupdf_pdf(
        folder / "owner-password-only.pdf",
        ["Readable, printing restricted."],
        encryption=pymupdf.PDF_ENCRYPT_AES_256,
        owner_pw="owner",
        user_pw="",
        permissions=pymupdf.PDF_PERM_PRINT,
    )
    (folder / "many-pages.pdf").write_bytes(
        raw_pdf([f"Page {i + 1} notes the tapir number {i + 1}." for i in range(MANY_PAGES)])
    )
    docx_zip_bomb(folder / "zip-bomb.docx")
    docx_zip_bomb(folder / "lying-zip-bomb.docx", body_size=64 * MiB, declared=4096)
    docx_with_document_xml(folder / "billion-laughs.docx", BILLION_LAUGHS)
    (folder / "deep.html").write_text(deep_html())
    huge_text(folder / "huge.txt")
    near_cap_text(folder / "near-cap.txt")
    near_cap_docx(folder / "near-cap.docx")
    (folder / "cp1252.txt").write_bytes(CP1252_TEXT.encode("cp1252"))
    (folder / "utf8-broken.txt").write_bytes(
        "Mostly UTF-8: \u00fcber, caf\u00e9, na\u00efve".encode()
        + b" with a stray \xff byte and a cut \xe2\x82"
    )
    (folder / "utf16-bom.txt").write_bytes(UTF16_TEXT.encode("utf-16"))
    (folder / "utf16le-nobom.txt").write_bytes(UTF16_TEXT.encode("utf-16-le"))
    (folder / "utf16be-nobom.md").write_bytes(("# Title\n\n" + UTF16_TEXT).encode("utf-16-be"))
    for name in ODD_NAMES:
        (folder / name).write_text(f"A note filed as {name!r} mentions the axolotl.\n")
    for name, script in SCRIPTS.items():
        (folder / name).write_bytes(script.encode())
    with open(os.path.join(os.fsencode(folder), BAD_BYTES_NAME), "wb") as fh:
        fh.write(b"A note whose name is in Latin-1 mentions the axolotl.\n")
    loop = folder / "loop"
    (loop / "sub").mkdir(parents=True)
    (loop / "inside.txt").write_text("Inside the looped folder lives a pangolin.\n")
    (loop / "sub" / "up").symlink_to(loop)  # loop/sub/up -> loop: a cycle
    (loop / "self").symlink_to(loop)
    for name, text in LONG_RUNS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return build_corpus(tmp_path_factory.mktemp("bad-corpus") / "corpus dir")


def outcome(path: Path) -> str:
    try:
        doc = load(path)
        Splitter().split(doc)
    except LoadError as exc:
        return str(exc)
    return "ready"


# --------------------------------------------------------------------------------------
# each file on its own
# --------------------------------------------------------------------------------------


def test_no_script_in_the_corpus_is_opened_by_the_desktop(corpus):
    from app.core.base.opening import desktop_may_open

    assert not [name for name in SCRIPTS if desktop_may_open(corpus / name)]
    assert desktop_may_open(corpus / "good.md")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_bad_file_loads_or_fails_with_a_reason(corpus, name):
    result = outcome(corpus / name)
    assert re.fullmatch(EXPECTED[name], result) or re.search(EXPECTED[name], result), result
    if EXPECTED[name] == "ready":
        assert result == "ready"


@pytest.mark.parametrize("name", sorted(LONG_RUNS))
def test_long_runs_are_cut_into_capped_blocks_and_keep_their_text(corpus, name):
    doc = load(corpus / name)
    assert max(len(b.text) for b in doc.blocks) <= common.MAX_BLOCK_CHARS
    text = document_text(doc.blocks)
    covered = bytearray(len(text))
    for c in Splitter().split(doc):
        covered[c.char_start : c.char_end] = b"\x01" * (c.char_end - c.char_start)
    assert not [i for i, ch in enumerate(text) if not covered[i] and not ch.isspace()]
    visible = "".join(LONG_RUNS[name].split())
    middle = visible[len(visible) // 2 :][:64]  # a slice of the run itself
    assert middle in "".join(text.split())


def test_many_pages_pdf_reads_every_page(corpus):
    doc = load(corpus / "many-pages.pdf")
    assert doc.pages == MANY_PAGES
    assert {b.page for b in doc.blocks} == set(range(1, MANY_PAGES + 1))
    text = document_text(doc.blocks)
    assert "tapir number 1." in text and f"tapir number {MANY_PAGES}." in text


def test_time_limit_stops_a_long_pdf(corpus):
    with pytest.raises(LoadError, match=r"took longer than 0\.01 s"):
        load(corpus / "many-pages.pdf", deadline=Deadline(0.01))


def test_time_limit_in_the_splitter(corpus):
    doc = load(corpus / "many-pages.pdf")
    expired = Deadline(0.0)
    with pytest.raises(LoadError, match="took longer than 0 s"):
        Splitter().split(doc, expired)
    assert Splitter().split(doc, Deadline(None))  # no limit


class CheckpointClock:
    """A clock that advances one second per reading: a Deadline of N s then expires at the
    N-th checkpoint, which makes "this file takes too long" deterministic."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        self.now += 1.0
        return self.now


def test_time_limit_fails_the_file_alone_in_a_batch(corpus, tmp_path, hash_embedder, monkeypatch):
    monkeypatch.setattr(types_mod, "time", CheckpointClock())
    lib = Library.open(tmp_path / "lib", hash_embedder)
    summary = IngestSummary()
    options = IngestOptions(time_limit=60)  # "seconds" = checkpoints here: one per page
    list(ingest(lib, [corpus / "good.md", corpus / "many-pages.pdf"], options, summary=summary))
    assert [(Path(f["path"]).name, f["reason"]) for f in summary.failed] == [
        ("many-pages.pdf", "took longer than 60 s to read (the time limit per file)")
    ]
    assert lib.get(corpus / "good.md").status == READY
    assert lib.get(corpus / "many-pages.pdf").status == FAILED


def test_a_loader_that_hangs_fails_its_file_and_the_batch_goes_on(tmp_path, hash_embedder,
                                                                  monkeypatch):
    """A file stuck inside one call that never reaches a deadline checkpoint (here a loader
    blocked on an Event, as a hung native call would be) is failed by the watchdog once it
    has run past the time limit plus the grace, and the files after it are still ingested.
    The abandoned loader's result, when it does return, is discarded."""
    folder = tmp_path / "docs"
    folder.mkdir()
    names = ["a-before.md", "b-hangs.md", "c-after.txt", "d-after.md", "e-hangs-last.md"]
    for name in names:
        (folder / name).write_text(f"# {name}\n\nThe note {name} mentions the capybara.\n")
    hang = {"b-hangs.md": threading.Event(), "e-hangs-last.md": threading.Event()}
    stuck: dict[str, threading.Thread] = {}
    real_load = ingest_mod.load

    def load(path, **kw):
        if path.name in hang:
            stuck[path.name] = threading.current_thread()
            hang[path.name].wait()  # no deadline check: only the watchdog can end this
        return real_load(path, **kw)

    monkeypatch.setattr(ingest_mod, "load", load)
    lib = Library.open(tmp_path / "lib", hash_embedder)
    summary = IngestSummary()
    events = []
    options = IngestOptions(time_limit=0.5, stall_grace=0.5)
    for ev in ingest(lib, [folder], options, summary=summary):
        events.append(ev)
        if ev.kind == "file" and Path(ev.path).name in hang:
            # Let the abandoned loader return now, while the batch goes on: what it returns
            # must not be used.
            name = Path(ev.path).name
            hang[name].set()
            stuck[name].join(timeout=60)
            assert not stuck[name].is_alive()
    reason = "took longer than 0.5 s to read (the time limit per file)"
    assert sorted((Path(f["path"]).name, f["reason"]) for f in summary.failed) == [
        ("b-hangs.md", reason), ("e-hangs-last.md", reason)]
    assert summary.ingested == 3
    files = [(Path(e.path).name, e.status) for e in events if e.kind == "file"]
    assert sorted(files) == sorted((n, FAILED if n in hang else READY) for n in names)
    assert events[-1].kind == "done"
    for name in names:
        record = lib.get(folder / name)
        assert record.status == (FAILED if name in hang else READY), name
        if name in hang:
            assert record.error == reason and not record.pending_version
            assert not lib.document_chunks(record.doc_id)
    assert lib.chunk_count() == lib.chunk_count(live_only=False)  # nothing of them staged
    assert {Path(h.path).name for h in hybrid_search(lib, "capybara", k=10)} == {
        n for n in names if n not in hang}
    # Once there is time, the same files ingest normally.
    monkeypatch.setattr(ingest_mod, "load", real_load)
    summary = IngestSummary()
    list(ingest(lib, [folder], options, summary=summary))
    assert (summary.ingested, summary.skipped, summary.failed) == (2, 3, [])


def test_time_limit_setting_defaults_and_validation():
    from app.core.settings import AppSettings

    assert AppSettings().file_time_limit == 300 == int(types_mod.DEFAULT_FILE_TIME_LIMIT)
    assert IngestOptions().time_limit == types_mod.DEFAULT_FILE_TIME_LIMIT
    assert AppSettings.from_dict({"file_time_limit": 0}).file_time_limit == 300
    assert AppSettings.from_dict({"file_time_limit": "fast"}).file_time_limit == 300
    assert AppSettings.from_dict({"file_time_limit": 30}).file_time_limit == 30


def test_zip_bomb_is_refused_from_the_directory(corpus, monkeypatch):
    """Refused before anything is inflated: python-docx is never called."""
    import docx

    def never(*a, **k):
        raise AssertionError("python-docx opened a zip bomb")

    monkeypatch.setattr(docx, "Document", never)
    with pytest.raises(LoadError, match="zip bomb"):
        load(corpus / "zip-bomb.docx")
    with zipfile.ZipFile(corpus / "zip-bomb.docx") as zf:
        assert zf.getinfo("word/document.xml").file_size >= BOMB_BYTES


def test_zip_bomb_that_lies_about_its_size(corpus):
    """The directory says 4 KB; zipfile stops there and fails the CRC, so the real 64 MB is
    never inflated."""
    with pytest.raises(LoadError, match=r"not a valid Word document \(damaged"):
        load(corpus / "lying-zip-bomb.docx")


def test_oversized_xml_part_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "MAX_ZIP_XML_PART", 40_000)  # the other parts are smaller
    p = docx_with_document_xml(tmp_path / "big-xml.docx", DOC_HEAD + b"word " * 20_000 + DOC_TAIL)
    with pytest.raises(LoadError, match=r"its part word/document.xml is 0.1 MB of XML"):
        load(p)


def test_epub_zip_bomb_refused(tmp_path):
    p = tmp_path / "bomb.epub"
    with zipfile.ZipFile(p, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        zf.writestr("OEBPS/chapter.xhtml", b" " * (16 * MiB))
    with pytest.raises(LoadError, match="EPUB looks like a zip bomb"):
        load(p)


def test_billion_laughs_refused_and_python_docx_does_not_expand(corpus, tmp_path):
    with pytest.raises(LoadError, match="document type declaration"):
        load(corpus / "billion-laughs.docx")
    # Defence in depth: python-docx's own parser (resolve_entities=False) does not expand
    # them, and libxml2 stops at its amplification limit.
    from docx.oxml.parser import parse_xml
    from lxml import etree

    try:
        root = parse_xml(BILLION_LAUGHS.encode())
    except etree.XMLSyntaxError as exc:
        assert "amplification" in str(exc)
    else:
        assert len("".join(root.itertext())) < 1000
    # An external entity (XXE) would be refused the same way.
    secret = tmp_path / "secret.txt"
    secret.write_text("do not leak")
    xxe = BILLION_LAUGHS.split("<!DOCTYPE")[0] + (
        f'<!DOCTYPE x [<!ENTITY xxe SYSTEM "file://{secret}">]>'
        f'<w:document xmlns:w="{W_NS}"><w:body><w:p><w:r><w:t>&xxe;</w:t></w:r></w:p>'
        "</w:body></w:document>"
    )
    with pytest.raises(LoadError, match="document type declaration"):
        load(docx_with_document_xml(tmp_path / "xxe.docx", xxe))


def test_dtd_hidden_past_the_scanned_head_is_still_not_expanded(tmp_path):
    """The package check reads 64 KB of each part; a DTD pushed further back by a comment
    reaches python-docx, whose parser does not expand it (libxml2 refuses the amplification)."""
    xml = BILLION_LAUGHS.replace("<!DOCTYPE", "<!--" + "x" * 100_000 + "-->\n<!DOCTYPE")
    with pytest.raises(LoadError, match="not a valid Word document"):
        load(docx_with_document_xml(tmp_path / "hidden.docx", xml))


def test_utf16_dtd_in_docx_refused(tmp_path):
    xml = BILLION_LAUGHS.replace('encoding="UTF-8"', 'encoding="UTF-16"')
    with pytest.raises(LoadError, match="document type declaration"):
        load(docx_with_document_xml(tmp_path / "u16.docx", xml.encode("utf-16")))


def test_deep_html_keeps_its_text(corpus):
    text = document_text(load(corpus / "deep.html").blocks)
    assert "quokka" in text and "nested item" in text


def test_huge_text_file_refused_before_reading(corpus, monkeypatch):
    def no_read(*a, **k):
        raise AssertionError("the huge file was read")

    monkeypatch.setattr(text_loader, "decode_bytes", no_read)
    with pytest.raises(LoadError, match=r"file too large \(200 MB"):
        load(corpus / "huge.txt")


def test_near_cap_files_are_just_under_the_caps(corpus):
    """They must stay read whole (not refused), or the memory bound stops being tested."""
    size = (corpus / "near-cap.txt").stat().st_size
    assert common.MAX_TEXT_BYTES - 2 * MiB < size <= common.MAX_TEXT_BYTES
    with zipfile.ZipFile(corpus / "near-cap.docx") as zf:
        part = zf.getinfo("word/document.xml")
        total = sum(i.file_size for i in zf.infolist())
        packed = sum(i.compress_size for i in zf.infolist())
    assert common.MAX_ZIP_XML_PART - 8 * MiB < part.file_size <= common.MAX_ZIP_XML_PART
    assert total <= common.MAX_DOCX_RATIO * packed  # not refused as a zip bomb
    word._check_docx_package(corpus / "near-cap.docx")  # accepted: it will be parsed


def test_text_just_under_the_limit_loads(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "MAX_TEXT_BYTES", 2 * MiB)
    p = huge_text(tmp_path / "big.log", 2 * MiB)
    doc = load(p)
    assert "enormous log file" in document_text(doc.blocks)
    with pytest.raises(LoadError, match="file too large"):
        load(huge_text(tmp_path / "bigger.log", 3 * MiB))


def test_encodings(corpus):
    assert CP1252_TEXT.strip() in document_text(load(corpus / "cp1252.txt").blocks)
    broken = load(corpus / "utf8-broken.txt")
    assert document_text(broken.blocks) == (
        "Mostly UTF-8: \u00fcber, caf\u00e9, na\u00efve with a stray \ufffd byte and a cut \ufffd"
    )
    assert broken.metadata["encoding"] == "utf-8"
    for name in ("utf16-bom.txt", "utf16le-nobom.txt"):
        doc = load(corpus / name)
        assert document_text(doc.blocks) == UTF16_TEXT.strip(), name
    md = load(corpus / "utf16be-nobom.md")
    assert md.title == "Title" and md.metadata["encoding"] == "utf-16-be"


def test_utf16_cut_in_the_middle_of_a_character(tmp_path):
    p = tmp_path / "cut.txt"
    p.write_bytes(UTF16_TEXT.encode("utf-16")[:-1])
    assert "second paragraph" in document_text(load(p).blocks)


def test_binary_with_zeros_on_both_sides_is_not_utf16(tmp_path):
    p = tmp_path / "blob.txt"
    p.write_bytes(b"\x00\x00\x01\x02" * 1000)
    with pytest.raises(LoadError, match="binary data"):
        load(p)


def test_encrypted_and_owner_only_pdfs(corpus):
    with pytest.raises(LoadError, match="password-protected"):
        load(corpus / "encrypted.pdf")
    assert "printing restricted" in document_text(load(corpus / "owner-password-only.pdf").blocks)


# --------------------------------------------------------------------------------------
# file names, links, files that change under the reader
# --------------------------------------------------------------------------------------


def test_odd_names_ingest_and_a_non_utf8_name_fails_alone(corpus, tmp_path, hash_embedder):
    lib = Library.open(tmp_path / "lib", hash_embedder)
    odd = tmp_path / "odd"
    odd.mkdir()
    names = ODD_NAMES
    for name in names:
        (odd / name).write_bytes((corpus / name).read_bytes())
    with open(os.path.join(os.fsencode(odd), BAD_BYTES_NAME), "wb") as fh:
        fh.write(b"The Latin-1 name hides a narwhal.\n")
    summary = IngestSummary()
    list(ingest(lib, [odd], IngestOptions(), summary=summary))
    assert summary.ingested == len(names)
    [failed] = summary.failed
    assert failed["reason"] == BAD_NAME_REASON
    assert failed["path"].endswith("latin1-caf\ufffd.txt")
    failed["path"].encode("utf-8")  # printable and storable
    assert sorted(Path(d.path).name for d in lib.documents()) == sorted(names)
    assert all(d.status == READY for d in lib.documents())


def test_symlink_loop_in_a_dropped_folder_terminates(corpus, tmp_path, hash_embedder, caplog):
    files, problems = discover([corpus / "loop"])
    assert [f.name for f in files] == ["inside.txt"]  # once, though reachable endlessly
    assert problems == []
    loops = [r.getMessage() for r in caplog.records if "a link back to a folder" in r.getMessage()]
    assert len(loops) == 2  # loop/self and loop/sub/up, each reported once
    lib = Library.open(tmp_path / "lib", hash_embedder)
    summary = IngestSummary()
    list(ingest(lib, [corpus / "loop"], IngestOptions(), summary=summary))
    assert (summary.ingested, summary.failed) == (1, [])
    assert lib.get((corpus / "loop" / "inside.txt").resolve()).status == READY


def _wrap(monkeypatch, module, name, after):
    original = getattr(module, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        result = original(*args, **kwargs)
        after(calls["n"])
        return result

    monkeypatch.setattr(module, name, wrapper)


def test_pdf_deleted_between_pages(tmp_path, monkeypatch):
    p = tmp_path / "going.pdf"
    p.write_bytes(raw_pdf([f"page {i}" for i in range(5)]))
    _wrap(monkeypatch, pdf, "_extract_page", lambda n: n == 2 and p.unlink())
    with pytest.raises(LoadError, match="the file was deleted while it was being read"):
        load(p)


def test_pdf_rewritten_between_pages(tmp_path, monkeypatch):
    p = tmp_path / "changing.pdf"
    p.write_bytes(raw_pdf([f"page {i}" for i in range(5)]))

    def rewrite(n):
        if n == 2:
            with p.open("r+b") as fh:  # same file, new content
                fh.seek(200)
                fh.write(b"garbage" * 50)

    _wrap(monkeypatch, pdf, "_extract_page", rewrite)
    with pytest.raises(LoadError, match="the file changed while it was being read"):
        load(p)


def test_text_replaced_while_read(tmp_path, monkeypatch):
    p = tmp_path / "notes.txt"
    p.write_text("The first version of the notes.\n")

    def replace(n):
        tmp = tmp_path / "notes.new"
        tmp.write_text("A second version, saved by an editor.\n")
        os.replace(tmp, p)

    _wrap(monkeypatch, text_loader, "read_limited", replace)
    with pytest.raises(LoadError, match="the file was replaced while it was being read"):
        load(p)


def test_docx_deleted_after_the_package_check(tmp_path, monkeypatch):
    from docgen import make_docx

    p = make_docx(tmp_path / "brief.docx", {"Intro": ["Some words."]})
    _wrap(monkeypatch, word, "_check_docx_package", lambda n: p.unlink())
    with pytest.raises(LoadError, match="no longer exists|deleted while"):
        load(p)


def test_file_deleted_after_hashing_fails_alone(tmp_path, hash_embedder, monkeypatch):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a-keep.md").write_text("# Keep\n\nThe keeper notes a wombat.\n")
    doomed = folder / "b-doomed.txt"
    doomed.write_text("This file is deleted right after it is hashed.\n")
    original = ingest_mod.sha256_file

    def hash_then_delete(path):
        digest = original(path)
        if path.name == doomed.name:
            path.unlink()
        return digest

    monkeypatch.setattr(ingest_mod, "sha256_file", hash_then_delete)
    lib = Library.open(tmp_path / "lib", hash_embedder)
    summary = IngestSummary()
    list(ingest(lib, [folder], IngestOptions(), summary=summary))
    assert [(Path(f["path"]).name, f["reason"]) for f in summary.failed] == [
        ("b-doomed.txt", "the file no longer exists")
    ]
    assert lib.get((folder / "a-keep.md").resolve()).status == READY


# --------------------------------------------------------------------------------------
# the whole corpus in one batch, in a child process: outcomes, search, peak memory
# --------------------------------------------------------------------------------------

CHILD = textwrap.dedent("""
    import json, sys
    from app.core.index.library import Library
    from app.core.index.ingest import ingest, IngestOptions, IngestSummary
    from app.core.index.search import hybrid_search
    lib = Library.open(sys.argv[1])
    summary = IngestSummary()
    for _ in ingest(lib, [sys.argv[2]], IngestOptions(), summary=summary):
        pass
    hits = hybrid_search(lib, "Where does the okapi live?", k=3)
    docs = {d.path: [d.status, d.error] for d in lib.documents()}
    with open(sys.argv[3], "w", encoding="utf-8") as fh:
        json.dump({"summary": summary.to_json(), "docs": docs,
                   "hits": [[h.path, h.text] for h in hits]}, fh)
""")

MEASURE = textwrap.dedent("""
    import json, resource, subprocess, sys
    rc = subprocess.run(sys.argv[1:]).returncode
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"rc": rc, "peak_bytes": peak_kb * 1024}))
""")


CORPUS_TIMEOUT = 900  # seconds for the child; the test's own limit is above it


@pytest.mark.slow
@pytest.mark.timeout(CORPUS_TIMEOUT + 300)
def test_whole_bad_corpus_in_one_batch_with_bounded_memory(corpus, tmp_path, embedder):
    out = tmp_path / "result.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            MEASURE,
            sys.executable,
            "-c",
            CHILD,
            str(tmp_path / "lib"),
            str(corpus),
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=CORPUS_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    measured = json.loads(proc.stdout.strip().splitlines()[-1])
    assert measured["rc"] == 0, proc.stderr[-3000:]
    print(f"whole bad corpus: peak RSS {measured['peak_bytes'] / MiB:,.0f} MiB")
    assert 0 < measured["peak_bytes"] < MEMORY_BOUND, measured
    result = json.loads(out.read_text(encoding="utf-8"))

    reasons = {Path(f["path"]).name: f["reason"] for f in result["summary"]["failed"]}
    statuses = {Path(p).name: s for p, (s, _) in result["docs"].items()}
    for name, expected in {**EXPECTED, **NEAR_CAP}.items():
        if expected == "ready":
            assert statuses.get(name) == READY, (name, reasons.get(name))
        elif name in reasons:
            assert re.search(expected, reasons[name]), (name, reasons[name])
            assert statuses.get(name) == FAILED, name
        else:
            assert statuses.get(name) == READY and re.search(expected, "ready"), name
    assert reasons["latin1-caf\ufffd.txt"] == BAD_NAME_REASON
    assert statuses["inside.txt"] == READY  # the looped folder was walked once
    # Every file was accounted for, once.
    expected = len(EXPECTED) + len(NEAR_CAP)
    assert result["summary"]["files"] == expected + 2  # + the Latin-1 name, inside.txt
    assert len(result["docs"]) == expected + 1  # the Latin-1 name has no record
    # The good file in the same batch is searchable.
    top_path, top_text = result["hits"][0]
    assert Path(top_path).name == "good.md" and "Ituri rainforest" in top_text
