"""Retrieval quality on several question sets (issue 13), and on one PDF against LocalDocs.

    python benchmarks/bench_retrieval.py                    # every set, and their mean
    python benchmarks/bench_retrieval.py --set debian-faq   # one set (repeatable)
    python benchmarks/bench_retrieval.py benchmarks/.corpus/octave.pdf [--questions Q.json]

The sets (benchmarks/question_sets.py) are different kinds of documentation: the GNU Octave
reference manual (PDF), the Debian FAQ (PDF) and Python's tutorial, FAQ and HOWTOs (HTML),
each with paraphrased questions whose answer locations check_questions.py verifies
(`bash benchmarks/fetch_question_sets.sh` fetches the documents). All documents go into one
library, as a user's would, so a short FAQ answer competes with 1,158 reference pages; a
result hits only when it comes from the gold file and covers a gold page or lies in a gold
section. For each set: Folio's default search (hybrid), vector only and BM25 only, with
hit@1/3/5/10 and MRR over the top 10; then the mean over sets, which is what defaults are
chosen on (a default must also not lose hit@1 to vector search on any set).

Given a PDF, it runs the original single-manual comparison: that PDF alone in its own
library, `--questions` (default octave_questions.json) on it, and GPT4All LocalDocs' scheme
(words packed into 512-character chunks, no overlap, pure vector search;
benchmarks/localdocs_baseline.py) beside Folio, with the same embedder.

Libraries (and LocalDocs vectors) are cached under benchmarks/.work so reruns are quick;
--fresh rebuilds them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from _common import ROOT
from question_sets import CORPUS, FETCH, SETS, first_hit_rank, get_set, gold_locations, scores

from app.core.documents.splitter import SplitterConfig
from app.core.index.embedder import get_embedder
from app.core.index.ingest import IngestOptions, IngestSummary, ingest
from app.core.index.library import Library
from app.core.index.search import hybrid_search

HERE = Path(__file__).resolve().parent
KS = (1, 3, 5, 10)
DEFAULT = "folio default (hybrid)"
CONFIGS = [
    (DEFAULT, dict(mode="hybrid")),
    ("folio vector", dict(mode="vector")),
    ("folio bm25", dict(mode="fts")),
]

MMR = ("folio chat (hybrid + MMR)", dict(mode="hybrid", mmr=True))  # what the chat retrieves
SET_CONFIGS = [CONFIGS[0], MMR, *CONFIGS[1:]]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pdf", type=Path, nargs="?",
                    help="run the single-PDF comparison with LocalDocs on this PDF instead")
    ap.add_argument("--set", action="append", dest="sets", metavar="NAME",
                    help=f"only this set (repeatable): {', '.join(s.name for s in SETS)}")
    ap.add_argument("--questions", type=Path, help="question file for the PDF "
                    "(default benchmarks/octave_questions.json)")
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--work", type=Path, default=HERE / ".work")
    ap.add_argument("--fresh", action="store_true", help="rebuild the cached indexes")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--details", type=Path, help="write per-question ranks here")
    ap.add_argument("--chunk-tokens", type=int, help="splitter chunk size (default: Folio's)")
    ap.add_argument("--overlap-tokens", type=int, help="splitter overlap (default: Folio's)")
    ap.add_argument("--embedder", metavar="NAME", help="build and search the libraries with "
                    "this embedder (default: Folio's, all-MiniLM-L6-v2; e.g. all-mpnet-base-v2 "
                    "once `folio embedders install` has put it in place); its own cache")
    ap.add_argument("--reranker", metavar="NAME", help="also measure the default followed by "
                    "this installed cross-encoder (app/core/index/rerank.py: a name in the "
                    "rerankers folder, or a folder)")
    args = ap.parse_args()

    config = SplitterConfig()
    if args.reranker:
        from app.core.index import rerank

        try:
            stage = rerank.find(args.reranker)
        except rerank.RerankerError as exc:
            ap.error(str(exc))
        if stage is not None:
            SET_CONFIGS.append((f"folio default + rerank ({stage.name})",
                                dict(mode="hybrid", reranker=stage)))
    if args.chunk_tokens:
        config.chunk_tokens = args.chunk_tokens
    if args.overlap_tokens is not None:
        config.overlap_tokens = args.overlap_tokens
    if args.pdf is not None or args.questions is not None:
        if args.sets:
            ap.error("--set is for the question sets, not a PDF with --questions")
        return single_pdf(args, config)
    return question_sets(args, config)


def _build(lib_dir: Path, paths: list[Path], config: SplitterConfig, fresh: bool,
           embedder: str | None = None):
    if embedder:
        lib_dir = lib_dir.with_name(f"{lib_dir.name}-{Path(embedder).name}")
    if fresh:
        shutil.rmtree(lib_dir, ignore_errors=True)
    t0 = time.perf_counter()
    lib = Library.open(lib_dir, get_embedder(embedder))
    summary = IngestSummary()
    for _ in ingest(lib, paths, IngestOptions(splitter=config), summary=summary):
        pass
    return lib, time.perf_counter() - t0, summary


def _evaluate(lib: Library, questions: list[dict], locations: list, configs) -> tuple[dict, list]:
    """Scores per configuration and per-question ranks; each question is embedded once."""
    ranks: dict[str, list[int | None]] = {label: [] for label, _ in configs}
    times: dict[str, float] = {label: 0.0 for label, _ in configs}
    details = []
    for q, locs in zip(questions, locations, strict=True):
        qvec = lib.embedder.embed_query(q["question"])
        row = {"id": q["id"], "question": q["question"]}
        for label, kw in configs:
            t = time.perf_counter()
            results = hybrid_search(lib, q["question"], k=10, query_vector=qvec, **kw)
            times[label] += time.perf_counter() - t
            rank = first_hit_rank(results, locs)
            ranks[label].append(rank)
            row[label] = {"rank": rank, "top": [_where(r) for r in results[:3]]}
        details.append(row)
    rows = {}
    for label, _ in configs:
        rows[label] = scores(ranks[label], KS)
        rows[label]["ms"] = round(1000 * times[label] / max(1, len(questions)), 1)
    return rows, details


def _where(r) -> str:
    name = Path(r.path).name
    if r.page is not None:
        return f"{name} p{r.page}" + (f"-{r.page_end}" if r.page_end not in (None, r.page) else "")
    return f"{name} § {r.section.rsplit(' > ', 1)[-1]}"


def question_sets(args, config: SplitterConfig) -> int:
    try:
        chosen = [get_set(n) for n in args.sets] if args.sets else list(SETS)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    # Every set's documents go into the one library, whichever sets are evaluated, so a set's
    # numbers do not depend on which others were asked for.
    documents = [args.corpus / d for s in SETS for d in s.documents]
    missing = [str(d) for d in documents if not d.exists()]
    if missing:
        print(f"not found: {', '.join(missing)}; run {FETCH}", file=sys.stderr)
        return 2
    lib_dir = args.work / f"folio-question-sets-{config.chunk_tokens}-{config.overlap_tokens}"
    lib, build_s, summary = _build(lib_dir, documents, config, args.fresh, args.embedder)
    for failed in summary.failed:
        print(f"not ingested: {failed}", file=sys.stderr)

    out = {"library": {"documents": len(lib.documents()), "chunks": lib.chunk_count(),
                       "build_s": round(build_s, 1), "chunk_tokens": config.chunk_tokens,
                       "overlap_tokens": config.overlap_tokens,
                       "embedder": lib.embedder.name},
           "sets": {}, "mean": {}}
    all_details = {}
    for qset in chosen:
        questions = qset.load()
        locations = [gold_locations(q, qset.documents[0]) for q in questions]
        rows, details = _evaluate(lib, questions, locations, SET_CONFIGS)
        out["sets"][qset.name] = {"kind": qset.kind, "questions": len(questions), "results": rows}
        all_details[qset.name] = details
    for label, _ in SET_CONFIGS:
        per_set = [s["results"][label] for s in out["sets"].values()]
        out["mean"][label] = {key: round(sum(r[key] for r in per_set) / len(per_set), 3)
                              for key in per_set[0]}
    out["default_loses_hit1_to_vector"] = sorted(
        name for name, s in out["sets"].items()
        if s["results"][DEFAULT]["hit@1"] < s["results"]["folio vector"]["hit@1"]
    )
    if args.details:
        args.details.write_text(json.dumps(all_details, indent=1, ensure_ascii=False))
    if args.json:
        print(json.dumps(out))
        return 0
    lib_info = out["library"]
    print(f"one library: {lib_info['documents']} documents, {lib_info['chunks']} chunks "
          f"({config.chunk_tokens} tokens, overlap {config.overlap_tokens}; "
          f"{lib_info['embedder']}, built in {lib_info['build_s']} s)")
    print(_table(out))
    losers = out["default_loses_hit1_to_vector"]
    print("default loses hit@1 to vector search on: " + (", ".join(losers) if losers else "no set"))
    return 0


def _table(out: dict) -> str:
    head = "| set | search | " + " | ".join(f"hit@{k}" for k in KS) + " | MRR | ms/q |"
    lines = [head, "| " + " | ".join(["---"] * (len(KS) + 4)) + " |"]
    blocks = [(f"{name} ({s['questions']} q)", s["results"]) for name, s in out["sets"].items()]
    blocks.append((f"**mean of {len(out['sets'])} sets**", out["mean"]))
    for name, results in blocks:
        for label, r in results.items():
            cells = [f"{r[f'hit@{k}']:.3f}" for k in KS] + [f"{r['mrr']:.3f}", f"{r['ms']:.1f}"]
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def single_pdf(args, config: SplitterConfig) -> int:
    from localdocs_baseline import build_localdocs_index

    pdf = args.pdf or args.corpus / "octave.pdf"
    if not pdf.exists():
        print(f"{pdf} not found: run {FETCH}", file=sys.stderr)
        return 2
    questions = json.loads((args.questions or HERE / "octave_questions.json").read_text("utf-8"))
    # pages refer to this PDF whatever path the question file was written for
    for q in questions:
        q.pop("path", None)
    locations = [gold_locations(q, pdf.name) for q in questions]
    lib_dir = args.work / f"folio-octave-library-{config.chunk_tokens}-{config.overlap_tokens}"
    if args.fresh:
        for f in args.work.glob("localdocs-*.npy"):
            f.unlink()
    lib, build_s, _ = _build(lib_dir, [pdf], config, args.fresh, args.embedder)
    local = build_localdocs_index(pdf, lib.embedder, cache_dir=args.work)

    configs = SET_CONFIGS
    rows, details = _evaluate(lib, questions, locations, configs)
    ranks, spent = [], 0.0
    for q, locs, row in zip(questions, locations, details, strict=True):
        t = time.perf_counter()
        pages = [page for page, _, _ in local.search(q["question"], 10)]
        spent += time.perf_counter() - t
        hit = next((i + 1 for i, p in enumerate(pages) if any(loc.page == p for loc in locs)), None)
        ranks.append(hit)
        row["localdocs (baseline)"] = {"rank": hit, "top": pages[:3]}
    rows["localdocs (baseline)"] = scores(ranks, KS)
    rows["localdocs (baseline)"]["ms"] = round(1000 * spent / max(1, len(questions)), 1)

    out = {"questions": len(questions), "folio_chunks": lib.chunk_count(),
           "localdocs_chunks": len(local.chunks), "folio_index_build_s": round(build_s, 1),
           "results": rows}
    if args.details:
        args.details.write_text(json.dumps(details, indent=1, ensure_ascii=False))
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{len(questions)} questions; Folio {out['folio_chunks']} chunks "
          f"({config.chunk_tokens} tokens, overlap {config.overlap_tokens}), "
          f"LocalDocs {out['localdocs_chunks']} chunks")
    print(f"{'':24} " + " ".join(f"{'hit@' + str(k):>6}" for k in KS) + f" {'MRR':>6} {'ms/q':>6}")
    for label, r in rows.items():
        print(f"{label:24} " + " ".join(f"{r[f'hit@{k}']:6.3f}" for k in KS)
              + f" {r['mrr']:6.3f} {r['ms']:6.1f}")
    return 0


if __name__ == "__main__":
    _ = ROOT
    sys.exit(main())
