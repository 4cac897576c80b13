"""How sizes, durations and page numbers read in the window, the CLI and exported chats:
one format everywhere."""

from __future__ import annotations


def human_bytes(n: float | None) -> str:
    """1536 -> '2 KB', 3.5 * 2**30 -> '3.5 GB'; None -> '–'."""
    if n is None:
        return "–"
    n = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def human_duration(seconds: float | None) -> str:
    """A time left: '42 s', '3 min 07 s', '1 h 05 min'; None (not known yet) -> '–'."""
    if seconds is None:
        return "–"
    seconds = max(0, round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"


def page_label(page: int | None, page_end: int | None = None) -> str:
    """Where a passage is: 'p. 3', 'pp. 3–5'; '' when the file has no pages (DOCX, text)."""
    if not page:
        return ""
    return f"pp. {page}–{page_end}" if page_end and page_end != page else f"p. {page}"
