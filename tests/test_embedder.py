"""The real packaged embedder, loaded offline from its local path."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.index.embedder import (
    DEFAULT_EMBEDDER,
    EmbedderSpec,
    SentenceTransformerEmbedder,
    resolve_spec,
)


def test_default_embedder_shape_and_norm(embedder):
    assert embedder.name == DEFAULT_EMBEDDER == "all-MiniLM-L6-v2"
    assert embedder.dims == 384 and embedder.window == 256 and embedder.max_tokens == 254
    vecs = embedder.embed_documents(["Octave plots data.", "Bread needs yeast."])
    assert vecs.shape == (2, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    q = embedder.embed_query("how do I draw a graph")
    assert q.shape == (384,)
    assert float(vecs[0] @ q) > float(vecs[1] @ q)  # meaning, not words


def test_count_tokens_sees_past_the_tokenizer_file_truncation(embedder):
    """MiniLM's tokenizer.json truncates at 128; the splitter's limit needs true counts."""
    texts = ["word " * 400, "x" * 3000, "naïve café 東京 3.14159", ""]
    expected = [len(embedder._tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert embedder.count_tokens(texts) == expected
    assert expected[0] == 400


def test_unknown_embedder_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="Unknown embedder"):
        resolve_spec("no-such-model")
    with pytest.raises(FileNotFoundError, match="not found"):
        SentenceTransformerEmbedder(EmbedderSpec("missing", tmp_path / "nothing"))


def test_a_model_folder_path_is_accepted(embedder):
    spec = resolve_spec(str(embedder.spec.path))
    assert spec.path == embedder.spec.path


def test_prefixes_reduce_the_content_budget(embedder):
    spec = EmbedderSpec("prefixed", embedder.spec.path, query_prefix="query: ",
                        document_prefix="passage: ")
    prefixed = SentenceTransformerEmbedder(spec)
    # "passage" and ":" are two word pieces, "query" and ":" two as well
    assert prefixed.max_tokens == embedder.max_tokens - 2
    a = prefixed.embed_documents(["hello"])[0]
    b = embedder.embed_documents(["passage: hello"])[0]
    assert np.allclose(a, b, atol=1e-5)
