"""`ModelManager`, the model manager: it lists the GGUFs in the models folder with what their
headers say (`app.core.models.gguf`), adds, removes and downloads models (`download`), keeps
the default model and per-model settings, and estimates the memory a model needs (`fit`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.core.base.files import sha256_file, write_atomically
from app.core.base.paths import make_private_dir
from app.core.models.catalog import CatalogEntry, load_catalog
from app.core.models.download import DownloadDone, DownloadProgress, PartialDownload, _Download
from app.core.models.files import (
    READ_BLOCK,
    TEMP_SUFFIX,
    ModelError,
    check_model_name,
    default_models_dir,
    fsync_dir,
    list_models,
    os_reason,
    sidecar_for,
)
from app.core.models.fit import DEFAULT_BATCH, DEFAULT_CONTEXT, MemoryEstimate, estimate_memory
from app.core.models.gguf import cached_gguf_info
from app.core.models.starter import STARTER_MODEL_FILE, ensure_starter_model

if TYPE_CHECKING:
    from app.core.models.gguf import GGUFInfo

log = logging.getLogger(__name__)


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
        from app.core.base.paths import data_dir

        self.models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
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
        return self.models_dir / check_model_name(name)

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
        make_private_dir(self.state_path.parent)
        write_atomically(self.state_path, json.dumps(state, indent=2) + "\n")

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
        return ModelSettings.from_json(self._state()["models"].get(check_model_name(name)))

    def save_settings(self, name: str, s: ModelSettings) -> None:
        bad = s.problems()
        if bad:
            raise ModelError("; ".join(f"{k} {v}" for k, v in bad.items()))
        name = check_model_name(name)
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
        name = check_model_name(src.name)
        target = self.models_dir / name
        try:
            make_private_dir(self.models_dir)
        except OSError as exc:
            raise ModelError(f"Cannot create the models folder {self.models_dir}: {exc}") from exc
        if target.exists() or target.is_symlink():
            if target.exists() and os.path.samefile(src, target):
                return self.get(name)
            if (target.exists() and target.stat().st_size == src.stat().st_size
                    and sha256_file(target) == sha256_file(src)):
                return self.get(name)
            raise ModelError(
                f"A different model named {name} is already in {self.models_dir}; "
                "rename the file or remove the other one first"
            )
        if link:
            tmp = self.models_dir / f".{name}.{os.getpid()}.link{TEMP_SUFFIX}"
            try:
                tmp.unlink(missing_ok=True)
                os.symlink(src.resolve(), tmp)
                os.replace(tmp, target)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise ModelError(f"Cannot link {src} into {self.models_dir}: {exc}") from exc
        else:
            fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=TEMP_SUFFIX,
                                            dir=self.models_dir)
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as out, src.open("rb") as inp:
                    shutil.copyfileobj(inp, out, READ_BLOCK)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, target)
                fsync_dir(self.models_dir)
            except OSError as exc:
                tmp.unlink(missing_ok=True)
                raise ModelError(f"Could not copy {src.name} into {self.models_dir}: "
                                 f"{os_reason(exc)}") from exc
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
            raise ModelError(f"Cannot remove {path}: {os_reason(exc)}") from exc
        sidecar_for(path).unlink(missing_ok=True)
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
