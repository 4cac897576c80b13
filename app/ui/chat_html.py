"""The conversation's HTML pieces that need no widget: a source's link text, tool calls and
their results, the note beside a remote answer. The chat panel (app/ui/chat_panel.py) puts
them together."""

from __future__ import annotations

import html
import json
from pathlib import Path

from app.core.base.units import page_label

SECTION_IN_LINK = 40  # characters of a section title shown in a source link
PREVIEW_CHARS = 600  # of a passage shown when its source link is hovered
TOOL_TEXT_CHARS = 400  # of a tool call's arguments or result shown in the conversation


def _field(source, name: str, default=None):
    """A source is a history.Source or, while an answer streams, a dict of the same fields."""
    if isinstance(source, dict):
        return source.get(name, default)
    return getattr(source, name, default)


def source_link_text(source) -> str:
    """'[2] guide.pdf, p. 3' or, for a file without pages (DOCX, text, HTML), the section it
    sits in: '[4] notes.docx, “Winter timetable”', so two passages of one file are told
    apart."""
    n, name = _field(source, "n"), Path(_field(source, "path") or "").name
    where = page_label(_field(source, "page"), _field(source, "page_end"))
    if not where:
        section = " ".join((_field(source, "section") or "").split())
        section = section.rsplit(" > ", 1)[-1]  # the innermost heading of a heading path
        if len(section) > SECTION_IN_LINK:
            section = section[:SECTION_IN_LINK - 1].rstrip() + "…"
        where = f"“{section}”" if section else ""
    return f"[{n}] {name}" + (f", {where}" if where else "")

def _short_json(value) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= TOOL_TEXT_CHARS else text[:TOOL_TEXT_CHARS] + "…"


def _call_html(call: dict) -> str:
    """A tool call as shown: its name and exact JSON arguments (or why it is malformed)."""
    if "error" in call:
        return (f"<b>malformed tool call</b>: {html.escape(str(call['error']))} "
                f"<code>{html.escape(str(call.get('raw', ''))[:TOOL_TEXT_CHARS])}</code>")
    return (f"<b>{html.escape(str(call.get('name')))}</b> "
            f"<code>{html.escape(_short_json(call.get('arguments')))}</code>")


def _tools_html(tools: list, bg: str) -> str:
    """Tool calls and their results as compact blocks above an answer (the stored record
    `{"call", "result"}`, or the live one with its approval state)."""
    rows = []
    for t in tools:
        call, result = t.get("call") or {}, t.get("result")
        line = "Tool call: " + _call_html(call)
        if t.get("waiting"):
            line += "<br><i>Waiting for your approval (Allow / Deny below).</i>"
        elif t.get("decision") == "denied" and result is None:
            line += "<br><i>Denied.</i>"
        if isinstance(result, dict):
            if result.get("ok"):
                line += "<br>Result: <code>" + html.escape(_short_json(result.get("result"))) \
                    + "</code>"
            else:
                line += "<br>Error: " + html.escape(str(result.get("error")))
        elif not t.get("waiting") and t.get("decision") is None:
            line += "<br><i>Running…</i>"
        rows.append(f"<tr><td bgcolor='{bg}'><small>{line}</small></td></tr>")
    if not rows:
        return ""
    return f"<table width='100%' cellpadding='4' style='margin:4px 0'>{''.join(rows)}</table>"


def _remote_marker(model, provider) -> str:
    """Said beside an answer a remote provider's model gave: where it was answered."""
    return html.escape(f" · {model or 'remote model'} via {provider or 'a provider'} (remote)")


def source_preview_html(src: dict) -> str:
    """What hovering a source shows: where it is and the passage (escaped; a long one cut)."""
    passage = " ".join((src.get("text") or "").split())
    if len(passage) > PREVIEW_CHARS:
        passage = passage[:PREVIEW_CHARS].rsplit(" ", 1)[0] + " …"
    where = html.escape(source_link_text(src))
    section = html.escape((src.get("section") or "").replace(" > ", " › "))
    return (f"<p><b>{where}</b>" + (f"<br><i>{section}</i>" if section else "") + "</p>"
            f"<p style='white-space:pre-wrap'>{html.escape(passage)}</p>"
            "<p><i>Click to open it at the passage.</i></p>")
