"""Where Folio keeps things: the default library, models, logs, and bundled resources."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from platformdirs import PlatformDirs

APP_NAME = "Folio"

_dirs = PlatformDirs(APP_NAME, appauthor=False)


PRIVATE_DIR_MODE = 0o700  # the owner reads, writes and enters; nobody else


def make_private_dir(path: Path | str) -> Path:
    """Create the folder `path`, and each missing folder above it, readable by its owner only
    (0o700 on POSIX, whatever the umask; on Windows a new folder inherits the ACL of the
    user's profile, which is the owner's already). Documents, chats, models and logs are the
    user's own: another account on the machine must not browse them. A folder that exists
    already is left as it is: one the user chose and shares is theirs to share."""
    path = Path(path).expanduser()
    missing = []
    here = path
    while not os.path.lexists(here) and here.parent != here:
        missing.append(here)
        here = here.parent
    for folder in reversed(missing):
        try:
            os.mkdir(folder, PRIVATE_DIR_MODE)
        except FileExistsError:
            continue  # made meanwhile by another thread or process: theirs to set
        if os.name != "nt":
            os.chmod(folder, PRIVATE_DIR_MODE)  # mkdir's mode passes through the umask
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a folder")
    return path


def data_dir() -> Path:
    return Path(os.environ.get("FOLIO_HOME") or _dirs.user_data_dir)


def default_library() -> Path | str:
    """The library folder: --library beats FOLIO_LIBRARY beats the platform data folder."""
    env = os.environ.get("FOLIO_LIBRARY")
    return library_location(env) if env else data_dir() / "library"


def library_location(value: Path | str) -> Path | str:
    """A library folder as a Path, or an `s3://bucket/prefix` URI kept as a string (a Path
    would fold its "//")."""
    if isinstance(value, str) and value.startswith("s3://"):
        return value.rstrip("/")
    return Path(value).expanduser()


def local_library_dir(library: Path | str) -> Path:
    """Where a library's local files (chat history) live: the folder itself, or for an
    s3:// library a folder in the app data folder named by a hash of the URI."""
    if isinstance(library, str) and library.startswith("s3://"):
        import hashlib

        digest = hashlib.sha256(library.rstrip("/").encode("utf-8")).hexdigest()[:16]
        return data_dir() / "remote-libraries" / digest
    return Path(library)


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
