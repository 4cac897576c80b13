"""A second ranking stage: a cross-encoder reads the question beside each of the best
candidate passages and scores the pair, and the passages are ordered by that score.

Off until a reranker is installed: a sentence-transformers CrossEncoder folder (config.json,
weights, tokenizer) in the rerankers folder (`FOLIO_RERANKERS`, else `rerankers/` in Folio's
data folder). The setting `reranker` is "auto" (the first installed one, by name; none
installed: off), "off", or a name in that folder or a folder path. Nothing is downloaded.

The seam is `Reranker.scores(query, texts)`; `hybrid_search(..., reranker=...)` rescores its
top `reranker.candidates` fused passages with it, so `folio search`, the chat and the server
rank the same way. A reranker costs one cross-encoder pass per candidate and question: about
a tenth of a second for 20 passages with a MiniLM-sized model on two cores.
"""

from __future__ import annotations

import logging
import math
import os
import threading
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_CANDIDATES = 20  # fused passages rescored per question
_loaded: dict[str, "CrossEncoderReranker"] = {}
_loaded_lock = threading.Lock()


class RerankerError(Exception):
    """The named reranker is not installed, or its folder does not hold a model."""


def rerankers_dir() -> Path:
    from app.core.base.paths import data_dir

    env = os.environ.get("FOLIO_RERANKERS")
    return Path(env).expanduser() if env else data_dir() / "rerankers"


def installed() -> list[Path]:
    """The reranker folders installed, by name."""
    folder = rerankers_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if (p / "config.json").is_file())


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder from a local folder, loaded on first use."""

    def __init__(self, path: Path, candidates: int = DEFAULT_CANDIDATES):
        self.path = Path(path)
        self.name = self.path.name
        self.candidates = candidates
        self._model = None
        self._lock = threading.Lock()

    def _load(self):
        with self._lock:
            if self._model is None:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder, never a hub
                from sentence_transformers import CrossEncoder

                self._model = CrossEncoder(str(self.path), device="cpu",
                                           local_files_only=True)
            return self._model

    def scores(self, query: str, texts: list[str]) -> list[float]:
        """How well each text answers `query`, 0 to 1 (a logit through the sigmoid)."""
        if not texts:
            return []
        import torch

        raw = self._load().predict([(query, t) for t in texts], show_progress_bar=False,
                                   activation_fn=torch.nn.Identity(), convert_to_numpy=True)
        return [1.0 / (1.0 + math.exp(-float(x))) for x in list(raw.reshape(-1))]


def find(setting: str | None) -> CrossEncoderReranker | None:
    """The reranker a setting names, loaded once per folder; None when it is off."""
    setting = (setting or "auto").strip()
    if setting == "off":
        return None
    if setting == "auto":
        folders = installed()
        if not folders:
            return None
        path = folders[0]
    else:
        path = Path(setting).expanduser()
        if not path.is_absolute():
            path = rerankers_dir() / setting
        if not (path / "config.json").is_file():
            raise RerankerError(f"No reranker {setting!r}: install one as a folder in "
                                f"{rerankers_dir()} (a sentence-transformers CrossEncoder)")
    key = str(path.resolve())
    with _loaded_lock:
        if key not in _loaded:
            _loaded[key] = CrossEncoderReranker(path)
        return _loaded[key]
