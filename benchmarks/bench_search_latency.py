"""Search latency at 10k and 100k chunks: p50/p95, query embedding excluded and included.

    python benchmarks/bench_search_latency.py [--sizes 10000 100000] [--queries 50]

The libraries are synthetic in their vectors (random unit vectors: the store's cost does not
depend on what they mean) but real in their text, drawn from the Octave manual's sentences
when the corpus is present, so the BM25 side sees a natural vocabulary. Past the ANN threshold
(50,000 chunks) the vector side goes through the IVF_SQ index Folio builds after the ingest;
benchmarks/bench_scale.py compares exact and approximate search and measures recall.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import ROOT, percentile

from app.core.index.embedder import get_embedder
from app.core.index.library import INDEXING, DocumentRecord, Library
from app.core.index.search import hybrid_search
from app.core.documents.base import Chunk

QUERIES = [
    "how do I keep the current plot when drawing another one",
    "solve a system of linear equations", "read a CSV file into a matrix",
    "default tolerance of the optimiser", "what does the function return on error",
    "plot with logarithmic axes", "string concatenation", "install a package",
    "startup file run at launch", "sparse matrix factorization",
]


def sentences() -> list[str]:
    pdf = ROOT / "benchmarks" / ".corpus" / "octave.pdf"
    if pdf.exists():
        import pymupdf

        with pymupdf.open(pdf) as doc:
            text = " ".join(page.get_text() for page in doc)
        parts = [s.strip() for s in re.split(r"(?<=[.!?])\s+", " ".join(text.split()))]
        return [s for s in parts if 20 < len(s) < 400]
    rng = random.Random(0)
    words = "matrix plot vector function value array string file default option error".split()
    return [" ".join(rng.choice(words) for _ in range(15)) for _ in range(5000)]


def synthetic_docs(numbers, per_doc: int, pool: list[str], pyr: random.Random):
    """Documents doc<d> for d in `numbers`, each with `per_doc` passages of 3 sentences from
    `pool`, as (records, stage_chunks batch)."""
    batch, docs = [], []
    for d in numbers:
        doc = DocumentRecord(doc_id=f"doc{d}", path=f"/bench/doc{d}.pdf", name=f"doc{d}.pdf",
                             status=INDEXING, pending_version="v1", title=f"Doc {d}")
        docs.append(doc)
        for i in range(per_doc):
            text = " ".join(pyr.choice(pool) for _ in range(3))
            batch.append((doc.doc_id, "v1", Chunk(text, i, 1 + i // 5, 1 + i // 5, ("S",),
                                                  0, len(text), 150, f"Doc {d} > S")))
    return docs, batch


def build(root: Path, n: int, dims: int, pool: list[str], embedder) -> Library:
    lib = Library.open(root, embedder)
    rng = np.random.default_rng(0)
    pyr = random.Random(0)
    per_doc = 500
    for start in range(0, n, 5000):
        docs, batch = synthetic_docs(range(start // per_doc, min(n, start + 5000) // per_doc),
                                     per_doc, pool, pyr)
        lib.put_documents(docs)
        vecs = rng.standard_normal((len(batch), dims)).astype(np.float32)
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        lib.stage_chunks(batch, vecs)
        lib.publish([(doc, "v1", per_doc) for doc in docs])
    lib.optimize()
    lib.wait_for_index()  # past the ANN threshold, search as the library will once indexed
    return lib


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    embedder = get_embedder()
    embedder.embed_query("warm up")
    pool = sentences()
    out = []
    for n in args.sizes:
        with tempfile.TemporaryDirectory(prefix="folio-lat-") as tmp:
            t0 = time.perf_counter()
            lib = build(Path(tmp) / "lib", n, embedder.dims, pool, embedder)
            build_s = time.perf_counter() - t0
            queries = [QUERIES[i % len(QUERIES)] for i in range(args.queries)]
            vectors = {q: embedder.embed_query(q) for q in QUERIES}
            for q in QUERIES[:3]:  # warm caches
                hybrid_search(lib, q, 5, query_vector=vectors[q])
            row = {"chunks": lib.chunk_count(), "build_s": round(build_s, 1)}
            for label, mode in (("hybrid", "hybrid"), ("vector", "vector")):
                excl, incl = [], []
                for q in queries:
                    t0 = time.perf_counter()
                    hybrid_search(lib, q, 5, mode=mode, query_vector=vectors[q])
                    excl.append((time.perf_counter() - t0) * 1000)
                    t0 = time.perf_counter()
                    hybrid_search(lib, q, 5, mode=mode)
                    incl.append((time.perf_counter() - t0) * 1000)
                row[f"{label}_p50_ms_excl_embed"] = round(percentile(excl, 50), 1)
                row[f"{label}_p95_ms_excl_embed"] = round(percentile(excl, 95), 1)
                row[f"{label}_p50_ms_incl_embed"] = round(percentile(incl, 50), 1)
                row[f"{label}_p95_ms_incl_embed"] = round(percentile(incl, 95), 1)
            out.append(row)
            if not args.json:
                print(json.dumps(row))
    if args.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
