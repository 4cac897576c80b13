"""File helpers more than one room needs: a file's sha256, and writing a small file so that a
crash or a power cut leaves either the old contents or the new, never an empty or half file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def sha256_file(path: Path | str) -> str:
    """The file's sha256 in hex, read in blocks (`hashlib.file_digest`), never whole."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def fsync_dir(folder: Path | str) -> None:
    """Make a rename in `folder` durable where the platform allows it (not on Windows, where
    a folder cannot be opened for fsync; NTFS journals the rename itself)."""
    if os.name == "nt":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomically(path: Path | str, data: str | bytes, *, encoding: str = "utf-8") -> Path:
    """Replace `path` with `data` so that no crash or power loss can leave it empty or torn:
    the bytes go to a temporary file beside it, which is flushed and fsynced, renamed over
    `path` (atomic on POSIX and Windows) and the rename made durable with an fsync of the
    folder. The temporary file is removed when anything fails, and the error raised."""
    path = Path(path)
    raw = data.encode(encoding) if isinstance(data, str) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path
