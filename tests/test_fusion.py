"""How hybrid search joins its two lists (app/core/index/search.py `fuse`): the default,
relative score fusion, and the rank fusion it replaced, on lists small enough to check by
hand; then the default through a real library."""

from __future__ import annotations

import pytest
from docgen import make_pdf

from app.core.index.ingest import IngestOptions, ingest
from app.core.index.library import Library
from app.core.index.search import FTS_WEIGHT, FUSION, fuse, hybrid_search


def ids(pairs):
    return [i for i, _ in pairs]


def test_the_default_is_relative_score_fusion_with_bm25_at_a_third():
    assert FUSION == "relative" and FTS_WEIGHT == pytest.approx(1 / 3)


def test_scores_count_not_only_ranks():
    # The vector list's first is far ahead of its second; BM25 puts it second, close behind.
    vector = [("a", 0.80), ("b", 0.40), ("c", 0.39)]
    bm25 = [("b", 10.0), ("a", 9.5), ("c", 1.0)]
    assert ids(fuse(vector, bm25)) == ["a", "b", "c"]
    # Rank fusion sees only places: with BM25 at equal weight it cannot tell a from b, and at
    # any weight it never learns that a leads the vector list by a mile.
    by_rank = fuse(vector, bm25, "rrf", weight=1.0)
    assert by_rank[0][1] == pytest.approx(by_rank[1][1])


def test_relative_scores_by_hand():
    out = dict(fuse([("a", 0.9), ("b", 0.5)], [("b", 4.0), ("c", 2.0)], weight=0.5))
    assert out["a"] == pytest.approx(1.0)  # vector best; not in BM25
    assert out["b"] == pytest.approx(0.0 + 0.5 * 1.0)  # vector worst, BM25 best
    assert out["c"] == pytest.approx(0.0)  # BM25 worst, not in the vector list


def test_one_result_or_equal_scores_count_as_the_lists_best():
    assert dict(fuse([("a", 0.3)], [])) == {"a": pytest.approx(1.0)}
    out = dict(fuse([("a", 0.5), ("b", 0.5)], [("a", 2.0)]))
    assert out["a"] > out["b"] == pytest.approx(1.0)
    assert fuse([], []) == []


def test_zscore_and_a_confident_vector_lead():
    vector = [("a", 0.70), ("b", 0.60), ("c", 0.59)]
    bm25 = [("c", 30.0), ("b", 10.0), ("a", 1.0)]
    assert ids(fuse(vector, bm25, "zscore", weight=2.0))[0] == "c"
    assert ids(fuse(vector, bm25, "zscore", weight=2.0, margin=0.05))[0] == "a"
    with pytest.raises(ValueError):
        fuse(vector, bm25, "borda")


def test_through_a_real_library_the_answer_comes_first_and_scores_highest(tmp_path, embedder):
    """The default fusion on real vectors and real BM25 scores: the passage that answers the
    paraphrased question comes first, scored above a page that repeats one of its words."""
    docs = tmp_path / "docs"
    docs.mkdir()
    make_pdf(docs / "faq.pdf", ["How do I change my password? Open Settings, choose Account "
                                "and pick a new passphrase there."])
    make_pdf(docs / "reference.pdf", [
        "Password fields. A password field stores a password. The password column, password "
        "hashing and password policy objects are listed in the password reference tables. "
        "Change logs record each change to a password record."])
    lib = Library.open(tmp_path / "lib", embedder)
    for _ in ingest(lib, [docs], IngestOptions()):
        pass
    hits = hybrid_search(lib, "how can I pick a different passphrase for my account?", k=2)
    assert [h.path.rsplit("/", 1)[-1] for h in hits] == ["faq.pdf", "reference.pdf"]
    assert hits[0].score > hits[1].score >= 0
    assert hits[0].similarity > hits[1].similarity
    lib.close()
