"""Split a loaded document into chunks sized for the embedder.

Why it works the way it does:

* Retrieval ranks chunks, so a chunk should be about one thing. Chunks never straddle a
  section, a heading starts the chunk it introduces (and is never left alone at the end of
  one), and a block too large for one chunk is cut at the coarsest boundary that works:
  paragraph, sentence, line, word, and only as a last resort inside a word. Tables and
  code are cut at line boundaries, and a continued table repeats its header row.
* Sizes are planned in tiktoken (cl100k) tokens, the unit the chat model's context budget
  is counted in. The embedder, however, silently truncates at its own window, and its
  WordPiece tokenizer can need several times more tokens than cl100k for digits, CJK, rare
  scripts, URLs or emoji. So when the embedder's counter is given, every piece is measured
  with it too while packing, and every finished chunk is counted again exactly as it will
  be embedded (`Chunk.embed_text`, context line included); any chunk over the window is
  re-split more finely. Nothing is ever cut off: every non-space character of the document
  text lands in at least one chunk.
* A chunk's text is always a contiguous slice of `document_text(doc.blocks)`, stripped,
  with `char_start/char_end` pointing at it, so the UI can show and highlight the source.
  The one exception is a table continued from an earlier chunk: its header row is repeated
  on top (`text = header + "\\n" + slice`) and the offsets then refer to the slice only.
* Consecutive chunks of a section overlap by about `overlap_tokens`, taken as whole
  sentences or words (whole lines in code) from the end of the previous chunk, so a fact cut
  at a boundary is still found whole. Overlap never crosses a section or a page boundary
  (a chunk that starts on a new page starts cleanly there, which keeps page citations
  honest) and tables get none: their repeated header is the context.
* Pages are a soft boundary: a new chunk starts at a page break once the current one is at
  least half the target size, or when it already spans two pages (tiny pages may still
  share a chunk: `page` is then the first and `page_end` the last).
* A chunk with less than `min_chunk_tokens` of its own text (the tail of a split block, a
  chunk closed early by a page break) is folded into a neighbour when that still fits.
* Deterministic: the same document and settings always give the same chunks, which
  resumable ingest relies on.
"""

from __future__ import annotations

import math
import re
import unicodedata
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate

from app.core.documents import tokens
from app.core.documents.base import BLOCK_SEPARATOR, Chunk, Deadline, LoadedDocument, document_text

__all__ = ["CONTEXT_MAX_TOKENS", "LimitCounter", "Splitter", "SplitterConfig"]

LimitCounter = Callable[[list[str]], list[int]]

CONTEXT_MAX_TOKENS = 40  # tiktoken tokens of the "Title > Section > Subsection" line
MIN_LIMIT_TOKENS = 16  # a window smaller than this cannot hold a context and any text
_COUNT_BATCH = 1024  # texts per call to a token counter
_MAX_RESPLITS = 40  # rounds of re-splitting before giving up (each shrinks the budget)
_UNLIMITED = 1 << 40


@dataclass
class SplitterConfig:
    """Chunk sizes, in tiktoken (cl100k) tokens."""

    chunk_tokens: int = 200  # target size
    overlap_tokens: int = 40  # overlap between consecutive chunks within a section
    min_chunk_tokens: int = 24  # merge tinier trailing pieces into a neighbour when it fits

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("chunk_tokens", "overlap_tokens", "min_chunk_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if self.chunk_tokens < 32:
            raise ValueError(f"chunk_tokens must be at least 32, got {self.chunk_tokens}")
        if not 0 <= self.overlap_tokens < self.chunk_tokens:
            raise ValueError(
                f"overlap_tokens must be between 0 and chunk_tokens - 1 "
                f"({self.chunk_tokens - 1}), got {self.overlap_tokens}"
            )
        if not 0 <= self.min_chunk_tokens < self.chunk_tokens:
            raise ValueError(
                f"min_chunk_tokens must be between 0 and chunk_tokens - 1 "
                f"({self.chunk_tokens - 1}), got {self.min_chunk_tokens}"
            )


class Splitter:
    """Turns a `LoadedDocument` into `Chunk`s; see the module docstring for the rules.

    `limit_counter`/`limit_tokens` are the embedder's own token count and window
    (`embedder.count_tokens`, `embedder.max_tokens`): when given, every chunk's
    `embed_text` is guaranteed to fit. A Splitter holds no per-document state, so one
    instance may be shared between threads.
    """

    def __init__(
        self,
        config: SplitterConfig | None = None,
        *,
        limit_counter: LimitCounter | None = None,
        limit_tokens: int | None = None,
    ):
        self.config = config if config is not None else SplitterConfig()
        self.config.validate()
        if (limit_counter is None) != (limit_tokens is None):
            raise ValueError("limit_counter and limit_tokens must be given together")
        if limit_tokens is not None and (
            not isinstance(limit_tokens, int) or limit_tokens < MIN_LIMIT_TOKENS
        ):
            raise ValueError(f"limit_tokens must be an integer ≥ {MIN_LIMIT_TOKENS}")
        self.limit_counter = limit_counter
        self.limit_tokens = limit_tokens

    def split(self, doc: LoadedDocument, deadline: Deadline | None = None) -> list[Chunk]:
        """`deadline`: the file's time limit (shared with its loading), checked between
        batches of blocks; raises LoadError when it has passed."""
        return _Run(self, doc, deadline).chunks()


# --- text boundaries ---------------------------------------------------------------------

# Abbreviations after which a period does not end a sentence (compared lower-cased).
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st mt vs cf fig figs eq eqs no nos vol vols pp p ch chap sec "
    "secs approx incl al resp dept inc ltd co corp ca viz ibid op ed eds ref refs tab art "
    "min max e.g i.e jan feb mar apr jun jul aug sep sept oct nov dec".split()
)
_DOTTED = re.compile(r"(?:[a-z]\.)*[a-z]")  # "u.s", "j" (an initial)
# A sentence ends at a run of end marks, then closing quotes and brackets, then space (Latin
# text; CJK needs no space). Only the first mark of a run may start a match and the runs are
# possessive: the plain form, tried again at every mark of a run that fails at its end,
# backtracked quadratically (2.3 s on 16,000 dots; minutes on a file of them). A match can
# only fail where every later start in the same run would fail too, so the sentences found
# are the same. The lookbehind would see text before a search's start offset: callers search
# a slice (see `_sentence_starts`).
_SENTENCE_END = re.compile(
    r"(?<![.!?\u2026])[.!?\u2026]++[\"'\u201d\u2019\u00bb)\]]*+\s+"  # Latin
    r"|(?<![\u3002\uff01\uff1f])[\u3002\uff01\uff1f]++[\u201d\u2019\u300d\u300f\uff09)]*+\s*"  # CJK
)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")
_LINE_BREAK = re.compile(r"\n\s*")
_WORD = re.compile(r"\S+")
_WORD_START = re.compile(r"(?<=\s)\S")
_LINE_START = re.compile(r"\n[ \t]*(?=\S)")


def _sentence_starts(text: str, s: int, e: int) -> list[int]:
    """Offsets in text[s:e] where a sentence begins (after the first one)."""
    starts = []
    for m in _SENTENCE_END.finditer(text[s:e]):  # a slice: the lookbehind sees nothing before s
        nxt = s + m.end()
        if nxt >= e:
            break
        start = s + m.start()
        mark = text[start]
        if mark in ".!?\u2026":
            if text[nxt].islower():
                continue  # "e.g. the", "... and so on"
            if mark == "." and text[start + 1] != ".":
                k = start
                while k > s and not text[k - 1].isspace():
                    k -= 1
                word = text[k:start].lstrip("\"'([\u201c\u2018").lower()
                if word in _ABBREVIATIONS or _DOTTED.fullmatch(word):
                    continue
        starts.append(nxt)
    return starts


def _strip(text: str, s: int, e: int) -> tuple[int, int]:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


def _spans_between(text: str, s: int, e: int, cuts: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Stripped, non-empty spans of text[s:e] around the (start, end) separator ranges."""
    spans = []
    pos = s
    for cs, ce in cuts:
        a, b = _strip(text, pos, cs)
        if a < b:
            spans.append((a, b))
        pos = ce
    a, b = _strip(text, pos, e)
    if a < b:
        spans.append((a, b))
    return spans


def _split_regex(text: str, s: int, e: int, pattern: re.Pattern[str]) -> list[tuple[int, int]]:
    return _spans_between(text, s, e, [m.span() for m in pattern.finditer(text, s, e)])


def _split_sentences(text: str, s: int, e: int) -> list[tuple[int, int]]:
    return _spans_between(text, s, e, [(p, p) for p in _sentence_starts(text, s, e)])


def _split_chars(text: str, s: int, e: int, parts: int) -> list[tuple[int, int]]:
    """`parts` roughly equal slices, never cutting before a combining mark."""
    parts = max(1, min(parts, e - s))
    cuts = []
    for i in range(1, parts):
        pos = s + (e - s) * i // parts
        while pos < e and unicodedata.combining(text[pos]):
            pos += 1
        if pos < e and (not cuts or pos > cuts[-1]):
            cuts.append(pos)
    bounds = [s, *cuts, e]
    return [(a, b) for a, b in zip(bounds, bounds[1:]) if a < b]


def _shrunk(budget: int, estimate: int, actual: int) -> int:
    """The budget, in estimated units, under which the measured size should fit `budget`."""
    if actual <= budget or estimate <= 0:
        return budget
    return max(1, int(budget * estimate / actual * 0.95))


def _is_separator_row(line: str) -> bool:
    """A markdown/ASCII table rule such as |---|:--:| or +----+----+."""
    line = line.strip()
    return bool(line) and set(line) <= set("|+:-= \t") and (
        line.count("-") >= 3 or line.count("=") >= 3
    )


# How each block kind is cut when too large, coarsest first.
_PARA, _SENT, _LINE, _WORDS, _CHARS, _ROWS = "para", "sent", "line", "words", "chars", "rows"
_PLANS: dict[str, tuple[str, ...]] = {
    "text": (_PARA, _SENT, _LINE, _WORDS, _CHARS),
    "list": (_PARA, _LINE, _SENT, _WORDS, _CHARS),
    "heading": (_LINE, _SENT, _WORDS, _CHARS),
    "code": (_PARA, _LINE, _WORDS, _CHARS),
    "table": (_ROWS, _WORDS, _CHARS),
}
# Cuts after which a piece starts at a sentence-like boundary (good overlap starts).
_SENTENCE_LIKE = {_PARA, _SENT, _LINE, _ROWS}


# --- working data ------------------------------------------------------------------------


@dataclass(slots=True)
class _Piece:
    """A stripped span of one block that is packed whole."""

    start: int
    end: int
    block: int
    step: int  # index into the block's plan of the cut that made it; -1: not cut
    tik: int = -1
    lim: int = 0
    kids: list[_Piece] | None = None


@dataclass(slots=True)
class _Block:
    start: int  # stripped span in the document text
    end: int
    kind: str
    page: int | None
    section: tuple[str, ...]
    group: int = -1
    header: tuple[int, int] | None = None  # a table's header row(s), when repeated
    hdr_tik: int = 0
    hdr_lim: int = 0
    reserve_tik: int = 0  # cost of the headings right before it, kept with its first piece
    reserve_lim: int = 0


@dataclass(slots=True)
class _Group:
    """Consecutive blocks of one section: chunks never cross from one group to the next."""

    section: tuple[str, ...]
    blocks: list[int]
    context: str = ""
    budget_tik: int = 0
    budget_lim: int = _UNLIMITED


@dataclass(slots=True)
class _Draft:
    """A chunk being planned: pieces plus an optional overlap and repeated table header."""

    group: int
    budget_tik: int
    budget_lim: int
    pieces: list[_Piece] = field(default_factory=list)
    start: int = 0  # where its text starts: the overlap's start or the first piece's
    ov_end: int = 0  # where the overlap (the previous chunk's end) stops
    ov_tik: int = 0
    ov_lim: int = 0
    header: int | None = None  # block whose header row is repeated on top
    tik: int = 0  # estimated size of the whole text
    lim: int = 0

    @property
    def end(self) -> int:
        return self.pieces[-1].end


# --- one document --------------------------------------------------------------------------


class _Run:
    """The state of splitting one document."""

    def __init__(
        self, splitter: Splitter, doc: LoadedDocument, deadline: Deadline | None = None
    ):
        self.deadline = deadline
        self.cfg = splitter.config
        self.counter = splitter.limit_counter
        self.limit = splitter.limit_tokens
        self.enc = tokens.encoding()
        self.doc = doc
        self.text = document_text(doc.blocks)
        self.blocks: list[_Block] = []
        self.block_starts: list[int] = []
        self.groups: list[_Group] = []

    # measuring

    def _count_limit(self, texts: list[str]) -> list[int]:
        if self.counter is None:
            return [0] * len(texts)
        out: list[int] = []
        for i in range(0, len(texts), _COUNT_BATCH):
            self._check_deadline()
            out.extend(self.counter(texts[i : i + _COUNT_BATCH]))
        return out

    def _count_tik(self, texts: list[str]) -> list[int]:
        # A plain loop: tiktoken's threaded batch costs more than it saves on short texts.
        encode = self.enc.encode_ordinary
        out: list[int] = []
        for i in range(0, len(texts), _COUNT_BATCH):
            self._check_deadline()
            out.extend(len(encode(t)) if len(t) <= tokens.SAFE_CHARS else tokens.count(t)
                       for t in texts[i : i + _COUNT_BATCH])
        return out

    def _check_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.check()

    def _measure(self, pieces: list[_Piece]) -> None:
        if not pieces:
            return
        texts = [self.text[p.start : p.end] for p in pieces]
        for p, t, n in zip(pieces, self._count_tik(texts), self._count_limit(texts)):
            p.tik, p.lim = t, n

    def _join(self, a_end: int, b_start: int) -> int:
        """Estimated tiktoken cost of the whitespace between two spans.

        cl100k folds one space into a following word or symbol run, but not into a number,
        and spends a token on newlines and on longer runs of space.
        """
        gap = b_start - a_end
        if gap == 0:
            return 0
        if gap > 1 or self.text[a_end] != " ":
            return 1
        return 1 if self.text[b_start].isnumeric() else 0

    # layout

    def chunks(self) -> list[Chunk]:
        self._layout()
        if not self.groups:
            return []
        pieces = self._first_pieces()
        pieces = self._refine(pieces, lambda p: self._group_budget(p.block))
        drafts: list[_Draft] = []
        by_group: dict[int, list[_Piece]] = {}
        for p in pieces:
            by_group.setdefault(self.blocks[p.block].group, []).append(p)
        for gi, group in enumerate(self.groups):
            drafts.extend(
                self._pack(by_group.get(gi, []), gi, group.budget_tik, group.budget_lim,
                           self.cfg.overlap_tokens)
            )
        finals = [f for per in self._finalize(drafts, 0) for f in per]
        return [self._chunk(i, d, text, tik) for i, (d, text, tik) in enumerate(finals)]

    def _layout(self) -> None:
        pos = 0
        for n, b in enumerate(self.doc.blocks):
            if not n % _COUNT_BATCH:
                self._check_deadline()
            s, e = _strip(self.text, pos, pos + len(b.text))
            kind = b.kind if b.kind in _PLANS else "text"
            info = _Block(s, e, kind, b.page, tuple(b.section))
            if kind == "table" and s < e:
                info.header = self._table_header(s, e)
            self.blocks.append(info)
            self.block_starts.append(pos)
            pos += len(b.text) + len(BLOCK_SEPARATOR)

        # A heading belongs with what follows it when that lies in the same or a deeper
        # section, whichever convention the loader used for the heading's own section.
        effective: list[tuple[str, ...] | None] = [None] * len(self.blocks)
        following: tuple[str, ...] | None = None
        for i in range(len(self.blocks) - 1, -1, -1):
            b = self.blocks[i]
            if b.start == b.end:
                continue
            sec = b.section
            if b.kind == "heading" and following is not None and following[: len(sec)] == sec:
                sec = following
            effective[i] = following = sec
        for i, sec in enumerate(effective):
            if sec is None:
                continue
            if not self.groups or self.groups[-1].section != sec:
                self.groups.append(_Group(sec, []))
            self.groups[-1].blocks.append(i)
            self.blocks[i].group = len(self.groups) - 1
        self._contexts()

    def _table_header(self, s: int, e: int) -> tuple[int, int] | None:
        nl = self.text.find("\n", s, e)
        if nl == -1:
            return None
        he = nl
        nl2 = self.text.find("\n", nl + 1, e)
        second_end = e if nl2 == -1 else nl2
        if _is_separator_row(self.text[nl + 1 : second_end]):
            he = second_end
        hs, he = _strip(self.text, s, he)
        rest = _strip(self.text, he, e)
        return (hs, he) if rest[0] < rest[1] else None

    def _contexts(self) -> None:
        lines: dict[tuple[str, ...], str] = {}
        for g in self.groups:
            if g.section not in lines:
                lines[g.section] = self._context_line(g.section)
            g.context = lines[g.section]
            g.budget_tik = self.cfg.chunk_tokens
        if self.limit is None:
            return
        distinct = [c for c in dict.fromkeys(g.context for g in self.groups) if c]
        fitted = {
            line: self._fit_context(line, n)
            for line, n in zip(distinct, self._count_limit(distinct))
        }
        for g in self.groups:
            g.context, n = fitted.get(g.context, ("", 0))
            g.budget_lim = self.limit - n

    def _fit_context(self, line: str, n: int) -> tuple[str, int]:
        """Shorten a context that would take more than a quarter of the embedder window."""
        assert self.limit is not None
        while line and n > self.limit // 4:
            line = line[: len(line) * 2 // 3].rstrip()
            n = self._count_limit([line])[0] if line else 0
        return line, n

    def _context_line(self, section: tuple[str, ...]) -> str:
        clean = [" ".join(part.split()) for part in section]
        parts = [p for p in clean if p]
        title = " ".join((self.doc.title or "").split())
        if title:
            if parts and parts[0].casefold() == title.casefold():
                parts = parts[1:]
            parts.insert(0, title)
        while len(parts) > 1 and tokens.count(" > ".join(parts)) > CONTEXT_MAX_TOKENS:
            parts.pop(0)  # keep the deepest parts
        line = " > ".join(parts)
        ids = self.enc.encode_ordinary(line)
        if len(ids) > CONTEXT_MAX_TOKENS:
            _, offsets = self.enc.decode_with_offsets(ids)
            line = line[: offsets[CONTEXT_MAX_TOKENS]].rstrip()
        return line

    def _first_pieces(self) -> list[_Piece]:
        pieces = [
            _Piece(b.start, b.end, i, -1) for i, b in enumerate(self.blocks) if b.group >= 0
        ]
        headers = {
            i: _Piece(b.header[0], b.header[1], i, -1)
            for i, b in enumerate(self.blocks)
            if b.header is not None and b.group >= 0
        }
        self._measure(pieces + list(headers.values()))
        for i, h in headers.items():
            b, g = self.blocks[i], self.groups[self.blocks[i].group]
            if h.tik * 2 <= g.budget_tik and h.lim * 2 <= g.budget_lim:
                b.hdr_tik, b.hdr_lim = h.tik, h.lim
            else:
                b.header = None  # too big to repeat: treat its lines as rows
        # Headings right before a block are kept with its first piece: reserve room.
        tik = lim = count = 0
        prev_group = -1
        for p in pieces:
            b = self.blocks[p.block]
            if b.group != prev_group:
                tik = lim = count = 0
                prev_group = b.group
            if b.kind == "heading":
                tik, lim, count = tik + p.tik, lim + p.lim, count + 1
                continue
            b.reserve_tik, b.reserve_lim = (tik + count, lim) if count else (0, 0)
            tik = lim = count = 0
        return pieces

    def _group_budget(self, block: int) -> tuple[int, int]:
        g = self.groups[self.blocks[block].group]
        return g.budget_tik, g.budget_lim

    def _piece_budget(self, p: _Piece, base_tik: int, base_lim: int) -> tuple[int, int]:
        b = self.blocks[p.block]
        tik, lim = base_tik, base_lim
        if b.reserve_tik * 2 <= tik and b.reserve_lim * 2 <= lim:
            tik, lim = tik - b.reserve_tik, lim - b.reserve_lim
        if b.header is not None:
            tik, lim = tik - b.hdr_tik - 1, lim - b.hdr_lim
        return max(tik, 1), max(lim, 1)

    # cutting

    def _refine(
        self, pieces: list[_Piece], base: Callable[[_Piece], tuple[int, int]]
    ) -> list[_Piece]:
        """Cut every piece over its budget, coarsest boundary first, until all fit."""
        self._measure([p for p in pieces if p.tik < 0])

        def over(p: _Piece) -> bool:
            tik, lim = self._piece_budget(p, *base(p))
            return p.tik > tik or p.lim > lim

        todo = [p for p in pieces if over(p)]
        if not todo:
            return pieces
        while todo:
            made: list[_Piece] = []
            for p in todo:
                kids = self._subdivide(p, *self._piece_budget(p, *base(p)))
                if kids:
                    p.kids = kids
                    made.extend(kids)
            self._measure(made)
            todo = [k for k in made if over(k)]
        out: list[_Piece] = []
        stack = list(reversed(pieces))
        while stack:
            p = stack.pop()
            if p.kids:
                stack.extend(reversed(p.kids))
            else:
                out.append(p)
        return out

    def _subdivide(self, p: _Piece, tik: int, lim: int) -> list[_Piece]:
        b = self.blocks[p.block]
        plan = _PLANS[b.kind]
        first = p.step if p.step >= 0 and plan[p.step] == _CHARS else p.step + 1
        for step in range(first, len(plan)):
            how = plan[step]
            if how == _PARA:
                spans = _split_regex(self.text, p.start, p.end, _PARAGRAPH_BREAK)
            elif how == _LINE:
                spans = _split_regex(self.text, p.start, p.end, _LINE_BREAK)
            elif how == _SENT:
                spans = _split_sentences(self.text, p.start, p.end)
            elif how == _WORDS:
                spans = [m.span() for m in _WORD.finditer(self.text, p.start, p.end)]
            elif how == _ROWS:
                spans = self._rows(p, b)
            else:
                need = max(p.tik / tik, p.lim / lim if lim else 0.0)
                spans = _split_chars(self.text, p.start, p.end, max(2, math.ceil(need * 1.15)))
            if len(spans) >= 2:
                return [_Piece(s, e, p.block, step) for s, e in spans]
        return []  # a single character over budget: nothing finer exists

    def _rows(self, p: _Piece, b: _Block) -> list[tuple[int, int]]:
        if b.header is not None and p.start == b.header[0]:
            hs, he = b.header
            return [(hs, he), *_split_regex(self.text, he, p.end, _LINE_BREAK)]
        return _split_regex(self.text, p.start, p.end, _LINE_BREAK)

    # packing

    def _sticky(self, p: _Piece) -> bool:
        """Pieces that must not end a chunk when more follows: headings, table headers."""
        b = self.blocks[p.block]
        return b.kind == "heading" or (b.header is not None and (p.start, p.end) == b.header)

    def _heading_start(self, p: _Piece) -> bool:
        b = self.blocks[p.block]
        return b.kind == "heading" and p.start == b.start

    def _table_body(self, p: _Piece) -> bool:
        b = self.blocks[p.block]
        return b.header is not None and p.start >= b.header[1]

    def _page(self, p: _Piece) -> int | None:
        return self.blocks[p.block].page

    def _recost(self, d: _Draft) -> None:
        tik, lim = d.ov_tik, d.ov_lim
        prev_end = d.ov_end if d.ov_tik else -1
        if d.header is not None:
            b = self.blocks[d.header]
            tik, lim = tik + b.hdr_tik + 1, lim + b.hdr_lim
        for p in d.pieces:
            if prev_end >= 0:
                tik += self._join(prev_end, p.start)
            tik, lim, prev_end = tik + p.tik, lim + p.lim, p.end
        d.tik, d.lim = tik, lim

    def _fits(self, d: _Draft, p: _Piece) -> bool:
        return (
            d.tik + self._join(d.end, p.start) + p.tik <= d.budget_tik
            and d.lim + p.lim <= d.budget_lim
        )

    def _pack(
        self, pieces: list[_Piece], group: int, budget_tik: int, budget_lim: int, overlap: int
    ) -> list[_Draft]:
        """Greedily fill chunks with whole pieces, in order, within one group."""
        drafts: list[_Draft] = []
        cur: _Draft | None = None
        half = budget_tik / 2
        for p in pieces:
            if cur is None:
                cur = self._open(None, [p], group, budget_tik, budget_lim, 0)
                continue
            last = cur.pieces[-1]
            page, last_page = self._page(p), self._page(last)
            brk = not self._fits(cur, p)
            if not brk and self._heading_start(p):
                # A heading starts a chunk, unless what precedes it is only headings or tiny.
                brk = cur.tik >= self.cfg.min_chunk_tokens and not all(
                    self._sticky(q) for q in cur.pieces
                )
            if not brk and page is not None and last_page is not None and page != last_page:
                first_page = self._page(cur.pieces[0])
                brk = cur.tik >= half or (
                    first_page != last_page and cur.tik >= self.cfg.min_chunk_tokens
                )
            if not brk:
                cur.pieces.append(p)
                cur.tik += self._join(last.end, p.start) + p.tik
                cur.lim += p.lim
                continue
            carry = self._carry(cur, p, budget_tik, budget_lim)
            if carry:
                del cur.pieces[-len(carry) :]
                self._recost(cur)
            drafts.append(cur)
            cur = self._open(cur, [*carry, p], group, budget_tik, budget_lim,
                             0 if carry else overlap)
        if cur is not None:
            drafts.append(cur)
        self._merge_tiny(drafts)
        return drafts

    def _carry(self, cur: _Draft, p: _Piece, budget_tik: int, budget_lim: int) -> list[_Piece]:
        """Trailing headings/table headers of `cur` that should move on with `p`."""
        n = 0
        while n < len(cur.pieces) and self._sticky(cur.pieces[-1 - n]):
            n += 1
        if n == 0 or n == len(cur.pieces):
            return []
        carry = cur.pieces[-n:]
        trial = _Draft(cur.group, budget_tik, budget_lim, [*carry, p], carry[0].start)
        self._recost(trial)
        return carry if trial.tik <= budget_tik and trial.lim <= budget_lim else []

    def _open(
        self,
        prev: _Draft | None,
        pieces: list[_Piece],
        group: int,
        budget_tik: int,
        budget_lim: int,
        overlap: int,
    ) -> _Draft:
        first = pieces[0]
        d = _Draft(group, budget_tik, budget_lim, list(pieces), first.start)
        if self._table_body(first):
            d.header = first.block
        self._recost(d)
        if prev is not None and overlap > 0:
            self._add_overlap(prev, d, overlap)
        return d

    def _add_overlap(self, prev: _Draft, d: _Draft, overlap: int) -> None:
        first = d.pieces[0]
        b = self.blocks[first.block]
        if b.kind in ("heading", "table") or d.header is not None:
            return
        target = min(overlap, prev.tik // 2, d.budget_tik - d.tik - 1)
        floor = max(4, overlap // 4)
        while target >= floor:
            found = self._find_overlap(prev, first, target)
            if found is None:
                return
            start, tik = found
            lim = self._count_limit([self.text[start : prev.end]])[0]
            if d.lim + lim <= d.budget_lim:
                d.start, d.ov_end, d.ov_tik, d.ov_lim = start, prev.end, tik, lim
                self._recost(d)
                return
            target //= 2

    def _find_overlap(self, prev: _Draft, first: _Piece, target: int) -> tuple[int, int] | None:
        """Start of about `target` tokens at the end of `prev`, at a sentence or word start."""
        last = prev.pieces[-1]
        kind = self.blocks[last.block].kind
        if kind in ("heading", "table") or self._page(last) != self._page(first):
            return None
        prose = kind != "code"
        lo = last.start
        for q in reversed(prev.pieces):
            qb = self.blocks[q.block]
            if self._page(q) != self._page(first) or qb.kind in ("heading", "table"):
                break
            if (qb.kind == "code") != (kind == "code") or (not prose and q.block != last.block):
                break
            lo = q.start
        lo = max(lo, prev.start + 1)
        end = last.end
        ws = max(lo, end - (target * 8 + 32))
        offsets = self._token_offsets(self.text[ws:end])
        if not offsets:
            return None
        n_ids = len(offsets)

        def size(c: int) -> int:
            rel = c - ws
            i = bisect_left(offsets, rel)
            straddle = 1 if i > 0 and (i == n_ids or offsets[i] != rel) else 0
            return n_ids - i + straddle

        inside = [q for q in prev.pieces if ws <= q.start < end]
        piece_starts = [q.start for q in inside]
        if prose:
            sentence_like = [
                q.start for q in inside
                if q.step < 0 or _PLANS[self.blocks[q.block].kind][q.step] in _SENTENCE_LIKE
            ]
            sentences = sorted(set(sentence_like + _sentence_starts(self.text, ws, end)))
            best = self._earliest(sentences, size, target)
            if best is not None and best[1] * 2 >= target:
                return best
            words = [m.start() for m in _WORD_START.finditer(self.text, ws, end)]
            words += [c for c in piece_starts if c == 0 or self.text[c - 1].isspace()]
            return self._earliest(sorted(set(words)), size, target) or best
        lines = [m.end() for m in _LINE_START.finditer(self.text, ws, end)] + piece_starts
        return self._earliest(sorted(set(lines)), size, target)

    def _token_offsets(self, text: str) -> list[int]:
        """Where each tiktoken token of `text` starts, as character offsets."""
        ids = self.enc.encode_ordinary(text)
        if not text.isascii():
            return self.enc.decode_with_offsets(ids)[1]
        return list(accumulate((len(b) for b in self.enc.decode_tokens_bytes(ids[:-1])), initial=0))

    @staticmethod
    def _earliest(
        candidates: list[int], size: Callable[[int], int], target: int
    ) -> tuple[int, int] | None:
        """The earliest candidate start whose tail is at most `target` tokens."""
        for c in candidates:  # ascending: the first that fits is the longest
            n = size(c)
            if 0 < n <= target:
                return c, n
        return None

    def _merge_tiny(self, drafts: list[_Draft]) -> None:
        """Fold a chunk with under `min_chunk_tokens` of new text into a neighbour that has
        room for it: the one before, else the one after (the tail of a split block, or a
        chunk closed early by a page break, would otherwise stand alone)."""
        i = 0
        while i < len(drafts) and len(drafts) > 1:
            d = drafts[i]
            own = _Draft(d.group, d.budget_tik, d.budget_lim, d.pieces, d.pieces[0].start,
                         header=d.header)
            self._recost(own)
            if own.tik >= self.cfg.min_chunk_tokens:
                i += 1
                continue
            nxt = drafts[i + 1].pieces if i + 1 < len(drafts) else None
            if i > 0 and self._absorbs(drafts[i - 1], d.pieces):
                del drafts[i]
                continue
            if nxt is not None:
                if self._absorbs(d, nxt):  # keeping d's overlap
                    del drafts[i + 1]
                elif self._absorbs(own, nxt):  # or without it
                    drafts[i] = own
                    del drafts[i + 1]
            i += 1

    def _absorbs(self, d: _Draft, pieces: list[_Piece]) -> bool:
        """Append `pieces` to `d` if the result stays within its budget."""
        trial = _Draft(d.group, d.budget_tik, d.budget_lim, d.pieces + pieces, d.start,
                       d.ov_end, d.ov_tik, d.ov_lim, d.header)
        self._recost(trial)
        if trial.tik > d.budget_tik or trial.lim > d.budget_lim:
            return False
        d.pieces, d.tik, d.lim = trial.pieces, trial.tik, trial.lim
        return True

    # checking

    def _draft_text(self, d: _Draft) -> str:
        body = self.text[d.start : d.end]
        if d.header is None:
            return body
        hs, he = self.blocks[d.header].header  # type: ignore[misc]
        return f"{self.text[hs:he]}\n{body}"

    def _finalize(self, drafts: list[_Draft], depth: int) -> list[list[tuple[_Draft, str, int]]]:
        """Count every chunk exactly; re-split those over the window (or far over target)."""
        texts = [self._draft_text(d) for d in drafts]
        contexts = [self.groups[d.group].context for d in drafts]
        tiks = self._count_tik(texts)
        lims = (
            self._count_limit([f"{c}\n{t}" if c else t for c, t in zip(contexts, texts)])
            if self.limit is not None
            else [0] * len(texts)
        )
        slack = max(4, self.cfg.chunk_tokens // 20)
        out: list[list[tuple[_Draft, str, int]]] = []
        redo: dict[int, list[_Draft]] = {}
        for i, d in enumerate(drafts):
            over_lim = self.limit is not None and lims[i] > self.limit
            over_tik = tiks[i] > d.budget_tik + slack
            subs: list[_Draft] = []
            if over_lim or (over_tik and depth < 3):
                subs = self._resplit(d, tiks[i], lims[i])
            if len(subs) > 1 or (subs and over_lim):
                redo[i] = subs
                out.append([])
            else:
                if over_lim:
                    raise RuntimeError("splitter could not fit a chunk into the embedder window")
                out.append([(d, texts[i], tiks[i])])
        if redo:
            if depth >= _MAX_RESPLITS:
                raise RuntimeError("splitter could not fit a chunk into the embedder window")
            flat = [s for subs in redo.values() for s in subs]
            done = iter(self._finalize(flat, depth + 1))
            for i, subs in redo.items():
                out[i] = [f for _ in subs for f in next(done)]
        return out

    def _resplit(self, d: _Draft, tik: int, lim: int) -> list[_Draft]:
        """Re-pack an offending chunk into balanced, smaller parts.

        Budgets are scaled by how far the estimate was off (the measured size of the whole
        chunk over the sum of its pieces), then set so the parts come out about equal
        instead of full parts and a sliver.
        """
        budget_tik = _shrunk(d.budget_tik, d.tik, tik)
        parts = max(2, math.ceil(d.tik / budget_tik))
        budget_lim = d.budget_lim
        if self.limit is not None:
            context = self.limit - self.groups[d.group].budget_lim
            budget_lim = _shrunk(d.budget_lim, d.lim, lim - context)
            parts = max(parts, math.ceil(d.lim / budget_lim))
            budget_lim = min(budget_lim, math.ceil(d.lim * 1.1 / parts) + 1)
        budget_tik = min(budget_tik, math.ceil(d.tik * 1.1 / parts) + 1)
        pieces = self._overlap_pieces(d) + [
            _Piece(p.start, p.end, p.block, p.step, p.tik, p.lim) for p in d.pieces
        ]
        pieces = self._refine(pieces, lambda p: (budget_tik, budget_lim))
        return self._pack(pieces, d.group, budget_tik, budget_lim, 0)

    def _overlap_pieces(self, d: _Draft) -> list[_Piece]:
        first = d.pieces[0].start
        if d.start >= first:
            return []
        out = []
        i = bisect_right(self.block_starts, d.start) - 1
        while i < len(self.blocks) and self.blocks[i].start < first:
            b = self.blocks[i]
            s, e = _strip(self.text, max(d.start, b.start), min(first, b.end))
            if s < e:
                out.append(_Piece(s, e, i, -1))
            i += 1
        return out

    def _chunk(self, index: int, d: _Draft, text: str, tik: int) -> Chunk:
        pages = [p for p in (self._page(q) for q in d.pieces) if p is not None]
        g = self.groups[d.group]
        return Chunk(
            text=text,
            index=index,
            page=min(pages) if pages else None,
            page_end=max(pages) if pages else None,
            section=g.section,
            char_start=d.start,
            char_end=d.end,
            tokens=tik,
            context=g.context,
        )
