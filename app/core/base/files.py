"""File helpers more than one room needs."""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path | str) -> str:
    """The file's sha256 in hex, read in blocks (`hashlib.file_digest`), never whole."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
