"""A remote provider's embedder model as the library's embedder (`provider:NAME`; Settings
register the name with the index, app/core/settings.py, since they know the providers).

A provider in Settings may name an embedder model besides its chat model
(app/core/llm/remote.py, `ProviderConfig.embedder_model`). Choosing `provider:NAME` as the
embedder (Settings, or `folio reindex --embedder provider:NAME`) sends passages and queries to
`{base}/embeddings` instead of embedding them here. The library records the embedder as
`provider:NAME/MODEL`, so changing the provider's embedder model later is caught as a
mismatch (re-index) instead of mixing vectors from two models.

What cannot be asked of the server is stated rather than guessed: its tokenizer (passages are
counted with cl100k times `TOKEN_MARGIN`, as for remote chat) and its window (`WINDOW`
tokens, the smallest that OpenAI-compatible servers commonly take: llama.cpp's default batch,
the BERT-sized models vLLM and Ollama serve). The dimension is learnt from the first answer.
Vectors are normalised here, as the local embedder's are, so scores mean the same.
"""

from __future__ import annotations

import math
import threading

import numpy as np

from app.core.base.errors import RemoteError

PREFIX = "provider:"
WINDOW = 512  # tokens a passage may take (after the counting margin)
BATCH = 64  # passages per request


class RemoteEmbedder:
    """`Embedder` over a provider's `/embeddings` (the protocol of app/core/index/embedder.py)."""

    max_tokens = WINDOW

    def __init__(self, config, api_key: str | None, *, timeout: float = 120.0):
        from app.core.llm.remote import RemoteProvider

        self.config = config
        self.name = f"{PREFIX}{config.name}/{config.embedder_model}"
        self._provider = RemoteProvider(config, api_key, timeout=timeout)
        self._dims: int | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:  # never the key
        return f"RemoteEmbedder({self.name!r}, {self.config.base_url!r})"

    @property
    def dims(self) -> int:
        """The vectors' dimension: the server says it with its first answer (asked for here
        when nothing has been embedded yet)."""
        if self._dims is None:
            self._embed(["dimension"])
        return int(self._dims)

    def count_tokens(self, texts: list[str]) -> list[int]:
        from app.core.documents.tokens import encoding
        from app.core.llm.remote import TOKEN_MARGIN

        enc = encoding()
        return [math.ceil(len(enc.encode(t, disallowed_special=())) * TOKEN_MARGIN)
                for t in texts]

    def _embed(self, texts: list[str]) -> np.ndarray:
        parts = []
        for i in range(0, len(texts), BATCH):
            batch = texts[i:i + BATCH]
            rows = self._provider.embed(batch)
            if len(rows) != len(batch) or not rows or not rows[0]:
                raise RemoteError(f"The provider {self.config.name} sent {len(rows)} "
                                  f"embeddings for {len(batch)} texts.")
            block = np.asarray(rows, dtype=np.float32)
            if block.ndim != 2 or not np.isfinite(block).all():
                raise RemoteError(f"The provider {self.config.name} sent embeddings of "
                                  f"different lengths or with non-numbers in them.")
            with self._lock:
                if self._dims is None:
                    self._dims = block.shape[1]
            if block.shape[1] != self._dims:
                raise RemoteError(f"The provider {self.config.name}'s embedder gave "
                                  f"{block.shape[1]} dimensions where it gave {self._dims} "
                                  f"before: was its embedder model changed?")
            norms = np.linalg.norm(block, axis=1, keepdims=True)
            parts.append(block / np.where(norms > 0, norms, 1.0))
        return np.concatenate(parts) if parts else np.zeros((0, self._dims or 0), np.float32)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        return self._embed(list(texts))

    def embed_query(self, text: str) -> np.ndarray:
        return self._embed([text])[0]

    def close(self) -> None:
        self._provider.close()
