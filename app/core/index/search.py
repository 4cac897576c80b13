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

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "page": self.page,
            "page_end": self.page_end,
            "section": self.section,
            "score": round(float(self.score), 6),
            "similarity": round(float(self.similarity), 6),
            "text": self.text,
            "title": self.title,
            "chunk_index": self.chunk_index,
            "char_start": self.char_start,
            "char_end": self.char_end,
        }

RRF_K = 60
# Users paraphrase; shared words are weaker evidence than shared meaning. On the Octave
# question set (benchmarks/bench_retrieval.py) BM25 at 0.5-0.7 of the vector weight beat
# both equal weights and either list alone.
VECTOR_WEIGHT = 1.0
FTS_WEIGHT = 0.6
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
) -> list[SearchResult]:
    """Search the library's live chunks. `mode` is "hybrid", "vector" or "fts".

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
    ranked: list[list[str]] = []
    weights: list[float] = []
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
        ranked.append([h["id"] for h in hits])
        weights.append(VECTOR_WEIGHT)
        rows.update({h["id"]: h for h in hits})
    words = fts_query(query)
    if mode in ("hybrid", "fts") and words:
        hits = _fts(lib, words, where, pool)
        ranked.append([h["id"] for h in hits])
        weights.append(FTS_WEIGHT if mode == "hybrid" else 1.0)
        for h in hits:
            rows.setdefault(h["id"], h)
    if not rows:
        return []

    fused = rrf(ranked, weights)
    order = sorted(fused, key=lambda key: fused[key], reverse=True)
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
