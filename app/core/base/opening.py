"""Which files the desktop may open for Folio, and which it must not.

Opening a file "in the default app" hands it to the system's opener (ShellExecute on Windows,
`open` on macOS, xdg-open on Linux), which *runs* what it decides is a program: a cited `.bat`,
`.cmd`, `.js`, `.ps1`, `.vbs` or `.py` (with Python installed) executes on Windows, a `.desktop`
or `.sh` may on Linux, an `.app` or `.command` on macOS. A library holds other people's files,
so Folio hands the desktop only document types that open in a viewer, by a list of what is
allowed (an unknown extension is not), and shows everything else in its own viewer or in its
folder. The window asks here; nothing here needs Qt, so the rule is tested on its own.
"""

from __future__ import annotations

import os
from pathlib import Path

# Documents whose default app shows them; nothing here is a script, a program or a shortcut.
# HTML is not here (a browser runs its scripts), nor CSV/TSV (a spreadsheet evaluates formulas
# in cells, DDE included), nor anything Folio reads as code.
DESKTOP_SAFE_EXTENSIONS = frozenset(
    {".pdf", ".epub", ".docx", ".txt", ".text", ".log", ".md", ".markdown", ".rst"}
)


def _suffixes(path: Path) -> list[str]:
    """The extensions the opener could go by: the name's, and the real file's behind a link.
    Windows drops trailing dots and spaces from a name ("run.bat." opens as run.bat), so
    those count as no extension, and so does an NTFS stream name ("a.pdf:x.bat")."""
    names = [path.name]
    try:
        real = path.resolve()
        if real.name != path.name:
            names.append(real.name)
    except (OSError, RuntimeError):  # a link loop: nothing safe to say about it
        names.append("")
    out = []
    for name in names:
        if ":" in name or name != name.rstrip(". "):
            out.append("")
        else:
            out.append(os.path.splitext(name)[1].lower())
    return out


def desktop_may_open(path: Path | str) -> bool:
    """Whether the file may be opened with the desktop's default app: a document type the
    system shows rather than runs (`DESKTOP_SAFE_EXTENSIONS`), under every name it has."""
    if not path:
        return False
    p = Path(path)
    if p.is_dir():
        return False  # a folder is revealed, never "opened" through the file's path
    return all(ext in DESKTOP_SAFE_EXTENSIONS for ext in _suffixes(p))


def not_opened_reason(path: Path | str) -> str:
    """Why a file is shown in Folio (or its folder) rather than opened by the desktop."""
    p = Path(path)
    kind = f"{p.suffix.lower()} file" if p.suffix else "file without a known extension"
    return (f"{p.name} is not opened with another app: a {kind} could run as a program "
            "rather than be shown. Folio shows it here; use Show in folder to reach the file.")
