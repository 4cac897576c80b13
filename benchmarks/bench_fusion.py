"""How to fuse the vector and BM25 lists (issue 13), on every question set at once.

    python benchmarks/bench_fusion.py [--work DIR] [--pool 100]

Runs after `bench_retrieval.py` has built its one library of the three question sets (it
reuses that cached library under benchmarks/.work). For each question it fetches the vector
list and the BM25 list once (`--pool` each), then scores fusion rules offline on the same
lists: reciprocal-rank fusion at several BM25 weights (Folio's default before this study was
RRF with BM25 at 0.6), and score-based fusions that use how far apart the scores are, which
rank fusion throws away (the default since: relative score fusion, BM25 at 1/3). A rule is judged by the mean over sets and by its worst set: a
default must not lose hit@1 to plain vector search on any set.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from _common import ROOT  # noqa: F401 - puts the repository on sys.path
from question_sets import SETS, first_hit_rank, gold_locations, scores

from app.core.index.embedder import get_embedder
from app.core.index.library import Library
from app.core.index.search import _fts, fts_query, fuse

HERE = Path(__file__).resolve().parent

# The fusions compared (name -> fuse() keywords), Folio's default first.
FUSIONS: dict[str, dict] = {
    "folio default (relative, bm25 1/3)": {},
    **{f"rrf bm25 {w}": {"method": "rrf", "weight": w} for w in (0.3, 0.45, 0.6, 1.0)},
    **{f"rrf bm25 0.6, vector lead {m}": {"method": "rrf", "weight": 0.6, "margin": m}
       for m in (0.03, 0.05, 0.08)},
    **{f"relative bm25 {w}": {"method": "relative", "weight": w}
       for w in (0.2, 0.25, 0.333, 0.4, 0.5, 0.75)},
    **{f"relative bm25 0.333, vector lead {m}": {"method": "relative", "weight": 0.333,
                                                 "margin": m} for m in (0.03, 0.05)},
    **{f"zscore bm25 {w}": {"method": "zscore", "weight": w} for w in (0.2, 0.333, 0.5)},
}


class Hit:
    __slots__ = ("id", "path", "page", "page_end", "section")

    def __init__(self, row: dict, path: str):
        self.id, self.path = row["id"], path
        self.page, self.page_end, self.section = row["page"], row["page_end"], row["section"]


def lists_for(lib: Library, question: str, pool: int, paths: dict):
    qvec = lib.embedder.embed_query(question)
    table = lib.chunks_table()
    where = lib.scope_filter(None, None)
    vec = (table.search(qvec, vector_column_name="vector").distance_type("cosine")
           .where(where, prefilter=True).limit(pool)
           .select(["id", "doc_id", "page", "page_end", "section", "_distance"]).to_list())
    bm = _fts(lib, fts_query(question), where, pool)
    hits = {}
    for r in [*vec, *bm]:
        hits.setdefault(r["id"], Hit(r, paths[r["doc_id"]]))
    v = [(r["id"], 1.0 - float(r["_distance"])) for r in vec]
    b = [(r["id"], float(r["_score"])) for r in bm]
    return v, b, hits


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=HERE / ".work")
    ap.add_argument("--pool", type=int, default=50)
    args = ap.parse_args()
    libs = sorted(args.work.glob("folio-question-sets-*"))
    if not libs:
        print("no cached library: run benchmarks/bench_retrieval.py first", file=sys.stderr)
        return 2
    lib = Library.open(libs[0], get_embedder(), read_only=True)
    paths = {d.doc_id: d.path for d in lib.documents()}
    data = {}
    for qset in SETS:
        rows = []
        for q in qset.load():
            v, b, hits = lists_for(lib, q["question"], args.pool, paths)
            rows.append((v, b, hits, gold_locations(q, qset.documents[0])))
        data[qset.name] = rows

    rules = {"vector only": ("vector", {}), **{name: ("fuse", kw) for name, kw in FUSIONS.items()}}
    print(f"{lib.chunk_count()} chunks; pool {args.pool}")
    print("| rule | " + " | ".join(f"{s} @1 / @5" for s in data) + " | mean @1 | mean @5 | "
          "worst @1 vs vector |")
    print("|" + " --- |" * (len(data) + 4))
    vector_at1 = {}
    for label, (method, kw) in rules.items():
        cells, at1, at5, margins = [], [], [], []
        for name, rows in data.items():
            ranks = []
            for v, b, hits, locs in rows:
                order = [i for i, _ in v] if method == "vector" else [i for i, _ in fuse(v, b, **kw)]
                ranks.append(first_hit_rank([hits[i] for i in order[:10]], locs))
            s = scores(ranks)
            if method == "vector":
                vector_at1[name] = s["hit@1"]
            margins.append(s["hit@1"] - vector_at1[name])
            cells.append(f"{s['hit@1']:.3f} / {s['hit@5']:.3f}")
            at1.append(s["hit@1"])
            at5.append(s["hit@5"])
        print(f"| {label} | " + " | ".join(cells)
              + f" | {np.mean(at1):.3f} | {np.mean(at5):.3f} | {min(margins):+.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
