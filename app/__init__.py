"""Folio: chat with your own documents, entirely on your own machine."""

import os


def _read_version() -> str:
    """pyproject.toml is the one place the version is written. Installed (also editable, and
    inside the PyInstaller bundle, whose spec copies folio's dist-info) it comes from the
    package metadata; in a source tree that was never installed, from pyproject.toml."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("folio")
    except PackageNotFoundError:
        pass
    import tomllib
    from pathlib import Path

    try:
        with open(Path(__file__).resolve().parents[1] / "pyproject.toml", "rb") as f:
            return str(tomllib.load(f)["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0+unknown"


__version__ = _read_version()

# PyMuPDF 2 loads an ONNX layout model through onnxruntime, whose telemetry looks up
# mobile.events.data.microsoft.com a few seconds later (found by tests/test_network.py under
# strace). Folio makes no network connection the user did not ask for: switch it off before
# anything can import onnxruntime.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

# Cap glibc's malloc arenas before any library starts allocating threads (torch, LanceDB,
# llama.cpp, Qt's pools): with the default arenas RSS climbed with every answer that searched.
# Every entry point (the window, the CLI, the packaged app) imports this package first.
from app.core.base.memory import limit_malloc_arenas  # noqa: E402

limit_malloc_arenas()
