"""HTML through lxml's streaming parser target: no tree, so no depth limit and no recursion;
navigation chrome is skipped, headings and tables kept.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

from app.core.documents.base import Block, LoadedDocument, LoadError
from app.core.documents.common import (
    Sections,
    check_deadline,
    collapse,
    decode_bytes,
    markdown_table,
    read_limited,
)

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
# The permalink beside a heading ("¶" in Sphinx and MkDocs, "#" elsewhere): chrome, not the
# heading's words; left in, it ended every section path ("4.7. Defining Functions¶") and so
# every passage's embedded text and every citation's section.
_HTML_PERMALINK_CLASSES = frozenset(
    "headerlink anchor-link anchorjs-link header-anchor heading-anchor hash-link".split()
)
_HTML_BLOCK_TAGS = frozenset(
    "address article aside blockquote body center dd details dialog dir div dl dt fieldset "
    "figcaption figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr html li main menu nav ol "
    "p pre section summary table tbody thead tfoot tr td th caption ul".split()
)
_HTML_TEXT_LEAVES = frozenset("p dt dd blockquote figcaption caption address summary li".split())
# The declared encoding. A tag's attributes stop at the next "<" as well as at ">", and the
# blanks around "=" and the quote are possessive: on "<meta" repeated, or a long run of blanks
# after "charset=", the plain form backtracked quadratically.
_META_CHARSET_RE = re.compile(
    rb"""<meta[^<>]+?charset\s*+=\s*+["']?+\s*+([A-Za-z0-9_.:\-]+)"""
    rb"""|<\?xml[^<>]+encoding\s*+=\s*+["']([A-Za-z0-9_.:\-]+)""",
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
        self.sections = Sections()
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
                or (tag == "a" and _HTML_PERMALINK_CLASSES.intersection(
                    (attrib.get("class") or "").lower().split()))
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
                self.meta.setdefault(name, collapse(content))
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
            title = collapse("".join(cap.parts).replace("\n", " "))
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
            text = markdown_table(rows)
            if text:
                self.blocks.append(Block(text, None, current, "table"))
        elif cap.type == "list":
            lines = []
            for depth, parts in cap.items:
                item = collapse("".join(parts).replace("\n", " "))
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
    lines = (collapse(line) for line in "".join(parts).split("\n"))
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


def load_html(path: Path) -> LoadedDocument:
    from lxml import etree

    data = read_limited(path)
    text, encoding = decode_bytes(data, declared=_html_declared_encoding(data))
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
        check_deadline()
    result: _HtmlExtractor = parser.close()
    title = collapse("".join(result.title_parts)) or result.first_h1 or path.stem
    meta = result.meta
    metadata = {"encoding": encoding}
    for key in ("description", "keywords", "og:title", "dc.title"):
        if key in meta:
            metadata[key] = meta[key]
    author = meta.get("author") or meta.get("dc.creator") or None
    return LoadedDocument(
        path=path, kind="html", title=title, blocks=result.blocks, author=author, metadata=metadata
    )
