"""The reranking stage (app/core/index/rerank.py) behind its seam, with a real cross-encoder
built in the test: a one-layer BERT sequence classifier and its WordPiece vocabulary, saved
as a sentence-transformers CrossEncoder folder. Off until one is installed; once installed,
`hybrid_search`, `folio search` and the chat engine order passages by its scores."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from app.cli import main
from app.core.chat.answers import ChatConfig, ChatEngine
from app.core.chat.history import ChatStore
from app.core.index import rerank
from app.core.index.ingest import IngestOptions, ingest
from app.core.index.library import Library
from app.core.index.search import hybrid_search

NOTES = {
    "ferry.md": "# Ferry\n\nThe ferry to Karnvik leaves the north quay at nine each morning.",
    "lighthouse.md": "# Lighthouse\n\nThe Karnvik lighthouse was built in 1894 of granite.",
    "tickets.md": "# Tickets\n\nFerry tickets are sold at the kiosk beside the quay.",
    "harbour.md": "# Harbour\n\nBoats moor in the harbour; the quay has water and power.",
    "walks.md": "# Walks\n\nA path climbs from the harbour to the lighthouse in an hour.",
    "weather.md": "# Weather\n\nStorms close the ferry route a few days each winter.",
}
QUESTION = "when does the ferry leave the quay?"
# A cross-encoder whose best three differ from the fused best three, and lie clearly above
# the other three (both checked below). Untrained weights at BERT's usual scale (0.02) score
# every pair within 1e-6 of the others, an order that float rounding on another CPU changes;
# at 0.5 the scores fall into groups far apart, and within a group they tie.
INIT = 0.5
SEED = 5


def make_cross_encoder(folder: Path, seed: int = SEED) -> Path:
    """A tiny, real CrossEncoder folder: untrained, so its scores are arbitrary but fixed."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    words = sorted({w for text in [*NOTES.values(), QUESTION]
                    for w in re.findall(r"[a-z0-9]+", text.lower())})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]
    folder.mkdir(parents=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", "utf-8")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=128, num_labels=1, initializer_range=INIT)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture
def rerankers(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "rerankers"
    monkeypatch.setenv("FOLIO_RERANKERS", str(folder))
    return folder


@pytest.fixture
def library(tmp_path, embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in NOTES.items():
        (docs / name).write_text(text, "utf-8")
    lib = Library.open(tmp_path / "lib", embedder)
    for _ in ingest(lib, [docs], IngestOptions()):
        pass
    yield lib
    lib.close()


def expected_scores(folder: Path, query: str, texts: list[str]) -> list[float]:
    """The cross-encoder's own scores, computed here without Folio: sigmoid of its logit."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        batch = tok([query] * len(texts), texts, padding=True, truncation=True,
                    return_tensors="pt")
        logits = model(**batch).logits.reshape(-1).tolist()
    return [1 / (1 + math.exp(-x)) for x in logits]


def test_off_until_a_reranker_is_installed(rerankers):
    assert rerank.installed() == []
    assert rerank.find("auto") is None and rerank.find(None) is None
    assert rerank.find("off") is None
    with pytest.raises(rerank.RerankerError, match=re.escape(str(rerankers))):
        rerank.find("tiny")
    make_cross_encoder(rerankers / "tiny")
    auto = rerank.find("auto")
    assert auto is not None and auto.name == "tiny"
    assert rerank.find("tiny") is auto  # loaded once per folder
    assert rerank.find(str(rerankers / "tiny")) is auto
    assert rerank.find("off") is None


def test_search_orders_the_best_passages_by_the_cross_encoder(rerankers, library, tmp_path):
    folder = make_cross_encoder(rerankers / "tiny")
    plain = hybrid_search(library, QUESTION, k=20)
    assert len(plain) == len(NOTES) and not any(h.reranked for h in plain)
    scores = expected_scores(folder, QUESTION, [h.text for h in plain])
    want = dict(zip([h.chunk_id for h in plain], scores, strict=True))
    ranked = sorted(scores, reverse=True)
    assert ranked[2] - ranked[3] > 0.01  # the best three stand clearly above the rest
    best3 = {h.chunk_id for h in plain if want[h.chunk_id] >= ranked[2]}
    assert best3 != {h.chunk_id for h in plain[:3]}  # the stage changes something

    def in_score_order(hits) -> bool:  # ties (equal scores) may come in either order
        got = [want[h.chunk_id] for h in hits]
        return all(a >= b - 1e-6 for a, b in zip(got, got[1:]))

    reranked = hybrid_search(library, QUESTION, k=3, reranker=rerank.find("auto"))
    assert {h.chunk_id for h in reranked} == best3 and in_score_order(reranked)
    assert all(h.reranked for h in reranked)
    for h in reranked:
        assert h.score == pytest.approx(want[h.chunk_id], abs=1e-5)
        assert 0.0 < h.score < 1.0 and h.to_json()["reranked"] is True

    # The chat engine ranks its sources the same way, and not at all when it is off.
    store = ChatStore(tmp_path / "chats.sqlite3")
    engine = ChatEngine(library, None, store, config=ChatConfig(k=3, mmr=False))
    sources = engine._retrieve(QUESTION, {"mode": "all"})
    assert {h.chunk_id for h in sources} == best3 and in_score_order(sources)
    engine.config = ChatConfig(k=3, mmr=False, reranker="off")
    assert [h.chunk_id for h in engine._retrieve(QUESTION, {"mode": "all"})] == [
        h.chunk_id for h in plain[:3]]


def test_folio_search_uses_the_installed_reranker_unless_told_otherwise(
        capsys, rerankers, library, tmp_path):
    make_cross_encoder(rerankers / "tiny")
    lib_args = ["--library", str(tmp_path / "lib")]
    library.close()  # the command opens it itself

    def search(*extra) -> tuple[int, list[dict]]:
        code = main(["search", *lib_args, "--json", "--k", "3", *extra, QUESTION])
        out = capsys.readouterr().out
        return code, json.loads(out) if code == 0 else []

    code, auto = search()
    assert code == 0 and all(h["reranked"] for h in auto)
    code, named = search("--rerank", "tiny")
    assert [h["text"] for h in named] == [h["text"] for h in auto]
    code, off = search("--rerank", "off")
    assert code == 0 and not any(h["reranked"] for h in off)
    assert [h["text"] for h in off] != [h["text"] for h in auto]

    assert main(["search", *lib_args, "--rerank", "missing", QUESTION]) == 2
    assert "No reranker 'missing'" in capsys.readouterr().err
