"""Where Folio keeps things: the default library, models, logs, and bundled resources."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from platformdirs import PlatformDirs

APP_NAME = "Folio"

_dirs = PlatformDirs(APP_NAME, appauthor=False)


def data_dir() -> Path:
    return Path(os.environ.get("FOLIO_HOME") or _dirs.user_data_dir)


def default_library() -> Path:
    """The library folder: --library beats FOLIO_LIBRARY beats the platform data folder."""
    env = os.environ.get("FOLIO_LIBRARY")
    return Path(env).expanduser() if env else data_dir() / "library"


def models_dir() -> Path:
    env = os.environ.get("FOLIO_MODELS")
    return Path(env).expanduser() if env else data_dir() / "models"


def log_dir() -> Path:
    return Path(os.environ.get("FOLIO_LOG_DIR") or _dirs.user_log_dir)


def resource_path(*parts: str) -> Path:
    """A file under resources/, from a source checkout, an install, or a PyInstaller bundle."""
    bundle = getattr(sys, "_MEIPASS", None)
    roots = [Path(bundle) / "resources"] if bundle else []
    roots.append(Path(__file__).resolve().parents[3] / "resources")  # app/core/base/paths.py
    roots.append(Path(sys.prefix) / "share" / "folio" / "resources")
    for root in roots:
        candidate = root.joinpath(*parts)
        if candidate.exists():
            return candidate
    return roots[0].joinpath(*parts)
