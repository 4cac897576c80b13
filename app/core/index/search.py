"""Hybrid retrieval: vector search and BM25 full-text search over live chunks, fused by rank.

Vector search finds paraphrases ("stop a plot from being replaced"); BM25 finds exact names
(`hold`, `fminsearch`, an error message). Reciprocal-rank fusion combines the two lists without
having to calibrate their scores against each other. MMR then optionally trades a little
relevance for variety, so five results are not five overlapping chunks of one page.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from app.core.index.library import (
    ANN_NPROBES,
    ANN_REFINE_FACTOR,
    is_stale_read,
    reading_again,
)

if TYPE_CHECKING:
    from app.core.index.library import Library

log = logging.getLogger(__name__)


@dataclass(slots=True)
class SearchResult:
    path: str
    page: int | None
    page_end: int | None
    section: str
    score: float
    text: str
    title: str = ""
    doc_id: str = ""
    chunk_id: str = ""
    chunk_index: int = 0
    char_start: int = 0
    char_end: int = 0
    similarity: float = 0.0  # cosine similarity of the chunk to the query
    reranked: bool = False  # score is a reranker's (index/rerank.py), not the fused one

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "page": self.page,
            "page_end": self.page_end,
            "section": self.section,
            "score": round(float(self.score), 6),
            "similarity": round(float(self.similarity), 6),
            "reranked": self.reranked,
            "text": self.text,
            "title": self.title,
            "chunk_index": self.chunk_index,
            "char_start": self.char_start,
            "char_end": self.char_end,
        }

RRF_K = 60
# How the vector and BM25 lists become one (issue 13, benchmarks/bench_fusion.py on three
# question sets of different kinds of documentation, in one library): by their scores, each
# list min-max scaled, BM25 at a third of the vector's weight ("relative score fusion" at
# Weaviate's default alpha of 0.75, taken as it is rather than tuned here). Every BM25 weight
# from 0.2 to 0.5 beat plain vector search on every set, at hit@1 and hit@5; reciprocal-rank
# fusion, the default before (BM25 at 0.6, chosen on the Octave manual alone), lost hit@1 to
# vector search on the Python docs, and rank fusion at any weight lost hit@5 on two sets.
# Shared words are weaker evidence than shared meaning, but how far ahead a passage is in
# either list counts, which ranks throw away.
FUSION = "relative"
FTS_WEIGHT = 1 / 3
_COLUMNS = [
    "id", "doc_id", "chunk_index", "text", "section", "page", "page_end",
    "char_start", "char_end", "vector",
]


def fts_query(text: str) -> str:
    """The words of a question, without the operators and quotes a query parser would read."""
    return " ".join(re.findall(r"\w+", text))


def rrf(ranked_lists: Sequence[Sequence[str]], weights: Sequence[float], k: int = RRF_K) -> dict:
    """Reciprocal-rank fusion: id -> sum over lists of weight / (k + rank)."""
    scores: dict[str, float] = {}
    for ids, weight in zip(ranked_lists, weights, strict=True):
        for rank, key in enumerate(ids):
            scores[key] = scores.get(key, 0.0) + weight / (k + rank + 1)
    return scores


def fuse(vector: Sequence[tuple[str, float]], bm25: Sequence[tuple[str, float]],
         method: str = FUSION, *, weight: float = FTS_WEIGHT, k: int = RRF_K,
         margin: float = 0.0) -> list[tuple[str, float]]:
    """Two ranked lists of (id, score), best first (vector: cosine similarity; BM25: its
    score), fused into one: (id, fused score), best first.

    "rrf": reciprocal-rank fusion, BM25's ranks at `weight`. "relative": each list's scores
    min-max scaled to 0..1 (absent: 0), BM25's at `weight`; unlike ranks, how far ahead the
    best passage is counts. "zscore": each list's scores as standard deviations from its
    mean (absent: the list's lowest), BM25's at `weight`. `margin` > 0: a vector first place
    that leads the second by at least that much similarity stays first (a confident vector
    hit is not outvoted by shared words)."""
    scores: dict[str, float] = {}
    if method == "rrf":
        scores = rrf([[i for i, _ in vector], [i for i, _ in bm25]], [1.0, weight], k)
    elif method in ("relative", "zscore"):
        for pairs, w in ((vector, 1.0), (bm25, weight)):
            if not pairs:
                continue
            values = np.array([v for _, v in pairs], dtype=np.float64)
            if method == "relative":  # one result, or all alike: each is the list's best
                span = float(values.max() - values.min())
                scaled = (values - values.min()) / span if span > 0 else np.ones_like(values)
                floor = 0.0
            else:
                std = float(values.std()) or 1.0
                scaled = (values - values.mean()) / std
                floor = float(scaled.min())
            for (key, _), v in zip(pairs, scaled, strict=True):
                scores[key] = scores.get(key, 0.0) + w * (float(v) - floor)
    else:
        raise ValueError(f"unknown fusion {method!r}")
    order = sorted(scores, key=lambda key: scores[key], reverse=True)
    if margin > 0 and len(vector) > 1 and vector[0][1] - vector[1][1] >= margin:
        order.remove(vector[0][0])
        order.insert(0, vector[0][0])
    return [(key, scores[key]) for key in order]


def mmr_order(
    query: np.ndarray, vectors: np.ndarray, relevance: np.ndarray, k: int, lam: float
) -> list[int]:
    """Maximal marginal relevance over candidates already ranked by `relevance`."""
    if len(vectors) == 0:
        return []
    rel = (relevance - relevance.min()) / (np.ptp(relevance) or 1.0)
    sims = vectors @ vectors.T
    chosen: list[int] = []
    remaining = list(range(len(vectors)))
    while remaining and len(chosen) < k:
        if chosen:
            redundancy = sims[np.ix_(remaining, chosen)].max(axis=1)
        else:
            redundancy = np.zeros(len(remaining))
        scores = lam * rel[remaining] - (1 - lam) * redundancy
        best = remaining[int(np.argmax(scores))]
        chosen.append(best)
        remaining.remove(best)
    return chosen


@reading_again("searching")
def hybrid_search(
    lib: Library,
    query: str,
    k: int = 5,
    *,
    collections: Sequence[str] | None = None,
    documents: Sequence[str] | None = None,
    mode: str = "hybrid",
    mmr: bool = False,
    mmr_lambda: float = 0.7,
    candidates: int = 50,
    query_vector: np.ndarray | None = None,
    reranker=None,
) -> list[SearchResult]:
    """Search the library's live chunks. `mode` is "hybrid", "vector" or "fts".

    `reranker` (index/rerank.py; None: off) rescores the best `reranker.candidates` passages
    of that order with a cross-encoder; they are then ranked, and scored, by it alone.

    A search that loses the race with a compaction in another process (its table version's
    files removed mid-read) runs again on the new version (`reading_again`)."""
    if mode not in ("hybrid", "vector", "fts"):
        raise ValueError(f"unknown search mode {mode!r}")
    table = lib.chunks_table()
    if table is None or not query.strip() or k <= 0:
        return []
    where = lib.scope_filter(collections, documents)
    if where is None:
        return []
    pool = max(candidates, k * 4 if mmr else k)
    qvec = query_vector if query_vector is not None else lib.embedder.embed_query(query)

    rows: dict[str, dict] = {}
    vector: list[tuple[str, float]] = []
    bm25: list[tuple[str, float]] = []
    if mode in ("hybrid", "vector"):
        hits = (
            table.search(qvec, vector_column_name="vector")
            .distance_type("cosine")
            .nprobes(ANN_NPROBES)  # these two only matter past the ANN threshold
            .refine_factor(ANN_REFINE_FACTOR)
            .where(where, prefilter=True)
            .limit(pool)
            .select([*_COLUMNS, "_distance"])
            .to_list()
        )
        vector = [(h["id"], 1.0 - float(h["_distance"])) for h in hits]
        rows.update({h["id"]: h for h in hits})
    words = fts_query(query)
    if mode in ("hybrid", "fts") and words:
        hits = _fts(lib, words, where, pool)
        bm25 = [(h["id"], float(h["_score"])) for h in hits]
        for h in hits:
            rows.setdefault(h["id"], h)
    if not rows:
        return []

    if mode == "hybrid":
        fused = dict(fuse(vector, bm25))
    else:  # one list: its own order, its own scores
        fused = dict(vector or bm25)
    order = sorted(fused, key=lambda key: fused[key], reverse=True)
    if reranker is not None:
        order = order[:max(reranker.candidates, k * 4 if mmr else k)]
        scores = reranker.scores(query, [rows[key]["text"] for key in order])
        fused = dict(zip(order, scores))
        order = sorted(order, key=lambda key: fused[key], reverse=True)
    vectors = np.array([rows[key]["vector"] for key in order], dtype=np.float32)
    similarity = vectors @ np.asarray(qvec, dtype=np.float32)
    if mmr:
        picked = mmr_order(qvec, vectors, np.array([fused[key] for key in order]), k, mmr_lambda)
    else:
        picked = list(range(min(k, len(order))))

    docs = {d.doc_id: d for d in lib.documents()}
    results = []
    for i in picked:
        row = rows[order[i]]
        doc = docs.get(row["doc_id"])
        if doc is None:  # removed between the query and now
            continue
        results.append(
            SearchResult(
                path=doc.path,
                page=row["page"],
                page_end=row["page_end"],
                section=row["section"] or "",
                score=fused[order[i]],
                text=row["text"],
                title=doc.title,
                doc_id=doc.doc_id,
                chunk_id=row["id"],
                chunk_index=row["chunk_index"],
                char_start=row["char_start"],
                char_end=row["char_end"],
                similarity=float(similarity[i]),
                reranked=reranker is not None,
            )
        )
    return results


def _fts(lib: Library, words: str, where: str, limit: int) -> list[dict]:
    table = lib.chunks_table()
    for attempt in range(2):
        try:
            return (
                table.search(words, query_type="fts", fts_columns="fts")
                .where(where, prefilter=True)
                .limit(limit)
                .select([*_COLUMNS, "_score"])
                .to_list()
            )
        except Exception as exc:  # no FTS index yet (first ingest interrupted): build it
            if is_stale_read(exc):  # compacted away mid-read: the whole search runs again
                raise
            if attempt:
                log.warning("full-text search unavailable: %s", exc)
                return []
            lib.optimize()
    return []
