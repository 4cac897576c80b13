"""One place that opens what a session needs: the library, its chat store, the LLM runtime
and the chat engine. The CLI and the window both start here, so they behave the same.

Everything is opened lazily: listing documents never loads torch or a model.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from app.core.paths import default_library

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = 4096


class Folio:
    def __init__(
        self,
        library_path: Path | str | None = None,
        *,
        model_path: Path | str | None = None,
        n_ctx: int = DEFAULT_CONTEXT,
        n_gpu_layers: int | str = "auto",
        settings=None,
    ):
        self.library_path = Path(library_path) if library_path else default_library()
        self.model_path = Path(model_path).expanduser() if model_path else None
        self.n_ctx = n_ctx
        self.n_gpu_layers = n_gpu_layers
        self.settings = settings  # AppSettings for retrieval; None: the engine's defaults
        self._lock = threading.Lock()
        self._library = None
        self._store = None
        self._runtime = None
        self._engine = None

    @property
    def library(self):
        with self._lock:
            if self._library is None:
                from app.core.library import Library

                self._library = Library.open(self.library_path)
            return self._library

    @property
    def store(self):
        with self._lock:
            if self._store is None:
                from app.core.history import ChatStore

                self._store = ChatStore.for_library(self.library_path)
            return self._store

    @property
    def runtime(self):
        """The LLM runtime with the chosen model (the starter model by default) loaded."""
        with self._lock:
            if self._runtime is None:
                from app.core.llm import LLMRuntime, LoadSettings
                from app.core.models import default_model_path

                path = self.model_path or default_model_path()
                runtime = LLMRuntime()
                try:
                    runtime.load(path, LoadSettings(n_ctx=self.n_ctx,
                                                    n_gpu_layers=self.n_gpu_layers))
                except BaseException:
                    runtime.close()
                    raise
                self._runtime = runtime
            return self._runtime

    @property
    def chat(self):
        if self._engine is None:
            from app.core.chat import ChatEngine

            config = self.settings.chat_config() if self.settings is not None else None
            self._engine = ChatEngine(self.library, self.runtime, self.store, config=config)
        return self._engine

    def configure(self, settings) -> None:
        """Answer with these AppSettings' retrieval settings from the next question on, also
        when the engine is already open, so a change in Settings needs no restart."""
        self.settings = settings
        if self._engine is not None:
            self._engine.config = settings.chat_config()

    def close(self) -> None:
        with self._lock:
            if self._runtime is not None:
                self._runtime.close()
                self._runtime = None
            if self._store is not None:
                self._store.close()
                self._store = None
            self._engine = None
