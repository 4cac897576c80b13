"""Search at scale: exact against approximate (IVF_SQ) vector search at 100k and 1M passages.

    python benchmarks/bench_scale.py [--sizes 100000 1000000] [--queries 50] [--rebuild]

Each library is built once under benchmarks/.scale/ (gitignored) and reused by later runs.
Vectors are synthetic but clustered like real embeddings (unit vectors scattered around 2,000
random centres; uniformly random vectors have no neighbourhoods for any index to find, which
no real library looks like); text is sentences from the Octave manual when the corpus is
present (bench_search_latency.sentences). Query vectors are drawn the same way, not from the
library. Reported per size:

- the time to build the vector index, as Folio does it after an ingest (`Library.optimize`
  starts it in the background; this waits for it);
- hybrid and vector-only p50/p95 in ms, query embedding excluded, exact (`bypass_vector_index`
  for the vector side, as a library below the threshold searches) and with the index;
- recall@10 of the approximate search against exact, for several nprobes/refine_factor
  pairs (the pair Folio uses is marked), for queries near the clusters and for uniformly
  random (off-cluster) queries, the hard case;
- peak RSS of the process while searching (sampled, after the library is reopened);
- what reading the 5 results' sections for the model costs (index/context.py: one read of
  their neighbours, as the chat does after each search), p50/p95 in ms;
- what one more document (50 passages) costs: staging + publish, then the optimize that folds
  it into the full-text and vector indexes, then its removal.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
from _common import ROOT, PeakRSS, percentile
from bench_search_latency import QUERIES, sentences, synthetic_docs

from app.core.chat.answers import ChatConfig, source_dict
from app.core.documents.base import Chunk
from app.core.documents.tokens import encoding
from app.core.index import library as library_mod
from app.core.index.context import widen
from app.core.index.embedder import DEFAULT_EMBEDDER
from app.core.index.library import INDEXING, DocumentRecord, Library
from app.core.index.search import hybrid_search

CACHE = ROOT / "benchmarks" / ".scale"
DIMS = 384
CENTRES = 2000
PER_DOC = 500
BATCH = 20_000
POOL = 50  # hybrid_search's default candidate pool


class QueryVectorsOnly:
    """Stands in for the embedder: the benchmark passes every query vector itself, so the
    model is never loaded (its memory would hide the store's)."""

    name, dims = DEFAULT_EMBEDDER, DIMS

    def embed_query(self, text):
        raise AssertionError("bench_scale passes query vectors")


def clustered(rng: np.random.Generator, centres: np.ndarray, n: int) -> np.ndarray:
    picks = rng.integers(0, len(centres), n)
    vecs = centres[picks] + rng.standard_normal((n, DIMS)).astype(np.float32) * 0.04
    return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)


def centres_for() -> np.ndarray:
    rng = np.random.default_rng(1)
    c = rng.standard_normal((CENTRES, DIMS)).astype(np.float32)
    return c / np.linalg.norm(c, axis=1, keepdims=True)


def build(root: Path, n: int, pool: list[str]) -> float:
    """Write n passages (publishing as Folio's ingest does), then index; returns seconds."""
    lib = Library.open(root, QueryVectorsOnly())
    lib.ann_threshold = 10**12  # no index while building: it is built once, below
    rng, pyr, centres = np.random.default_rng(0), random.Random(0), centres_for()
    t0 = time.perf_counter()
    for start in range(0, n, BATCH):
        docs, batch = synthetic_docs(range(start // PER_DOC, min(n, start + BATCH) // PER_DOC),
                                     PER_DOC, pool, pyr)
        lib.put_documents(docs)
        lib.stage_chunks(batch, clustered(rng, centres, len(batch)))
        lib.publish([(doc, "v1", PER_DOC) for doc in docs])
        print(f"  {start + len(batch):,} passages written", flush=True)
    lib.optimize()
    lib.close()
    return time.perf_counter() - t0


def timed(fn, items) -> list[float]:
    out = []
    for item in items:
        t0 = time.perf_counter()
        fn(item)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def p50_p95(ms: list[float]) -> str:
    return f"{percentile(ms, 50):.1f} / {percentile(ms, 95):.1f}"


def measure(n: int, queries: int, rebuild: bool) -> dict:
    root = CACHE / f"lib-{n}"
    row: dict = {"passages": n}
    if rebuild or not (root / "library.json").exists():
        import shutil

        shutil.rmtree(root, ignore_errors=True)
        row["write_s"] = round(build(root, n, sentences()), 1)
    lib = Library.open(root, QueryVectorsOnly())
    table = lib.chunks_table()
    rng = np.random.default_rng(7)
    qvecs = clustered(rng, centres_for(), queries)
    texts = [QUERIES[i % len(QUERIES)] for i in range(queries)]

    def vector_ids(q, exact, nprobes=library_mod.ANN_NPROBES,
                   refine=library_mod.ANN_REFINE_FACTOR) -> list[str]:
        query = table.search(q, vector_column_name="vector").distance_type("cosine")
        query = query.bypass_vector_index() if exact else query.nprobes(nprobes).refine_factor(
            refine)
        # As hybrid_search asks: a pool of 50 candidates (refine_factor re-ranks
        # refine x 50 on full vectors), of which the top 10 are compared.
        return [h["id"] for h in query.where("live = true", prefilter=True).limit(POOL)
                .select(["id", "_distance"]).to_list()][:10]

    exact = [vector_ids(q, True) for q in qvecs]
    # Off-cluster queries (uniform random directions): their neighbours are spread over many
    # partitions, the hard case for an IVF index.
    far = rng.standard_normal((queries, DIMS)).astype(np.float32)
    far /= np.linalg.norm(far, axis=1, keepdims=True)
    exact_far = [vector_ids(q, True) for q in far]
    if lib.index_stats() is None:  # hybrid and vector p95 while the search is still exact
        for q, t in zip(qvecs[:3], texts, strict=False):
            hybrid_search(lib, t, 5, query_vector=q)
        row["exact_hybrid_ms"] = p50_p95(timed(
            lambda i: hybrid_search(lib, texts[i], 5, query_vector=qvecs[i]), range(queries)))
        row["exact_vector_ms"] = p50_p95(timed(
            lambda i: hybrid_search(lib, texts[i], 5, mode="vector", query_vector=qvecs[i]),
            range(queries)))
        lib.ann_threshold = library_mod.ann_threshold()
        t0 = time.perf_counter()
        lib.optimize()  # as after an ingest: starts the background build
        lib.wait_for_index()
        row["index_build_s"] = round(time.perf_counter() - t0, 1)
        if lib.index_error:
            row["index_error"] = lib.index_error
    row["index"] = str(lib.index_stats())
    lib.close()

    lib = Library.open(root, QueryVectorsOnly(), read_only=True)  # fresh caches, as a new run
    table = lib.chunks_table()
    recall = {}
    for nprobes, refine in ((10, 1), (10, 5), (library_mod.ANN_NPROBES,
                                                 library_mod.ANN_REFINE_FACTOR), (40, 10),
                           (40, 50)):
        hits = [len(set(vector_ids(q, False, nprobes, refine)) & set(e)) / 10
                for q, e in zip(qvecs, exact, strict=True)]
        mark = " (Folio)" if (nprobes, refine) == (library_mod.ANN_NPROBES,
                                                    library_mod.ANN_REFINE_FACTOR) else ""
        hits_far = [len(set(vector_ids(q, False, nprobes, refine)) & set(e)) / 10
                    for q, e in zip(far, exact_far, strict=True)]
        recall[f"nprobes={nprobes} refine={refine}{mark}"] = (
            round(float(np.mean(hits)), 4), round(float(np.mean(hits_far)), 4))
    row["recall@10 (clustered queries, off-cluster queries)"] = recall
    with PeakRSS() as rss:
        for i in range(3):
            hybrid_search(lib, texts[i], 5, query_vector=qvecs[i])
        row["ann_hybrid_ms"] = p50_p95(timed(
            lambda i: hybrid_search(lib, texts[i], 5, query_vector=qvecs[i]), range(queries)))
        row["ann_vector_ms"] = p50_p95(timed(
            lambda i: hybrid_search(lib, texts[i], 5, mode="vector", query_vector=qvecs[i]),
            range(queries)))
    row["peak_rss_searching_mib"] = round(rss.peak / 2**20)
    found = [[source_dict(j, r) for j, r in enumerate(
        hybrid_search(lib, texts[i], 5, query_vector=qvecs[i]), 1)] for i in range(queries)]
    enc = encoding()
    row["section_read_ms"] = p50_p95(timed(lambda sources: widen(
        lib, sources, count=lambda t: len(enc.encode(t, disallowed_special=())),
        per_source=ChatConfig().section_tokens, budget=2000), found))
    lib.close()
    row["one_more_document"] = one_more_document(root)
    return row


def one_more_document(root: Path) -> dict:
    """Add a 50-passage document, fold it into the indexes, find it, remove it again."""
    lib = Library.open(root, QueryVectorsOnly())
    rng = np.random.default_rng(99)
    doc = DocumentRecord(doc_id="extra", path="/bench/extra.pdf", name="extra.pdf",
                         status=INDEXING, pending_version="v1", title="Extra")
    batch = [("extra", "v1", Chunk(f"zyxwordextra passage {i}", i, 1, 1, ("S",), 0, 20, 5,
                                   "Extra > S")) for i in range(50)]
    vecs = clustered(rng, centres_for(), 50)
    t0 = time.perf_counter()
    lib.put_documents([doc])
    lib.stage_chunks(batch, vecs)
    lib.publish([(doc, "v1", 50)])
    ingest_ms = (time.perf_counter() - t0) * 1000
    found_before = bool(hybrid_search(lib, "zyxwordextra", 1, mode="fts", query_vector=vecs[0]))
    t0 = time.perf_counter()
    lib.optimize()
    optimize_ms = (time.perf_counter() - t0) * 1000
    rebuilt = lib.indexing()
    lib.wait_for_index()
    stats = lib.index_stats()
    found = hybrid_search(lib, "zyxwordextra", 1, query_vector=vecs[0])
    t0 = time.perf_counter()
    lib.remove(doc)
    lib.optimize()
    remove_ms = (time.perf_counter() - t0) * 1000
    lib.wait_for_index()
    lib.close()
    return {
        "stage_publish_ms": round(ingest_ms, 1),
        "fts_finds_it_before_optimize": found_before,
        "optimize_ms (compaction + index update)": round(optimize_ms, 1),
        "started_a_rebuild": rebuilt,
        "unindexed_after": stats.num_unindexed_rows if stats else None,
        "found_after": bool(found and found[0].doc_id == "extra"),
        "remove_and_optimize_ms": round(remove_ms, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--rebuild", action="store_true", help="write the libraries again")
    args = ap.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    for n in args.sizes:
        print(json.dumps(measure(n, args.queries, args.rebuild)), flush=True)


if __name__ == "__main__":
    main()
