"""Plain data passed between the engine's stages: loader -> splitter -> embedder -> store.

Kept free of any heavy import so every module (and the UI) can use it cheaply.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_FILE_TIME_LIMIT = 300.0  # seconds to load and split one file (AppSettings.file_time_limit)


class LoadError(Exception):
    """A file could not be turned into text. The message is shown to the user as the reason."""


class Deadline:
    """The per-file time limit, checked cooperatively by the loaders (between pages,
    paragraphs, lines) and the splitter (between blocks and batches).

    Python cannot safely interrupt PyMuPDF or lxml from outside, so a file that takes too long
    is stopped at the next checkpoint: one page or one batch of lines past the limit, never
    the rest of a 3,000-page book. `seconds=None` never expires.
    """

    __slots__ = ("_end", "seconds")

    def __init__(self, seconds: float | None = DEFAULT_FILE_TIME_LIMIT):
        self.seconds = seconds
        self._end = None if seconds is None else time.monotonic() + seconds

    @property
    def expired(self) -> bool:
        return self._end is not None and time.monotonic() > self._end

    def check(self) -> None:
        """Raise LoadError when the time is up."""
        if self._end is not None and time.monotonic() > self._end:
            raise LoadError(
                f"took longer than {self.seconds:g} s to read (the time limit per file)"
            )


@dataclass(slots=True)
class Block:
    """A run of text that shares one location: a paragraph, a heading, a table, a list.

    `page` is 1-based as a viewer shows it (None for formats without pages).
    `section` is the heading path that encloses the block, outermost first.
    `kind` lets the splitter keep structure: "heading", "text", "table", "list", "code".
    """

    text: str
    page: int | None = None
    section: tuple[str, ...] = ()
    kind: str = "text"


@dataclass(slots=True)
class LoadedDocument:
    """What a loader returns: the document's text in reading order, with its structure."""

    path: Path
    kind: str  # "pdf", "docx", "text", "markdown", "rst", "code", "html", "csv", "epub"
    title: str
    blocks: list[Block]
    author: str | None = None
    pages: int | None = None
    warnings: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Chunk:
    """A piece of a document sized for the embedder, with where it came from.

    `char_start`/`char_end` are offsets into the document's canonical text, which is the
    blocks' texts joined with "\\n\\n" (see `document_text`).
    `context` is the title and section path that is embedded and full-text indexed with the
    text, so a chunk about "Options" under "Plotting > Axes" can be found by either.
    """

    text: str
    index: int
    page: int | None
    page_end: int | None
    section: tuple[str, ...]
    char_start: int
    char_end: int
    tokens: int
    context: str = ""

    @property
    def embed_text(self) -> str:
        return f"{self.context}\n{self.text}" if self.context else self.text


BLOCK_SEPARATOR = "\n\n"


def document_text(blocks: list[Block]) -> str:
    """The canonical text of a document that chunk offsets refer to."""
    return BLOCK_SEPARATOR.join(b.text for b in blocks)
