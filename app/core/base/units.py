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


def human_date(timestamp: float | None, now: float | None = None) -> str:
    """A date as people read it in a list: "today 14:02", "yesterday 09:15", "3 Dec" this
    year, "3 Dec 2025" before; "" for none. Local time."""
    import time

    if not timestamp:
        return ""
    now = time.time() if now is None else now
    when, today = time.localtime(timestamp), time.localtime(now)
    days = (time.mktime(today[:3] + (0, 0, 0, 0, 0, -1))
            - time.mktime(when[:3] + (0, 0, 0, 0, 0, -1)))
    days = round(days / 86400)
    if days == 0:
        return f"today {when.tm_hour:02d}:{when.tm_min:02d}"
    if days == 1:
        return f"yesterday {when.tm_hour:02d}:{when.tm_min:02d}"
    month = ("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split())[when.tm_mon - 1]
    if when.tm_year == today.tm_year:
        return f"{when.tm_mday} {month}"
    return f"{when.tm_mday} {month} {when.tm_year}"
