"""Plain text, Markdown and reStructuredText: decoded with the detected encoding, headings kept.
"""

from __future__ import annotations

import re
from pathlib import Path

from app.core.documents.base import Block, LoadedDocument, LoadError
from app.core.documents.common import (
    MAX_BLOCK_CHARS,
    MAX_TEXT_BLOCK_CHARS,
    Sections,
    check_deadline,
    collapse,
    decode_bytes,
    read_limited,
    split_long,
)

# --------------------------------------------------------------------------------------
# Plain text, Markdown, reStructuredText, source code, CSV
# --------------------------------------------------------------------------------------


def read_text(path: Path) -> tuple[str, str]:
    text, encoding = decode_bytes(read_limited(path))
    if not text.strip():
        raise LoadError("the file contains no text (only whitespace)")
    return text, encoding


def load_plain(path: Path) -> LoadedDocument:
    text, encoding = read_text(path)
    blocks: list[Block] = []
    for i, para in enumerate(paragraphs(text)):
        if not i % 4096:
            check_deadline()
        pieces = split_long(para, MAX_TEXT_BLOCK_CHARS)
        blocks.extend(Block(piece, None, (), "text") for piece in pieces)
    return LoadedDocument(
        path=path, kind="text", title=path.stem, blocks=blocks, metadata={"encoding": encoding}
    )


_BLANK_SPLIT_RE = re.compile(r"\n[ \t]*\n")


def paragraphs(text: str) -> list[str]:
    return [p.strip("\n").rstrip() for p in _BLANK_SPLIT_RE.split(text) if p.strip()]


# ---- Markdown ------------------------------------------------------------------------

# The opening #s of an ATX heading; its title and optional closing #s are cut in Python
# (`_atx_title`). As one pattern, a lazy title before optional closers backtracked
# quadratically on a heading with a long run of blanks inside.
_MD_ATX_RE = re.compile(r"^ {0,3}(#{1,6})(?=[ \t]|$)")
_MD_FENCE_RE = re.compile(r"^( {0,3})(`{3,}|~{3,})(.*)$")
_MD_SETEXT_RE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
_MD_HR_RE = re.compile(r"^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$")
_MD_LIST_RE = re.compile(r"^ {0,12}(?:[-*+]|\d{1,9}[.)])(?:[ \t]+|$)")
# Possessive runs: two optional runs of blanks side by side share a long run in every way
# there is, quadratically, on a line that fails at its end.
_MD_TABLE_SEP_RE = re.compile(
    r"^[ \t]*+\|?[ \t]*+:?-++:?[ \t]*+(?:\|[ \t]*+:?-++:?[ \t]*+)*+\|?[ \t]*+$"
)
_FRONT_MATTER_RE = re.compile(r"^(title|author)\s*:\s*(.+)$", re.I)


def load_markdown(path: Path) -> LoadedDocument:
    text, encoding = read_text(path)
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
                m = _FRONT_MATTER_RE.match(line.strip())
                if m:
                    metadata[m.group(1).lower()] = m.group(2).strip().strip("'\"")
            return i + 1
    return 0


def _atx_title(rest: str) -> str:
    """The title of an ATX heading from what follows its opening #s: without the blanks around
    it and the optional closing sequence (#s after a blank; a title of only #s stays)."""
    title = rest.strip(" \t")
    bare = title.rstrip("#")
    if bare != title and bare[-1:] in (" ", "\t"):
        title = bare.rstrip(" \t")
    return title


def _md_marker(line: str) -> str:
    """The kind of list marker: "-", "*", "+" or "1" for ordered lists."""
    stripped = line.lstrip()
    return "1" if stripped[:1].isdigit() else stripped[:1]


def _parse_markdown(lines: list[str], start: int = 0) -> list[Block]:
    sections = Sections()
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
                and len(para[1]) <= MAX_BLOCK_CHARS
                and _MD_TABLE_SEP_RE.match(para[1])
            ):
                kind = "table"
            if text.strip():
                blocks.append(Block(text, None, sections.current, kind))
            para.clear()
        para_kind = "text"

    def heading(level: int, title: str) -> None:
        flush()
        title = collapse(title)
        if title:
            blocks.append(Block(title, None, sections.enter(level, title), "heading"))

    i, n = start, len(lines)
    checked = i
    while i < n:
        if i - checked >= 4096:
            check_deadline()
            checked = i
        line = lines[i]
        if len(line) > MAX_BLOCK_CHARS and line.strip():  # text: no structure pattern sees it
            para.append(line.rstrip())
            i += 1
            continue
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
            heading(len(atx.group(1)), _atx_title(line[atx.end() :]))
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
_RST_OPTION_RE = re.compile(r"^\s+:\w[\w-]*:")


def load_rst(path: Path) -> LoadedDocument:
    text, encoding = read_text(path)
    blocks = _parse_rst(text.split("\n"))
    headings = [b for b in blocks if b.kind == "heading"]
    title = headings[0].text if headings else path.stem
    return LoadedDocument(
        path=path, kind="rst", title=title, blocks=blocks, metadata={"encoding": encoding}
    )


def _parse_rst(lines: list[str]) -> list[Block]:
    sections = Sections()
    styles: list[tuple[str, bool]] = []  # adornment styles in order of first use = level
    blocks: list[Block] = []
    para: list[str] = []
    expect_code = False  # the previous paragraph ended with "::" or was a code directive

    def is_adorn(line: str) -> bool:
        return len(line) <= MAX_BLOCK_CHARS and bool(_RST_ADORN_RE.match(line))

    def heading(style: tuple[str, bool], title: str) -> None:
        if style not in styles:
            styles.append(style)
        title = collapse(title)
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
        if _RST_CODE_DIRECTIVE_RE.match(first[:MAX_BLOCK_CHARS]):
            expect_code = True
            rest = text.partition("\n")[2]
            # directive options (":linenos:") and the content may follow without a blank line
            body = "\n".join(ln for ln in rest.split("\n") if not _RST_OPTION_RE.match(ln))
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
        kind = "list" if _RST_LIST_RE.match(first.lstrip()[:MAX_BLOCK_CHARS]) else "text"
        blocks.append(Block(text, None, sections.current, kind))

    i, n = 0, len(lines)
    checked = 0
    while i < n:
        if i - checked >= 4096:
            check_deadline()
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
