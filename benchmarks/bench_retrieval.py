"""Retrieval quality on the Octave manual: Folio's search against GPT4All LocalDocs' scheme.

    python benchmarks/bench_retrieval.py benchmarks/.corpus/octave.pdf [--fresh]

Both sides use the same embedder (all-MiniLM-L6-v2) and the same questions
(benchmarks/octave_questions.json: paraphrased questions, each with the page(s) answering it).
LocalDocs: words packed into 512-character chunks, no overlap, page of the first word, pure
vector search (benchmarks/localdocs_baseline.py). Folio: its ingest pipeline and its search
(hybrid by default; vector-only, BM25-only and MMR rows show what each part contributes).
The Folio library and LocalDocs vectors are cached under benchmarks/.work so reruns are quick;
--fresh rebuilds them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from _common import ROOT
from localdocs_baseline import build_localdocs_index
from retrieval_metrics import hit_at, mrr

from app.core.index.embedder import get_embedder
from app.core.index.ingest import IngestOptions, IngestSummary, ingest
from app.core.index.library import Library
from app.core.documents.splitter import SplitterConfig
from app.core.index.search import hybrid_search

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pdf", type=Path, nargs="?", default=HERE / ".corpus" / "octave.pdf")
    ap.add_argument("--questions", type=Path, default=HERE / "octave_questions.json")
    ap.add_argument("--work", type=Path, default=HERE / ".work")
    ap.add_argument("--fresh", action="store_true", help="rebuild the cached indexes")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--details", type=Path, help="write per-question ranks here")
    ap.add_argument("--chunk-tokens", type=int, help="splitter chunk size (default: Folio's)")
    ap.add_argument("--overlap-tokens", type=int, help="splitter overlap (default: Folio's)")
    args = ap.parse_args()

    questions = json.loads(args.questions.read_text("utf-8"))
    gold = [q["pages"] for q in questions]
    embedder = get_embedder()
    config = SplitterConfig()
    if args.chunk_tokens:
        config.chunk_tokens = args.chunk_tokens
    if args.overlap_tokens is not None:
        config.overlap_tokens = args.overlap_tokens
    lib_dir = args.work / f"folio-octave-library-{config.chunk_tokens}-{config.overlap_tokens}"
    if args.fresh:
        shutil.rmtree(lib_dir, ignore_errors=True)
        for f in args.work.glob("localdocs-*.npy"):
            f.unlink()

    t0 = time.perf_counter()
    lib = Library.open(lib_dir, embedder)
    summary = IngestSummary()
    for _ in ingest(lib, [args.pdf], IngestOptions(splitter=config), summary=summary):
        pass
    folio_build = time.perf_counter() - t0
    local = build_localdocs_index(args.pdf, embedder, cache_dir=args.work)

    rows = {}
    details = []
    configs = [
        ("folio hybrid", dict(mode="hybrid")),
        ("folio hybrid+mmr", dict(mode="hybrid", mmr=True)),
        ("folio vector", dict(mode="vector")),
        ("folio bm25", dict(mode="fts")),
    ]
    for label, kw in configs:
        ranked, times = [], []
        for q in questions:
            t = time.perf_counter()
            results = hybrid_search(lib, q["question"], k=10, **kw)
            times.append(time.perf_counter() - t)
            ranked.append(results)
            if label == "folio hybrid":
                details.append({"id": q["id"], "gold": q["pages"],
                                "folio": [(r.page, r.page_end) for r in results]})
        rows[label] = _scores(ranked, gold, times)
    ranked, times = [], []
    for i, q in enumerate(questions):
        t = time.perf_counter()
        results = local.search(q["question"], 10)
        times.append(time.perf_counter() - t)
        ranked.append([page for page, _, _ in results])
        if details:
            details[i]["localdocs"] = ranked[-1]
    rows["localdocs (baseline)"] = _scores(ranked, gold, times)

    out = {
        "questions": len(questions),
        "folio_chunks": lib.chunk_count(),
        "localdocs_chunks": len(local.chunks),
        "folio_index_build_s": round(folio_build, 1),
        "results": rows,
    }
    if args.details:
        args.details.write_text(json.dumps(details, indent=1))
    if args.json:
        print(json.dumps(out))
        return
    print(f"{len(questions)} questions; Folio {out['folio_chunks']} chunks "
          f"({config.chunk_tokens} tokens, overlap {config.overlap_tokens}), "
          f"LocalDocs {out['localdocs_chunks']} chunks")
    print(f"{'':22} {'hit@1':>6} {'hit@5':>6} {'MRR':>6} {'ms/q':>6}")
    for label, r in rows.items():
        print(f"{label:22} {r['hit@1']:6.3f} {r['hit@5']:6.3f} {r['mrr']:6.3f} {r['ms']:6.1f}")


def _scores(ranked, gold, times) -> dict:
    return {
        "hit@1": round(hit_at(ranked, gold, 1), 3),
        "hit@5": round(hit_at(ranked, gold, 5), 3),
        "mrr": round(mrr(ranked, gold), 3),
        "ms": round(1000 * sum(times) / len(times), 1),
    }


if __name__ == "__main__":
    _ = ROOT
    main()
