"""Each test gets its own Folio home and library; models load from local paths only."""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("RUST_LOG", "error")
os.environ.setdefault("LANCE_LOG", "error")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


SHARED_MODELS = Path(os.environ.get("FOLIO_TEST_MODELS",
                                    Path.home() / ".cache" / "folio-test-models"))


@pytest.fixture(scope="session")
def starter_model() -> Path:
    """The real starter GGUF (Gemma 3 270M), assembled and verified once."""
    from app.core.models.starter import ensure_starter_model

    return ensure_starter_model(SHARED_MODELS)


@pytest.fixture(scope="session")
def llm(starter_model):
    """One real llama.cpp runtime on the starter model for the whole session."""
    from app.core.llm.runtime import LLMRuntime
    from app.core.llm.provider import LoadSettings

    runtime = LLMRuntime()
    runtime.load(starter_model, LoadSettings(n_ctx=2048))
    yield runtime
    runtime.close()


@pytest.fixture(autouse=True)
def folio_home(tmp_path_factory, monkeypatch):
    """Never touch the user's real data: FOLIO_HOME, library and logs live in a temp dir."""
    home = tmp_path_factory.mktemp("folio-home")
    monkeypatch.setenv("FOLIO_HOME", str(home))
    monkeypatch.setenv("FOLIO_LIBRARY", str(home / "library"))
    monkeypatch.setenv("FOLIO_LOG_DIR", str(home / "logs"))
    # The starter model is assembled once per machine, not once per test's home.
    monkeypatch.setenv("FOLIO_MODELS", str(SHARED_MODELS))
    return home


@pytest.fixture(scope="session")
def embedder():
    """The real all-MiniLM-L6-v2, loaded once per test session."""
    from app.core.index.embedder import get_embedder

    return get_embedder()


class HashEmbedder:
    """A deterministic stand-in for unit tests of storage logic: bag-of-words hashed into
    a small vector, so texts that share words are near each other. Integration tests use the
    real model (see the `embedder` fixture)."""

    name = "hash-test-embedder"
    dims = 64
    max_tokens = 254

    def count_tokens(self, texts):
        return [len(t.split()) for t in texts]

    def _vec(self, text: str) -> np.ndarray:
        v = np.zeros(self.dims, dtype=np.float32)
        for word in text.lower().split():
            h = int(hashlib.md5(word.strip(".,;:!?").encode()).hexdigest(), 16)
            v[h % self.dims] += 1.0
        n = np.linalg.norm(v)
        return v / n if n else v

    def embed_documents(self, texts):
        return np.stack([self._vec(t) for t in texts]) if texts else np.zeros((0, self.dims))

    def embed_query(self, text):
        return self._vec(text)


@pytest.fixture
def hash_embedder():
    return HashEmbedder()


@pytest.fixture
def library_dir(tmp_path):
    return tmp_path / "library"
