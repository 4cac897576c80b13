"""Chat text to the HTML subset QTextBrowser draws.

Answers are written by a model that read the user's documents, so their text is untrusted:
it is first made inert with the history module's escaper (no raw HTML, no links or images
smuggled in from a document), then rendered by markdown-it with HTML disabled. `[n]` citation
markers become links the chat panel routes to the source viewer, but only in prose: in code
(`x[1]`, a fenced block) a bracketed number is an index, and a marker with no source behind it
stays as written.
"""

from __future__ import annotations

import html
import re

from app.core.chat.history import escape_markdown_content

_CITE = re.compile(r"\[(\d{1,3})\]")
# What citation linking must not touch: code (block and inline, with whatever it holds) and
# the tags themselves. The HTML comes from markdown-it with raw HTML off, so these are its own.
_NOT_PROSE = re.compile(r"<pre\b.*?</pre>|<code\b.*?</code>|<[^>]*>", re.DOTALL | re.IGNORECASE)
_md = None


def _renderer():
    global _md
    if _md is None:
        try:
            from markdown_it import MarkdownIt

            _md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
        except ImportError:  # degrade to preformatted text rather than fail
            _md = False
    return _md


_PRE_END = re.compile(r"</pre>", re.IGNORECASE)


def code_blocks(text: str) -> list[str]:
    """The code blocks of a message (fenced or indented), in order, as written: what each
    block's "Copy code" link copies."""
    md = _renderer()
    if not md:
        return []
    return [t.content for t in md.parse(escape_markdown_content(text))
            if t.type in ("fence", "code_block")]


def to_html(text: str, cite_prefix: str | None = None, max_n: int = 0,
            code_prefix: str | None = None) -> str:
    """Markdown -> HTML; with `cite_prefix`, [n] (1 <= n <= max_n) links to cite_prefix + n;
    with `code_prefix`, each code block is followed by a "Copy code" link to code_prefix + its
    index (`code_blocks`)."""
    md = _renderer()
    if md:
        out = md.render(escape_markdown_content(text))
    else:
        out = f"<p style='white-space:pre-wrap'>{html.escape(text)}</p>"
    if md and code_prefix:
        count = iter(range(1 << 30))
        out = _PRE_END.sub(lambda _m: f"</pre><p class='muted' align='right'>"
                                      f"<a href='{code_prefix}{next(count)}'>Copy code</a></p>",
                           out)
    if cite_prefix:
        def link(m: re.Match) -> str:
            n = int(m.group(1))
            if 1 <= n <= max_n:
                return f"<a href='{cite_prefix}{n}'>[{n}]</a>"
            return m.group(0)

        out = _link_citations(out, link)
    return out


def _link_citations(out: str, link) -> str:
    parts, at = [], 0
    for m in _NOT_PROSE.finditer(out):
        parts.append(_CITE.sub(link, out[at:m.start()]))
        parts.append(m.group(0))
        at = m.end()
    parts.append(_CITE.sub(link, out[at:]))
    return "".join(parts)
