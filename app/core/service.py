"""One place that opens what a session needs: the library, its chat store, the LLM runtime
and the chat engine. The CLI and the window both start here, so they behave the same.

Everything is opened lazily: listing documents never loads torch or a model.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from app.core.base.memory import limit_malloc_arenas
from app.core.base.paths import default_library, library_location, local_library_dir
from app.core.models.fit import DEFAULT_CONTEXT

log = logging.getLogger(__name__)



class Folio:
    """n_ctx and n_gpu_layers are the defaults for models without their own settings (the
    model manager's per-model settings win); load_overrides (LoadSettings fields, e.g. an
    explicit `--ctx` on the command line) win over both. model_path pins one model file;
    without it each chat uses its own model (the chat's `model`), else the default model."""

    def __init__(
        self,
        library_path: Path | str | None = None,
        *,
        model_path: Path | str | None = None,
        n_ctx: int = DEFAULT_CONTEXT,
        n_gpu_layers: int | str = "auto",
        settings=None,
        models_dir: Path | str | None = None,
        load_overrides: dict | None = None,
        allow_oversize: bool = False,
        provider=None,
        provider_key: str | None = None,
    ):
        # Before the embedder, LanceDB and the model start their threads: with glibc's default
        # arenas RSS climbed with every answer that searched (see app/core/base/memory.py).
        limit_malloc_arenas()
        self.library_path = library_location(library_path) if library_path else default_library()
        self.model_path = Path(model_path).expanduser() if model_path else None
        self.n_ctx = n_ctx
        self.n_gpu_layers = n_gpu_layers
        self.settings = settings  # AppSettings for retrieval; None: the engine's defaults
        # The reranker setting (index/rerank.py) where there are no settings (the command
        # line reads only that one of the user's settings); None: the settings' or "auto".
        self.reranker_choice: str | None = None
        self.models_dir = Path(models_dir) if models_dir else None
        self.load_overrides = dict(load_overrides or {})
        self.allow_oversize = allow_oversize
        self.model_listeners: list = []  # called with ModelInfo after every (re)load
        self._lock = threading.RLock()
        # Held by whatever writes a batch to the library in this process (the window's ingest
        # jobs, the watched folders' batches), so two never interleave on the same files.
        self.write_lock = threading.RLock()
        self._open_locks = {n: threading.RLock()
                            for n in ("library", "store", "models", "mcp")}
        self._library = None
        # False: the library must be writable here (LibraryLocked when another process has
        # it); None: fall back to read-only (CLI read commands such as ask), see lock.py.
        self.library_read_only: bool | None = False
        self._store = None
        self._runtime = None
        self._engine = None
        self._prompts = None
        self._models = None
        self._model_path: Path | None = None  # the file loaded now
        self._model_settings = None
        self._mcp = None  # McpTools: the MCP servers' tools, started on first use
        self._mcp_config: list = []
        # A remote provider (app/core/llm/remote.py ProviderConfig) answers instead of a local
        # model when set; provider_key None: the key from the keyring (or this session's).
        self.provider = provider
        self.provider_key = provider_key
        # The provider chats answer with unless they chose a model of their own (Settings'
        # "New chats answer with", or --provider: `provider_pinned` then beats every chat's).
        self.default_provider = provider
        self.default_provider_key = provider_key
        self.provider_pinned = provider is not None

    @property
    def library(self):
        if self._library is not None:
            return self._library
        with self._open_locks["library"]:
            if self._library is None:
                from app.core.index.library import Library

                self._library = Library.open(self.library_path,
                                             read_only=self.library_read_only,
                                             new_embedder=self.wanted_embedder())
            return self._library

    def wanted_embedder(self) -> str | None:
        """The embedder Settings choose (a name or a model folder), None without settings.
        A new library is built with it; an existing one keeps its own until re-indexed."""
        choice = getattr(self.settings, "embedder", None)
        return choice.strip() if isinstance(choice, str) and choice.strip() else None

    def embedder_mismatch(self) -> tuple[str, str] | None:
        """(the embedder that built the library, the one Settings choose) when they differ;
        None when they agree or Settings choose none. Opens the library."""
        wanted = self.wanted_embedder()
        if not wanted:
            return None
        from app.core.index.embedder import embedder_name

        try:
            name = embedder_name(wanted)
        except ValueError:
            name = wanted
        built = self.library.embedder_name
        return (built, name) if built != name else None

    def reindex(self, embedder_source: str | None = None, *, options=None, cancel=None,
                summary=None):
        """Embed every document again, with `embedder_source` (a name or a folder; default:
        the one Settings choose, else the library's own): the library's vectors are dropped
        and each file is read again. A generator of ingest events, like `ingest`."""
        from app.core.index.embedder import ready_embedder_name
        from app.core.index.ingest import IngestOptions, ingest

        lib = self.library
        source = (embedder_source or self.wanted_embedder()
                  or lib.meta.get("embedder_source") or lib.embedder_name)
        ready_embedder_name(source)  # unknown, missing or unreachable: before anything drops
        paths = lib.reset_for_embedder(source)
        opts = options or IngestOptions()
        opts.force = True
        return (yield from ingest(lib, paths, opts, cancel=cancel, summary=summary))

    @property
    def store(self):
        if self._store is not None:
            return self._store
        with self._open_locks["store"]:
            if self._store is None:
                from app.core.chat.history import ChatStore

                self._store = ChatStore.for_library(local_library_dir(self.library_path))
            return self._store

    @property
    def models(self):
        """The model manager; it counts chats per model from this library's chat store."""
        if self._models is not None:
            return self._models
        with self._open_locks["models"]:
            if self._models is None:
                from app.core.models.manager import ModelManager

                self._models = ModelManager(self.models_dir, history=self._StoreView(self))
            return self._models

    class _StoreView:
        """Opens the chat store only when the manager counts chats."""

        def __init__(self, folio: Folio) -> None:
            self.folio = folio

        def model_usage(self) -> dict[str, int]:
            return self.folio.store.model_usage()

    @property
    def model_name(self) -> str | None:
        """The file name of the loaded model (None before the first load); for a remote
        provider, its model's name."""
        if self.provider is not None:
            return self.provider.model
        return self._model_path.name if self._model_path else None

    def use_provider(self, provider, key: str | None = None):
        """Answer with this remote provider (a ProviderConfig) from the next question on, or
        with the local model again (None): chats that chose a model of their own keep it
        (`_prepare_for_chat`). Nothing is sent until a question is asked."""
        with self._lock:
            self.default_provider, self.default_provider_key = provider, key
            return self._switch_provider(provider, key)

    def use_chat_provider(self, name: str):
        """Answer with the provider called `name` (Settings), its key from the keyring or this
        session; for a chat that chose it. UnknownProvider when Settings have no such one."""
        from app.core.llm.remote import UnknownProvider, get_key

        with self._lock:
            if self.provider is not None and self.provider.name == name:
                return self._remote().info
            if self.settings is None:  # the command line: its --provider says which
                raise UnknownProvider(f"This chat answers with the provider {name}: choose "
                                      f"it with --provider {name}.")
            config = self.settings.find_provider(name)
            if self.default_provider is not None and self.default_provider.name == name:
                key = self.default_provider_key
            else:
                key = get_key(name)
            return self._switch_provider(config, key)

    def _switch_provider(self, provider, key: str | None):
        with self._lock:
            if provider is None and self.provider is None:  # local already: keep the model
                return None
            if provider is not None and provider == self.provider \
                    and key == self.provider_key and self._runtime is not None:
                return self._remote().info
            if self._runtime is not None:
                self._runtime.close()
                self._runtime = None
            self._model_path = None
            self._model_settings = None
            self.provider = provider
            self.provider_key = key
            if provider is None:
                return None
            return self._remote().info

    def _remote(self):
        """The remote provider as the runtime, made and "loaded" (no request). Lock held."""
        from app.core.llm.remote import RemoteProvider, get_key

        if self._runtime is None:
            key = self.provider_key if self.provider_key is not None else get_key(
                self.provider.name)
            self._runtime = RemoteProvider(self.provider, key)
            if self._engine is not None:  # the chat answers through the new one
                self._engine.llm = self._runtime
        if self._runtime.info is None:
            info = self._runtime.load()
            if self._engine is not None:
                self._engine.system_prompt = None
            for listener in list(self.model_listeners):
                try:
                    listener(info)
                except Exception:  # a listener must not break loading
                    log.exception("model listener failed")
        return self._runtime

    def load_settings_for(self, path: Path, allow_oversize: bool | None = None):
        """LoadSettings for a model file: Folio's defaults, then the model's own settings
        (when it is in the models folder), then load_overrides. allow_oversize None: this
        Folio's own (the CLI's --allow-oversize); True: this load only ("Load anyway")."""
        from app.core.llm.provider import LoadSettings

        ms = self.models.settings_for(path.name) if self._in_models_dir(path) else None
        values: dict = {"n_ctx": self.n_ctx, "n_gpu_layers": self.n_gpu_layers}
        if ms is not None:
            if ms.context_length is not None:
                values["n_ctx"] = ms.context_length
            if ms.gpu_layers is not None:
                values["n_gpu_layers"] = ms.gpu_layers
            if ms.threads is not None:
                values["threads"] = ms.threads
            if ms.batch_size is not None:
                values["batch_size"] = ms.batch_size
            if ms.chat_template:
                values["chat_template"] = ms.chat_template
        values["allow_oversize"] = self.allow_oversize
        values.update(self.load_overrides)
        if allow_oversize is not None:
            values["allow_oversize"] = allow_oversize
        return LoadSettings(**values), ms

    def _in_models_dir(self, path: Path) -> bool:
        try:
            return path.parent.resolve() == self.models.models_dir.resolve()
        except OSError:
            return False

    def _wanted_path(self, chat_model: str | None = None) -> Path:
        if self.model_path is not None:
            return self.model_path
        models = self.models
        if chat_model:
            path = models.path_for(chat_model)
            if path.is_file():
                return path
            log.warning("The chat's model %s is gone; using the default model", chat_model)
        return models.default_path()

    def _load(self, path: Path, allow_oversize: bool | None = None):
        """Load `path` into the runtime (creating it), applying its settings. Lock held.
        The model runs in a child process (app/core/llm/host.py): a crash in llama.cpp
        ends that process, never this one."""
        from app.core.llm.host import ModelHost

        load, ms = self.load_settings_for(path, allow_oversize)
        runtime = self._runtime
        fresh = runtime is None
        if fresh:
            runtime = ModelHost()
        try:
            info = runtime.load(path, load)
        except BaseException:
            if fresh:
                runtime.close()
            else:
                self._model_path = None
            raise
        self._runtime = runtime
        if self._engine is not None:  # after a provider, the chat answers locally again
            self._engine.llm = runtime
        self._model_path = path
        self._model_settings = ms
        if self._engine is not None:
            self._engine.system_prompt = ms.system_prompt if ms else None
        for listener in list(self.model_listeners):
            try:
                listener(info)
            except Exception:  # a listener must not break loading
                log.exception("model listener failed")
        return runtime

    @property
    def runtime(self):
        """The LLM runtime with the chosen model loaded (the pinned model_path, else the
        default model: the starter model unless the user chose another)."""
        with self._lock:
            if self.provider is not None:
                return self._remote()
            if self._runtime is None or self._runtime.info is None:
                self._load(self._wanted_path())
            return self._runtime

    def use_model(self, name_or_path: str | Path | None = None, *,
                  allow_oversize: bool | None = None):
        """Load another model (a name in the models folder or a path; None: the default)
        with its settings, if it is not the one loaded. Returns its ModelInfo.
        allow_oversize=True loads it even when the memory estimate says it will not fit."""
        with self._lock:
            if self.provider is not None:  # back to a local model
                self._switch_provider(None, None)
            if name_or_path is None:
                path = self.models.default_path()
            elif isinstance(name_or_path, Path) or "/" in str(name_or_path):
                path = Path(name_or_path).expanduser()
            else:
                path = self.models.path_for(str(name_or_path))
            if self._runtime is None or self._runtime.info is None or path != self._model_path:
                self._load(path, allow_oversize)
            return self._runtime.info

    def reload_model(self, *, allow_oversize: bool | None = None):
        """Load the current model again, e.g. after its settings changed (the model chats
        use when none is loaded)."""
        with self._lock:
            if self.provider is not None:
                return self._remote().info
            path = self._model_path or self._wanted_path()
            self._load(path, allow_oversize)
            return self._runtime.info

    def unload_model(self, name: str | None = None) -> bool:
        """Free the loaded model (only if it is `name`, when given). True if one was freed."""
        with self._lock:
            if self._runtime is None or self._runtime.info is None:
                return False
            if name is not None and self.model_name != name:
                return False
            self._runtime.unload()
            self._model_path = None
            return True

    def remove_model(self, name: str) -> None:
        """Remove a model from the models folder, unloading it first if it is in use."""
        self.unload_model(name)
        self.models.remove(name)

    def _prepare_for_chat(self, chat) -> None:
        """Before answering in a chat: load the chat's model (a model file, or a provider as
        `provider:NAME`), else the default one (Settings' provider, else the default model
        file), and remember on the chat which model it uses. --provider and --model (the
        command line's) beat the chat's choice."""
        from app.core.llm.remote_embedder import PREFIX

        chosen = chat.model or ""
        with self._lock:
            if self.provider_pinned:
                self._remote()
                return
            if chosen.startswith(PREFIX):
                self.use_chat_provider(chosen[len(PREFIX):])
                return
            if not chosen and self.default_provider is not None:
                self._switch_provider(self.default_provider, self.default_provider_key)
                self.store.update_chat(chat.id, model=PREFIX + self.default_provider.name)
                return
            if self.provider is not None:  # this chat answers with a model file
                self._switch_provider(None, None)
        if self.model_path is not None:
            return
        with self._lock:
            path = self._wanted_path(chat.model)
            if self._runtime is None or self._runtime.info is None or path != self._model_path:
                self._load(path)
        if not chat.model and self._in_models_dir(path):
            self.store.update_chat(chat.id, model=path.name)

    @property
    def prompts(self):
        """The prompt templates the chat engine renders; the Settings dialog edits and shows
        the errors of this same set, so a template that fails while answering is reported
        where it is edited."""
        if self._prompts is None:
            from app.core.chat.prompts import PromptSet

            self._prompts = PromptSet()
        return self._prompts

    @property
    def chat(self):
        if self._engine is None:
            engine = self.engine_for(self.store)
            engine.before_answer = self._prepare_for_chat
            self._engine = engine
        return self._engine

    @property
    def system_prompt(self) -> str | None:
        """The loaded model's own system prompt (a per-model setting), None without one."""
        ms = self._model_settings
        return ms.system_prompt if ms else None

    def reranker(self):
        """The reranking stage the settings choose (index/rerank.py): an installed
        cross-encoder, or None (off, or none installed)."""
        from app.core.index import rerank

        return rerank.find(self._reranker_setting())

    def _reranker_setting(self) -> str:
        if self.reranker_choice:
            return self.reranker_choice
        return self.settings.reranker if self.settings is not None else "auto"

    def engine_for(self, store):
        """A chat engine on this library, model host, prompts and retrieval settings that
        keeps its chats in `store`. `chat` is the one over the library's own chat store; the
        local server (app/server/) makes one over a scratch store, because its clients'
        conversations are not the user's chats. Its before_answer is the caller's to set."""
        from dataclasses import replace

        from app.core.chat.answers import ChatConfig, ChatEngine

        config = self.settings.chat_config() if self.settings is not None else ChatConfig()
        config = replace(config, reranker=self._reranker_setting())
        engine = ChatEngine(self.library, self.runtime, store, config=config,
                            prompts=self.prompts)
        engine.system_prompt = self.system_prompt
        return engine

    def configure(self, settings) -> None:
        """Answer with these AppSettings' retrieval settings from the next question on, also
        when the engine is already open, so a change in Settings needs no restart."""
        self.settings = settings
        if self._engine is not None:
            self._engine.config = settings.chat_config()

    def mcp_tools(self):
        """The tools of the MCP servers in settings (`mcp_servers`), for the chat's
        ToolRunner beside the built-ins: `.tools`, and `.problems` (a server that would not
        start, a clashing name). The servers start on first use (slow: call it off the GUI
        thread) and run until `close()`, until Settings change the list, or until one of them
        crashes: then they are started again for the next question."""
        from app.core.tools.mcp_source import load_sources

        wanted = list(getattr(self.settings, "mcp_servers", None) or [])
        with self._open_locks["mcp"]:
            if self._mcp is not None and (wanted != self._mcp_config or not self._mcp.alive):
                self._mcp.close()
                self._mcp = None
            if self._mcp is None:
                self._mcp = load_sources(wanted, taken=("search_library", "calculator"))
                self._mcp_config = wanted
            return self._mcp

    def close(self) -> None:
        with self._open_locks["mcp"]:
            if self._mcp is not None:
                self._mcp.close()
                self._mcp = None
        with self._lock:
            if self._runtime is not None:
                self._runtime.close()
                self._runtime = None
            if self._store is not None:
                self._store.close()
                self._store = None
            self._engine = None
            self._model_path = None
        with self._open_locks["library"]:
            if self._library is not None:
                # Release the write lock now, not whenever the object is collected: another
                # Folio (a CLI command, a second window) may open the library right after.
                self._library.close()
                self._library = None
