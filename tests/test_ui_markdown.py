"""Answers as the chat shows them: Markdown rendered, raw HTML inert, [n] linked only in prose.

The HTML is checked as a string and as the chat's QTextBrowser reads it (the anchors and the
text a user sees), with the link scheme ChatPanel builds ("src:<message id>:<n>") and routes.
"""

from __future__ import annotations

import pytest
from PySide6.QtCore import QUrl
from PySide6.QtWidgets import QTextBrowser

from app.ui.markdown import to_html

PREFIX = "src:7:"  # ChatPanel._message_html: f"src:{m.id}:", as many markers as sources


def anchors(qtbot, html: str) -> list[tuple[str, str]]:
    """(href, text) of every link in `html` as the chat's text browser lays it out."""
    view = QTextBrowser()
    qtbot.addWidget(view)
    view.setHtml(html)
    found = []
    block = view.document().begin()
    while block.isValid():
        it = block.begin()
        while not it.atEnd():
            frag = it.fragment()
            fmt = frag.charFormat()
            if fmt.isAnchor() and fmt.anchorHref():
                found.append((fmt.anchorHref(), frag.text()))
            it += 1
        block = block.next()
    return found


def plain(qtbot, html: str) -> str:
    view = QTextBrowser()
    qtbot.addWidget(view)
    view.setHtml(html)
    return view.toPlainText()


def test_fenced_code_block_is_preformatted_and_keeps_its_text():
    out = to_html("Run this:\n\n```python\nfor i in range(3):\n    print(i)\n```\n")
    assert "<pre>" in out
    assert "for i in range(3):\n    print(i)" in out  # indentation and lines kept


def test_bullet_and_numbered_lists():
    out = to_html("- apples\n- pears\n\n1. first\n2. second\n")
    assert out.count("<li>") == 4
    assert "<ul>" in out and "<ol>" in out
    assert out.index("apples") < out.index("</ul>") < out.index("first")


def test_table_renders_as_a_table(qtbot):
    out = to_html("| Port | Ferry |\n|---|---|\n| Karnvik | 08:10 |\n| Holm | 09:40 |\n")
    assert "<table>" in out and out.count("<tr>") == 3
    view = QTextBrowser()
    qtbot.addWidget(view)
    view.setHtml(out)
    cursor = view.textCursor()
    cursor.movePosition(cursor.MoveOperation.NextBlock)
    assert cursor.currentTable() is not None
    assert cursor.currentTable().rows() == 3 and cursor.currentTable().columns() == 2


def test_citation_in_prose_links_to_the_source(qtbot):
    out = to_html("The lighthouse was built in 1872 [2].", PREFIX, max_n=3)
    assert anchors(qtbot, out) == [("src:7:2", "[2]")]
    # ChatPanel._on_link splits the URL exactly like this into (message id, n).
    scheme, _, rest = QUrl("src:7:2").toString().partition(":")
    key, _, n = rest.partition(":")
    assert (scheme, key, int(n)) == ("src", "7", 2)


def test_citation_inside_code_is_not_a_link(qtbot):
    text = ("Index it with `x[1]` [1].\n\n"
            "```python\nfirst = rows[1]\nlast = rows[2]\n```\n\n"
            "    indented = a[2]\n\n"
            "| a | b |\n|---|---|\n| `y[2]` | [2] |\n")
    out = to_html(text, PREFIX, max_n=2)
    # Only the two prose markers are links; the indices in code stay as written.
    assert anchors(qtbot, out) == [("src:7:1", "[1]"), ("src:7:2", "[2]")]
    assert "<code>x[1]</code>" in out
    assert "first = rows[1]\nlast = rows[2]" in out
    assert "indented = a[2]" in out
    assert "<code>y[2]</code>" in out


def test_raw_html_in_the_answer_is_shown_as_text(qtbot):
    text = ('Found <script>alert("x")</script> and <img src=x onerror=alert(1)> and '
            '<a href="file:///etc/passwd">here</a> [1]')
    out = to_html(text, PREFIX, max_n=1)
    assert "<script" not in out and "<img" not in out
    assert "<a href=\"file:" not in out
    assert anchors(qtbot, out) == [("src:7:1", "[1]")]
    shown = plain(qtbot, out)
    assert '<script>alert("x")</script>' in shown  # the user sees it, nothing runs
    assert "<img src=x onerror=alert(1)>" in shown


def test_markdown_link_from_a_document_is_not_a_link(qtbot):
    out = to_html("See [the site](http://example.com) [1]", PREFIX, max_n=1)
    assert anchors(qtbot, out) == [("src:7:1", "[1]")]


@pytest.mark.parametrize("n", [0, 4, 99])
def test_marker_without_a_source_stays_text(qtbot, n):
    out = to_html(f"As said before [{n}], and here [3].", PREFIX, max_n=3)
    assert anchors(qtbot, out) == [("src:7:3", "[3]")]
    assert f"[{n}]" in plain(qtbot, out)


def test_without_a_prefix_nothing_is_linked(qtbot):
    out = to_html("A question that mentions [1].")
    assert anchors(qtbot, out) == []


def test_code_blocks_get_copy_links_and_citations_in_code_are_not_links():
    from app.ui.markdown import code_blocks, to_html

    text = "See [2]:\n\n```\nx[1] = 0\n</pre><a href='evil'>\n```\n\n    indented\n\n`a[1]`"
    out = to_html(text, "src:5:", 2, code_prefix="code:5:")
    assert out.count("Copy code") == 2
    assert "href='code:5:0'" in out and "href='code:5:1'" in out
    assert "<a href='evil'>" not in out and "&lt;/pre&gt;" in out  # a block's text stays text
    assert code_blocks(text) == ["x[1] = 0\n</pre><a href='evil'>\n", "indented\n"]
    assert "href='src:5:2'" in out and "href='src:5:1'" not in out  # x[1] is code
