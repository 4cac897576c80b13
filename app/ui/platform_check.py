"""Before Qt loads its xcb plugin: are the system libraries it needs there?

A fresh Debian or Ubuntu lacks some (libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1...), and Qt
then aborts with "Could not load the Qt platform plugin xcb", naming no package. So Folio asks
the dynamic linker first (ldd on the plugin itself, inside a bundle too) and, when something is
missing, prints the Debian/Ubuntu packages to install and exits 1.

Imports nothing of Qt's widgets; QtCore is only asked where its plugins lie.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

# The soname the xcb plugin (or a library it loads) asks for -> the Debian/Ubuntu package.
PACKAGES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libEGL.so.1": "libegl1",
    "libGL.so.1": "libgl1",
    "libOpenGL.so.0": "libopengl0",
    "libGLX.so.0": "libglx0",
    "libfontconfig.so.1": "libfontconfig1",
    "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libgthread-2.0.so.0": "libglib2.0-0",
    "libICE.so.6": "libice6",
    "libSM.so.6": "libsm6",
}
_NOT_FOUND = re.compile(r"^\s*(\S+)\s+=>\s+not found", re.M)


def uses_xcb(environ: dict | None = None, platform: str | None = None) -> bool:
    """Whether Qt will try its xcb plugin: Linux, and QT_QPA_PLATFORM unset or xcb (Qt 6
    prefers wayland only when asked, or in a Wayland session with no X display)."""
    env = os.environ if environ is None else environ
    if not (platform or sys.platform).startswith("linux"):
        return False
    wanted = env.get("QT_QPA_PLATFORM", "").split(";")[0].split(":")[0].strip()
    if wanted:
        return wanted == "xcb"
    return bool(env.get("DISPLAY")) or not env.get("WAYLAND_DISPLAY")


def xcb_plugin() -> Path | None:
    try:
        from PySide6.QtCore import QLibraryInfo
    except ImportError:
        return None
    folder = Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.PluginsPath)) / "platforms"
    plugin = folder / "libqxcb.so"
    return plugin if plugin.is_file() else None


def missing_libraries(plugin: Path | None = None) -> list[str]:
    """The sonames the dynamic linker cannot find for the xcb plugin (empty: all there, or
    nothing to check with)."""
    plugin = plugin or xcb_plugin()
    ldd = shutil.which("ldd") or ("/usr/bin/ldd" if os.path.exists("/usr/bin/ldd") else None)
    if plugin is None or ldd is None:
        return []
    try:
        out = subprocess.run([ldd, str(plugin)], capture_output=True, text=True, timeout=20,
                             errors="replace").stdout
    except (OSError, subprocess.SubprocessError):
        return []
    missing: list[str] = []
    for name in _NOT_FOUND.findall(out):
        if name not in missing:
            missing.append(name)
    return missing


def advice(missing: list[str]) -> str:
    """What to tell the user: the packages, as one apt-get line, and any unknown sonames."""
    packages = sorted({PACKAGES[m] for m in missing if m in PACKAGES})
    unknown = [m for m in missing if m not in PACKAGES]
    lines = ["folio: the window cannot open: Qt's X11 (xcb) plugin needs system libraries "
             "that are missing: " + ", ".join(missing) + "."]
    if packages:
        lines.append("On Debian or Ubuntu, install them with:")
        lines.append("    sudo apt-get install " + " ".join(packages))
    if unknown:
        lines.append("Also install the package that provides: " + ", ".join(unknown) + ".")
    lines.append("The folio command-line tools work without them (folio --help).")
    return "\n".join(lines)


def check_window_libraries(stream=None) -> bool:
    """True when the window can try to open; else prints the advice and returns False."""
    if not uses_xcb():
        return True
    missing = missing_libraries()
    if not missing:
        return True
    print(advice(missing), file=stream or sys.stderr)
    return False


def missing_packages() -> list[str]:
    """The Debian/Ubuntu packages to install before the window can open here (empty when
    nothing is missing, or when Qt will not use xcb, or there is no X display to open on)."""
    env = os.environ
    if not uses_xcb() or not (env.get("DISPLAY") or env.get("QT_QPA_PLATFORM", "") == "xcb"):
        return []
    return sorted({PACKAGES[m] for m in missing_libraries() if m in PACKAGES})


if __name__ == "__main__":  # `make run`: python -m app.ui.platform_check --missing-packages
    if sys.argv[1:] == ["--missing-packages"]:
        print(" ".join(missing_packages()))
    else:
        sys.exit(0 if check_window_libraries() else 1)
