"""A found passage widened to its section, for the model to read (issue 13).

Search ranks passages of about 200 tokens: small enough that one matches one idea. The answer
to a question often lies just past the passage's edge: the rest of a FAQ answer, the line
after a function's signature, the paragraph that follows a heading. `widen` hands the model
each source's neighbouring passages as well, as long as they belong to the same section, in
reading order and without the overlap consecutive passages share, within a token budget: the
matched passage is still what is cited and highlighted, its section is what is read.

Sources are widened in rank order, so the best one gets the budget first. A neighbour that is
itself another source is left to that source, so no text reaches the model twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.core.index.library import Library

# How far either side of a passage to look for its section's other passages: a section larger
# than this (about 7 passages, 1,400 tokens) is widened by its nearest part only.
REACH = 3


@dataclass(slots=True)
class Window:
    """A source's passage with its section around it: the text in reading order, the pages
    it spans, and how many tokens were added to the passage's own."""

    text: str
    page: int | None
    page_end: int | None
    added_tokens: int
    passages: int


def merge_passages(rows: Sequence[dict]) -> str:
    """Consecutive passages of one document as one text: each passage's offsets into the
    document's text say how much of it the previous one already holds."""
    text, end = "", None
    for row in rows:
        piece, start = row["text"], row["char_start"]
        if end is None:
            text = piece
        elif start < end and len(piece) == row["char_end"] - start:
            text += piece[end - start:]
        else:
            text += "\n\n" + piece
        end = row["char_end"] if end is None else max(end, row["char_end"])
    return text


def widen(
    lib: Library,
    sources: Sequence[dict],
    *,
    count: Callable[[str], int],
    per_source: int,
    budget: int,
) -> list[Window | None]:
    """For each source (a dict with doc_id, chunk_index, section, text, char_start, char_end,
    page, page_end: `answers.source_dict`), its section window, or None where nothing was
    added. A source grows to at most `per_source` tokens (its own included, counted with
    `count`, the model's tokenizer); all additions together stay within `budget`."""
    usable = [s for s in sources if _placed(s)]
    claimed: dict[str, set[int]] = {}
    for s in usable:
        claimed.setdefault(s["doc_id"], set()).add(int(s["chunk_index"]))
    # every source's neighbourhood in one read of the library
    rows: dict[tuple[str, int], dict] = {}
    if budget > 0 and per_source > 0:
        spans = [(s["doc_id"], int(s["chunk_index"]) - REACH, int(s["chunk_index"]) + REACH)
                 for s in usable]
        rows = {(r["doc_id"], r["chunk_index"]): r for r in lib.chunk_windows(spans)}
    out: list[Window | None] = []
    for s in sources:
        own_size = count(s["text"])
        room = min(per_source - own_size, budget)
        if room <= 0 or not _placed(s):
            out.append(None)
            continue
        window = _grow(s, own_size, rows, claimed[s["doc_id"]], count, room)
        if window is not None:
            budget -= window.added_tokens
        out.append(window)
    return out


def _placed(source: dict) -> bool:
    """Whether a source says where it lies in its document (a found passage does)."""
    return bool(source.get("doc_id")) and source.get("chunk_index") is not None


def _grow(source: dict, own_size: int, rows: dict[tuple[str, int], dict], claimed: set[int],
          count, room: int) -> Window | None:
    doc_id, index = source["doc_id"], int(source["chunk_index"])
    own = rows.get((doc_id, index))
    if own is None or own["text"] != source["text"]:  # re-indexed since it was found
        return None
    section = own["section"] or ""
    picked = [own]  # its text is the source's (checked above), so own_size is its size
    size = own_size
    # after first: what follows a passage (the rest of an answer) is likelier to be wanted
    # than what precedes it, which the passage's heading and context line already sum up
    steps = {1: index + 1, -1: index - 1}
    while steps:
        for direction in (1, -1):
            nxt = steps.get(direction)
            if nxt is None:
                continue
            row = rows.get((doc_id, nxt))
            if row is None or nxt in claimed or (row["section"] or "") != section:
                del steps[direction]
                continue
            trial = sorted([*picked, row], key=lambda r: r["chunk_index"])
            # the tokens this passage adds beyond what its neighbour already holds
            trial_size = count(merge_passages(trial))
            if trial_size - own_size > room:
                del steps[direction]
                continue
            picked, size = trial, trial_size
            claimed.add(nxt)
            steps[direction] = nxt + direction
    if len(picked) == 1:
        return None
    pages = [p for r in picked for p in (r["page"], r["page_end"]) if p is not None]
    return Window(
        text=merge_passages(picked),
        page=min(pages) if pages else None,
        page_end=max(pages) if pages else None,
        added_tokens=size - own_size,
        passages=len(picked),
    )
