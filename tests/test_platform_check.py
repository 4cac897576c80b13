"""Before Qt tries its xcb plugin, Folio names the Debian packages of missing libraries.

The plugin here is a real shared object built for the test, linked against stand-ins for
libxcb-cursor.so.0 and libxcb-icccm.so.4 that are then removed: the dynamic linker really
cannot find them, as on a fresh Debian."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from app.ui import platform_check
from app.ui.platform_check import advice, check_window_libraries, missing_libraries, uses_xcb

needs_cc = pytest.mark.skipif(not shutil.which("cc"), reason="needs a C compiler")


def _plugin_needing(tmp_path, sonames):
    stubs = tmp_path / "stubs"
    stubs.mkdir()
    src = tmp_path / "x.c"
    src.write_text("int plugin_entry(void) { return 0; }\n")
    for so in sonames:
        subprocess.run(["cc", "-shared", "-fPIC", f"-Wl,-soname,{so}", "-o", stubs / so, src],
                       check=True)
    plugin = tmp_path / "libqxcb.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-Wl,--no-as-needed", "-o", plugin, src,
                    *[str(stubs / so) for so in sonames]], check=True)
    shutil.rmtree(stubs)
    return plugin


@needs_cc
def test_missing_libraries_are_found_with_the_dynamic_linker(tmp_path):
    plugin = _plugin_needing(tmp_path, ["libfolio-test-a.so.0", "libfolio-test-b.so.3"])
    assert missing_libraries(plugin) == ["libfolio-test-a.so.0", "libfolio-test-b.so.3"]


def test_advice_names_the_debian_packages():
    text = advice(["libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1",
                   "libfoo.so.9"])
    assert "sudo apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1" in text
    assert "libfoo.so.9" in text and "xcb" in text


@needs_cc
def test_folio_exits_1_with_the_packages_before_qt_aborts(tmp_path, monkeypatch, capsys):
    from app.cli import main

    # Stand-in names, so that the test does not depend on what this machine has installed.
    plugin = _plugin_needing(tmp_path, ["libfolio-test-icccm.so.4", "libfolio-test-keys.so.1"])
    monkeypatch.setattr(platform_check, "xcb_plugin", lambda: plugin)
    monkeypatch.setitem(platform_check.PACKAGES, "libfolio-test-icccm.so.4", "libxcb-icccm4")
    monkeypatch.setitem(platform_check.PACKAGES, "libfolio-test-keys.so.1", "libxcb-keysyms1")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":99")
    assert main([]) == 1
    err = capsys.readouterr().err
    assert "sudo apt-get install libxcb-icccm4 libxcb-keysyms1" in err
    assert "libfolio-test-icccm.so.4" in err


def test_the_check_passes_when_nothing_is_missing(tmp_path, monkeypatch):
    monkeypatch.setattr(platform_check, "missing_libraries", lambda: [])
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    assert check_window_libraries()


def test_only_the_xcb_platform_is_checked():
    assert uses_xcb({"DISPLAY": ":0"}, "linux")
    assert uses_xcb({"QT_QPA_PLATFORM": "xcb"}, "linux")
    assert not uses_xcb({"QT_QPA_PLATFORM": "offscreen", "DISPLAY": ":0"}, "linux")
    assert not uses_xcb({"QT_QPA_PLATFORM": "wayland"}, "linux")
    assert not uses_xcb({"WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert not uses_xcb({"DISPLAY": ":0"}, "win32")
