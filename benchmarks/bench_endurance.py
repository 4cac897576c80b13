"""Endurance: the Octave manual (PDF + HTML) in one library, then N questions in a row.

    python benchmarks/bench_endurance.py [-n 200] [--max-tokens 48] [--per-chat 5]
                                         [--html-pages N] [--json]

The library (the PDF plus the HTML manual, about 2,900 pages) is built once and cached under
benchmarks/.work/folio-octave-pdf-html-200-40 (seeded from bench_retrieval's PDF library when
that exists), then copied to a temp folder for the run so nothing cached is written. Questions
come from benchmarks/octave_questions.json, cycled; later cycles are reworded so the same
text is not searched twice in a row. Answers go through `ChatEngine.ask` on the starter
model with max_tokens capped; a new chat every --per-chat questions.

Reported: RSS before the questions, sampled during them (every 0.25 s), after each question and
after the run; a least-squares line of the after-question RSS over the question index (MiB per
100 questions, also over the second half only, after caches have warmed); errors; search
latency (the retrieval step inside the chat engine) p50/p95 for the first and last 50
questions; answer time p50/p95.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import shlex
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
from _common import ROOT, mib, percentile

from app.core.chat.answers import ChatConfig, ChatEngine
from app.core.index.embedder import get_embedder
from app.core.chat.history import ChatStore
from app.core.index.ingest import IngestOptions, IngestSummary, ingest
from app.core.index.library import Library
from app.core.llm.runtime import LLMRuntime
from app.core.llm.provider import LoadSettings
from app.core.models.starter import ensure_starter_model

HERE = Path(__file__).resolve().parent
CORPUS = HERE / ".corpus"
WORK = HERE / ".work"
PDF_LIBRARY = WORK / "folio-octave-library-200-40"
CACHE = WORK / "folio-octave-pdf-html-200-40"
QUESTIONS = HERE / "octave_questions.json"
REWORDINGS = [
    "{q}",
    "In Octave: {q}",
    "Quick question about the Octave manual. {q}",
    "{q} Please answer briefly.",
    "I am new to Octave. {q}",
]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rss() -> int:
    return psutil.Process().memory_info().rss


class Sampler:
    """RSS every `interval` seconds in a background thread: (seconds since start, bytes)."""

    def __init__(self, interval: float = 0.25):
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._proc = psutil.Process()
        self._t0 = time.perf_counter()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append((time.perf_counter() - self._t0, self._proc.memory_info().rss))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def build_library(embedder, html_pages: int) -> tuple[Path, set[str]]:
    """The cached PDF + HTML library, built (or completed) here; returns (folder, the paths).

    `html_pages` > 0 takes only the first N HTML pages (by name), for a quicker first build:
    the whole HTML manual is 2,863 pages and about 6,700 chunks (2,563 of its pages, 4,257
    chunks, took 179 s on this 2-core machine with short test runs beside it)."""
    pdf, html = CORPUS / "octave.pdf", CORPUS / "html"
    if not pdf.is_file() or not html.is_dir():
        sys.exit(f"the Octave corpus is missing: run `make corpus` (needs {pdf} and {html}/)")
    pages = sorted(html.glob("*.html"))
    if html_pages > 0:
        pages = pages[:html_pages]
    if not (CACHE / "library.json").is_file() and (PDF_LIBRARY / "library.json").is_file():
        log(f"seeding {CACHE.name} from {PDF_LIBRARY.name}")
        shutil.copytree(PDF_LIBRARY, CACHE)
    t0 = time.perf_counter()
    lib = Library.open(CACHE, embedder)
    summary = IngestSummary()
    last = 0.0
    for ev in ingest(lib, [pdf, *pages], IngestOptions(), summary=summary):
        if time.perf_counter() - last > 30:
            last = time.perf_counter()
            log(f"  ingest: files {ev.files_done}/{ev.files_total}, chunks {ev.chunks_done}")
    wanted = {str(p.resolve()) for p in [pdf, *pages]}
    log(f"library ready in {time.perf_counter() - t0:.0f} s ({summary.ingested} indexed now, "
        f"{summary.skipped} unchanged, {len(summary.failed)} failed)")
    del lib
    gc.collect()
    return CACHE, wanted


def trim(lib: Library, wanted: set[str]) -> str:
    """Drop documents a run with a larger --html-pages left in the (copied) library."""
    for d in lib.documents():
        if d.path not in wanted:
            lib.remove(d)
    docs = [d for d in lib.documents() if d.status == "ready"]
    return (f"{len(docs)} documents (octave.pdf + {len(docs) - 1} HTML pages), "
            f"{lib.chunk_count()} chunks")


def fit(ys: list[float]) -> float:
    """Slope of a least-squares line through ys over their index (units of ys per index)."""
    if len(ys) < 2:
        return float("nan")
    return float(np.polyfit(np.arange(len(ys), dtype=float), np.asarray(ys, dtype=float), 1)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--questions", type=int, default=200)
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--per-chat", type=int, default=5, help="questions per chat before a new one")
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--html-pages", type=int, default=0,
                    help="only the first N HTML pages (default: all)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    command = "python " + " ".join(shlex.quote(a) for a in [
        str(Path(sys.argv[0]).resolve().relative_to(ROOT)) if Path(sys.argv[0]).resolve()
        .is_relative_to(ROOT) else sys.argv[0], *sys.argv[1:]])

    base = [q["question"] for q in json.loads(QUESTIONS.read_text("utf-8"))]
    questions = [REWORDINGS[(i // len(base)) % len(REWORDINGS)].format(q=base[i % len(base)])
                 for i in range(args.questions)]

    embedder = get_embedder()
    embedder.embed_query("warm up")
    cached, wanted = build_library(embedder, args.html_pages)
    model_path = ensure_starter_model(Path.home() / ".cache" / "folio-test-models")

    with tempfile.TemporaryDirectory(prefix="folio-bench-endurance-") as tmp_name:
        tmp = Path(tmp_name)
        shutil.copytree(cached, tmp / "library")
        lib = Library.open(tmp / "library", embedder)
        corpus = trim(lib, wanted)
        log(f"corpus: {corpus}")
        store = ChatStore.for_library(tmp / "library")
        runtime = LLMRuntime()
        info = runtime.load(model_path, LoadSettings(n_ctx=args.n_ctx))
        engine = ChatEngine(lib, runtime, store, config=ChatConfig())

        search_s: list[float] = []
        retrieve = engine._retrieve

        def timed_retrieve(query, scope):
            t = time.perf_counter()
            try:
                return retrieve(query, scope)
            finally:
                search_s.append(time.perf_counter() - t)

        engine._retrieve = timed_retrieve  # type: ignore[method-assign]

        gc.collect()
        rss_before = rss()
        log(f"RSS before the questions: {mib(rss_before)}; {args.questions} questions ...")
        after_q: list[int] = []
        answer_s: list[float] = []
        errors: list[str] = []
        no_sources = 0
        chat_id = None
        t_run = time.perf_counter()
        interrupted = False
        with Sampler() as sampler:
            for i, q in enumerate(questions):
                if interrupted:
                    break
                if i % args.per_chat == 0:
                    chat_id = store.create_chat(f"endurance {i // args.per_chat + 1}").id
                t = time.perf_counter()
                n_search = len(search_s)
                done = None
                try:
                    for ev in engine.ask(chat_id, q, overrides={"max_tokens": args.max_tokens,
                                                                "temperature": 0.0}):
                        if ev.kind == "error":
                            errors.append(f"q{i + 1}: {ev.text}")
                        elif ev.kind == "done":
                            done = ev
                except Exception as exc:  # noqa: BLE001 - counted and reported, the run goes on
                    errors.append(f"q{i + 1}: {type(exc).__name__}: {exc}")
                except KeyboardInterrupt:  # Ctrl-C / SIGINT: report the questions done so far
                    log(f"interrupted during question {i + 1}; reporting {i} questions")
                    interrupted = True
                    break
                answer_s.append(time.perf_counter() - t)
                if len(search_s) == n_search:
                    search_s.append(float("nan"))  # keep indices aligned with questions
                if done is not None and done.stats.get("no_sources"):
                    no_sources += 1
                after_q.append(rss())
                if (i + 1) % 10 == 0 or i == 0:
                    log(f"  q{i + 1}: {answer_s[-1]:.1f} s, search {search_s[-1] * 1000:.0f} ms, "
                        f"RSS {mib(after_q[-1])}, errors {len(errors)}")
        run_s = time.perf_counter() - t_run
        runtime.close()
        store.close()
        gc.collect()
        rss_after = rss()

    during = [b for _, b in sampler.samples]
    mb = [b / 2**20 for b in after_q]
    half = len(mb) // 2
    window = min(50, len(search_s))
    first = [s for s in search_s[:window] if not math.isnan(s)]
    last = [s for s in search_s[-window:] if not math.isnan(s)]
    result = {
        "command": command,
        "corpus": corpus,
        "model": f"{info.name} ({model_path.name}), n_ctx {info.n_ctx}, "
                 f"max_tokens {args.max_tokens}, {args.per_chat} questions per chat",
        "questions": len(after_q),
        "run_seconds": round(run_s, 1),
        "errors": len(errors),
        "error_messages": errors[:10],
        "no_sources_answers": no_sources,
        "rss_mib": {
            "before": round(rss_before / 2**20, 1),
            "during_min": round(min(during) / 2**20, 1) if during else None,
            "during_max": round(max(during) / 2**20, 1) if during else None,
            "after_first_question": round(mb[0], 1) if mb else None,
            "after_last_question": round(mb[-1], 1) if mb else None,
            "after_run": round(rss_after / 2**20, 1),
            "samples": len(during),
        },
        "rss_slope_mib_per_100q": round(fit(mb) * 100, 2),
        "rss_slope_second_half_mib_per_100q": round(fit(mb[half:]) * 100, 2),
        "search_ms": {
            f"first_{window}": {"p50": round(percentile(first, 50) * 1000, 1),
                                "p95": round(percentile(first, 95) * 1000, 1)},
            f"last_{window}": {"p50": round(percentile(last, 50) * 1000, 1),
                               "p95": round(percentile(last, 95) * 1000, 1)},
        },
        "answer_s": {"p50": round(percentile(answer_s, 50), 2),
                     "p95": round(percentile(answer_s, 95), 2)},
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    r, s = result["rss_mib"], result["search_ms"]
    print(f"\n{command}\ncorpus: {corpus}\nmodel: {result['model']}")
    print(f"{len(after_q)} questions in {run_s / 60:.1f} min, errors {len(errors)}, "
          f"'not in the documents' answers {no_sources}")
    rows = [
        ("RSS before questions", f"{r['before']:,.0f} MiB"),
        ("RSS during (min / max)", f"{r['during_min']:,.0f} / {r['during_max']:,.0f} MiB"),
        ("RSS after q1 / after last", f"{r['after_first_question']:,.0f} / "
                                      f"{r['after_last_question']:,.0f} MiB"),
        ("RSS after run (model closed)", f"{r['after_run']:,.0f} MiB"),
        ("RSS slope, all questions", f"{result['rss_slope_mib_per_100q']:+.1f} MiB / 100 q"),
        ("RSS slope, second half", f"{result['rss_slope_second_half_mib_per_100q']:+.1f} MiB / 100 q"),
        *[(f"search {k} p50 / p95", f"{v['p50']:.0f} / {v['p95']:.0f} ms") for k, v in s.items()],
        ("answer p50 / p95", f"{result['answer_s']['p50']:.1f} / {result['answer_s']['p95']:.1f} s"),
    ]
    width = max(len(a) for a, _ in rows)
    for a, b in rows:
        print(f"  {a:<{width}}  {b}")
    for e in errors[:10]:
        print("  error:", e)


if __name__ == "__main__":
    main()
