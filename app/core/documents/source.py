"""Source code: cut at top-level definitions, so a chunk holds a function and names it.
"""

from __future__ import annotations

import re
from pathlib import Path

from app.core.documents.base import Block, LoadedDocument
from app.core.documents.common import MAX_CODE_BLOCK_CHARS, check_deadline, split_long
from app.core.documents.text import paragraphs, read_text

# ---- source code ---------------------------------------------------------------------

_CODE_DEF_RE = re.compile(
    r"^(?:export\s+|default\s+|public\s+|private\s+|protected\s+|static\s+|async\s+|pub(?:\([^)]*\))?\s+|"
    r"abstract\s+|final\s+|inline\s+|unsafe\s+)*"
    r"(?:def|class|function|func|fn|sub|module|interface|struct|enum|impl|trait|object|"
    r"type|namespace|procedure|subroutine|program|macro|defun|defn)\b"
)
_CODE_CLOSER_RE = re.compile(r"^(?:[}\])]|end\b|endfunction\b|</|#end|fi\b|done\b|esac\b)")
_CODE_PREAMBLE_RE = re.compile(r"^\s*(?:@|#|//|/\*|\*|%|--|;|\")")
_JS_ASSIGNMENT_RE = re.compile(r"^[\w\s,<>\[\]\*&:~]*?=\s*")


def load_code(path: Path) -> LoadedDocument:
    text, encoding = read_text(path)
    blocks: list[Block] = []
    for i, (segment, section) in enumerate(_code_segments(text)):
        if not i % 1024:
            check_deadline()
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
        _JS_ASSIGNMENT_RE.sub("", first) if first.startswith("function") else first
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
    for part in paragraphs(segment):
        if current and len(current) + len(part) + 2 > MAX_CODE_BLOCK_CHARS:
            pieces.append(current)
            current = ""
        current = current + "\n\n" + part if current else part
    if current:
        pieces.append(current)
    return [p for piece in pieces for p in split_long(piece, MAX_CODE_BLOCK_CHARS)]
