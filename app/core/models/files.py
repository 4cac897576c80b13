"""Model files on disk: `ModelError`, what a GGUF file looks like from outside, the models
folder's listing, and the `.sha256` sidecars that vouch for a verified file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from app.core.base.files import fsync_dir  # noqa: F401  (models import it from here)

log = logging.getLogger(__name__)


GGUF_MAGIC = b"GGUF"
SIDECAR_SUFFIX = ".sha256"
TEMP_SUFFIX = ".partial"
_STALE_TEMP_SECONDS = 15 * 60  # an assembly in progress writes continuously; older is a crash
READ_BLOCK = 4 * 1024 * 1024

class ModelError(Exception):
    """A model file is missing, corrupt, not a GGUF, or llama.cpp refused to load it."""


def is_gguf(path: Path) -> bool:
    """True when the file starts with the GGUF magic (cheap; says nothing about the rest)."""
    try:
        with Path(path).open("rb") as f:
            return f.read(4) == GGUF_MAGIC
    except OSError:
        return False


def list_models(models_dir: Path | None = None) -> list[Path]:
    """The .gguf files in the models folder, sorted by name (temporary files are not listed)."""
    folder = Path(models_dir) if models_dir is not None else default_models_dir()
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("*.gguf") if p.is_file() and not p.name.startswith(".")]
    return sorted(found, key=lambda p: (p.name.lower(), p.name))


def default_models_dir() -> Path:
    from app.core.base.paths import models_dir

    return models_dir()

def sidecar_for(target: Path) -> Path:
    return target.with_name(target.name + SIDECAR_SUFFIX)


def sidecar_vouches(target: Path, sidecar: Path, expected_sha: str) -> bool:
    """The sidecar names the expected hash and was written after the file last changed."""
    try:
        digest = sidecar.read_text(encoding="ascii").split()[0].lower()
        return (
            digest == expected_sha and sidecar.stat().st_mtime_ns >= target.stat().st_mtime_ns
        )
    except (OSError, IndexError, UnicodeDecodeError):
        return False


def write_sidecar(sidecar: Path, digest: str, filename: str) -> None:
    """sha256sum format, so `sha256sum -c` works too. Best effort: without it we just re-hash."""
    tmp = sidecar.with_name(f".{sidecar.name}.{os.getpid()}{TEMP_SUFFIX}")
    try:
        tmp.write_text(f"{digest}  {filename}\n", encoding="ascii")
        os.replace(tmp, sidecar)
    except OSError as exc:
        log.warning("Could not write %s: %s", sidecar, exc)
        tmp.unlink(missing_ok=True)


def os_reason(exc: OSError) -> str:
    import errno

    if exc.errno == errno.ENOSPC:
        return "the disk is full"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or str(exc)


def check_model_name(name: str) -> str:
    name = name.strip()
    if (not name or name != Path(name).name or name.startswith(".") or "/" in name
            or "\\" in name or "\x00" in name):
        raise ModelError(f"{name!r} is not a valid model file name")
    if not name.lower().endswith(".gguf"):
        name += ".gguf"
    return name
