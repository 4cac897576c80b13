"""Which files Folio reads, and `load()`: a file in, a `LoadedDocument` out.

Every later stage (splitter, embedder, search, citations) needs the same thing from very
different formats: the text in reading order, cut into blocks that know their page (so an answer
can cite "p. 214") and the heading path they sit under. Each format family has its own module
beside this one (pdf, word, html, text, source, tables); `_LOADERS` at the bottom is the one
table that maps a kind to its loader, and every failure surfaces as a `LoadError` whose message
can be shown to the user as is.

To add a format: write `load_<format>(path) -> LoadedDocument` in its own module, add its
extensions to `SUPPORTED_EXTENSIONS` and its loader to `_LOADERS`, and test it in
tests/test_documents.py (hostile variants in tests/test_bad_input.py).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

from app.core.documents.base import Deadline, LoadedDocument, LoadError
from app.core.documents.common import cap_blocks, load_deadline
from app.core.documents.html import load_html
from app.core.documents.pdf import load_epub, load_pdf
from app.core.documents.source import load_code
from app.core.documents.tables import load_csv
from app.core.documents.text import load_markdown, load_plain, load_rst
from app.core.documents.word import load_docx

log = logging.getLogger(__name__)


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


# The running load's time limit; loaders call check_deadline() between pages and blocks.

def load(
    path: Path | str, *, ocr: bool | None = None, deadline: Deadline | None = None
) -> LoadedDocument:
    """Read a document into blocks of text in reading order.

    `ocr`: None = OCR scanned PDF pages when Tesseract is available, False = never,
    True = OCR when available (a warning says so when it is not).
    `deadline`: the file's time limit, checked between pages and blocks (None: no limit).
    Raises LoadError, with a reason meant for the user, for every failure.
    """
    token = load_deadline.set(deadline)
    try:
        return _load(Path(path), ocr)
    finally:
        load_deadline.reset(token)


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

    doc.blocks = cap_blocks([b for b in doc.blocks if b.text.strip()])
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

_LOADERS: dict[str, Callable[..., LoadedDocument]] = {
    "pdf": load_pdf,
    "epub": load_epub,
    "docx": load_docx,
    "text": load_plain,
    "markdown": load_markdown,
    "rst": load_rst,
    "code": load_code,
    "csv": load_csv,
    "html": load_html,
}
