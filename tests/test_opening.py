"""Opening a source never runs it: the Qt-free rule the window follows before it hands a file
to the desktop's default app (app/core/base/opening.py)."""

from __future__ import annotations


import pytest

from app.core.base.opening import (
    DESKTOP_SAFE_EXTENSIONS,
    desktop_may_open,
    not_opened_reason,
)

RUNNABLE = (".bat .cmd .js .jse .ps1 .psm1 .py .pyw .sh .bash .exe .vbs .vbe .wsf .wsh .jar "
            ".msi .com .scr .pif .hta .lnk .url .desktop .command .app .reg .cpl .html .htm "
            ".svg .csv .tsv .docm .xlsm .iso .appimage .run").split()


@pytest.mark.parametrize("ext", RUNNABLE)
def test_scripts_and_programs_are_never_handed_to_the_desktop(tmp_path, ext):
    for name in (f"report{ext}", f"REPORT{ext.upper()}", f"report.pdf{ext}"):
        path = tmp_path / name
        path.write_text("echo pwned\n")
        assert not desktop_may_open(path), name
        reason = not_opened_reason(path)
        assert name in reason and "could run" in reason


@pytest.mark.parametrize("name", ["manual.pdf", "Manual.PDF", "book.epub", "letter.docx",
                                  "notes.txt", "README.md", "guide.rst", "server.log"])
def test_documents_open_in_their_default_app(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"text")
    assert desktop_may_open(path)


@pytest.mark.parametrize("name", [
    "run.bat.",  # Windows drops the trailing dot: it runs as run.bat
    "run.pdf.",
    "run.pdf ",  # and trailing spaces
    "notes",  # no extension: the system guesses from the content
    ".bashrc",
])
def test_names_windows_rewrites_or_leaves_to_guessing_are_refused(tmp_path, name):
    assert not desktop_may_open(tmp_path / name)
    assert not desktop_may_open(f"C:\\docs\\a.pdf:{name or 'x'}.bat")  # an NTFS stream name


def test_a_link_is_judged_by_what_it_points_at(tmp_path):
    script = tmp_path / "install.bat"
    script.write_text("format c:\n")
    disguised = tmp_path / "invoice.pdf"
    disguised.symlink_to(script)
    assert not desktop_may_open(disguised)
    document = tmp_path / "real.pdf"
    document.write_bytes(b"%PDF-1.7")
    link = tmp_path / "shortcut.pdf"
    link.symlink_to(document)
    assert desktop_may_open(link)


def test_folders_and_empty_paths_are_not_opened(tmp_path):
    folder = tmp_path / "papers.pdf"
    folder.mkdir()
    assert not desktop_may_open(folder) and not desktop_may_open("")


def test_the_allowed_list_holds_documents_only():
    assert DESKTOP_SAFE_EXTENSIONS.isdisjoint(RUNNABLE)
    assert all(ext.startswith(".") and ext == ext.lower() for ext in DESKTOP_SAFE_EXTENSIONS)
