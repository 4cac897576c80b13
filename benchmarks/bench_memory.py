"""Memory over many answers, phase by phase: which part of answering makes RSS grow?

    python benchmarks/bench_memory.py [-n 60] [--warmup 5] [--max-tokens 32]
        [--phases raw,none,docs,docs-long] [--per-chat 5] [--trim] [--gc] [--tracemalloc] [--prime]
        [--arena-max]

Phases (each runs --warmup answers, then -n measured answers, on one loaded starter model):
  raw        LLMRuntime.generate on a prompt that differs per answer only in its last line
  none       ChatEngine.ask with scope "none" (no retrieval), a new chat every --per-chat answers
  docs       ChatEngine.ask with retrieval, a new chat every --per-chat answers
  docs-long  ChatEngine.ask with retrieval, all answers in one chat (history, condensing)

After each answer: RSS, and with --tracemalloc the Python heap (traced bytes). Reported per
phase: RSS slope (least squares over the answer index, MiB per 100 answers), Python-heap slope,
and the object types whose live count grew most. --trim calls glibc malloc_trim(0) after each
answer (if RSS then stays flat, the growth was freed memory the allocator kept, not a leak);
--gc runs gc.collect() after each answer.

Retrieval uses a copy of benchmarks/.work/folio-octave-library-200-40 (bench_retrieval's cached
Octave PDF library) when it exists, else a small library ingested from generated PDFs.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import gc
import shlex
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import psutil
from _common import ROOT

if "--arena-max" in sys.argv:  # before torch and lancedb start their threads
    from app.core.base.memory import limit_malloc_arenas

    limit_malloc_arenas(2)

from app.core.chat.answers import ChatConfig, ChatEngine
from app.core.index.embedder import get_embedder
from app.core.chat.history import ChatStore
from app.core.index.ingest import IngestOptions, ingest
from app.core.index.library import Library
from app.core.llm.provider import GenerationSettings, LoadSettings
from app.core.llm.runtime import LLMRuntime
from app.core.models.starter import ensure_starter_model

HERE = Path(__file__).resolve().parent
CACHED_LIBRARY = HERE / ".work" / "folio-octave-library-200-40"
QUESTIONS = [
    "How do I plot two lines in one figure?",
    "What does the hold command do?",
    "How do I read a CSV file into a matrix?",
    "How can I find the roots of a polynomial?",
    "What is the difference between a cell array and a struct?",
    "How do I write a for loop?",
    "How do I save variables to a file?",
    "How do I solve a linear system of equations?",
    "What does fminsearch do?",
    "How can I suppress output of a command?",
    "How do I define an anonymous function?",
    "How do I concatenate strings?",
]
_PROC = psutil.Process()


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rss_mib() -> float:
    return _PROC.memory_info().rss / 2**20


def slope(ys: list[float]) -> float:
    if len(ys) < 2:
        return float("nan")
    return float(np.polyfit(np.arange(len(ys), dtype=float), np.asarray(ys, dtype=float), 1)[0])


def malloc_trim() -> None:
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def type_counts() -> collections.Counter:
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


def small_library(root: Path, embedder) -> Library:
    sys.path.insert(0, str(ROOT / "tests"))
    from docgen import make_pdf  # type: ignore[import-not-found]

    docs = root / "docs"
    docs.mkdir()
    paths = []
    for i, q in enumerate(QUESTIONS):
        p = docs / f"note{i}.pdf"
        make_pdf(p, [f"{q}\n\nThe answer to this is explained here at some length. " * 6])
        paths.append(p)
    lib = Library.open(root / "library", embedder)
    for _ in ingest(lib, paths, IngestOptions()):
        pass
    return lib


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", "--answers", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--phases", default="raw,none,docs,docs-long")
    ap.add_argument("--per-chat", type=int, default=5)
    ap.add_argument("--n-ctx", type=int, default=4096)
    ap.add_argument("--trim", action="store_true", help="malloc_trim(0) after each answer")
    ap.add_argument("--gc", action="store_true", help="gc.collect() after each answer")
    ap.add_argument("--tracemalloc", action="store_true", help="trace the Python heap")
    ap.add_argument("--prime", action="store_true",
                    help="first fill the whole context once, so the KV cache is all resident "
                         "(separates its one-time growth from a trend)")
    ap.add_argument("--arena-max", action="store_true",
                    help="app.core.base.memory.limit_malloc_arenas(2) at start (glibc arenas)")
    ap.add_argument("--small-library", action="store_true",
                    help="ingest a few generated PDFs instead of the cached Octave library")
    args = ap.parse_args()
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    command = "python benchmarks/bench_memory.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])

    embedder = get_embedder()
    embedder.embed_query("warm up")
    model_path = ensure_starter_model(Path.home() / ".cache" / "folio-test-models")
    rows = []
    with tempfile.TemporaryDirectory(prefix="folio-bench-memory-") as tmp_name:
        tmp = Path(tmp_name)
        if CACHED_LIBRARY.is_dir() and not args.small_library:
            shutil.copytree(CACHED_LIBRARY, tmp / "library")
            lib = Library.open(tmp / "library", embedder)
            corpus = f"Octave PDF library ({lib.chunk_count()} chunks)"
        else:
            lib = small_library(tmp, embedder)
            corpus = f"generated PDFs ({lib.chunk_count()} chunks)"
        store = ChatStore.for_library(tmp / "library")
        runtime = LLMRuntime()
        runtime.load(model_path, LoadSettings(n_ctx=args.n_ctx))
        engine = ChatEngine(lib, runtime, store, config=ChatConfig())
        overrides = {"max_tokens": args.max_tokens, "temperature": 0.0}
        if args.prime:
            filler = " ".join(QUESTIONS) + "\n"
            prompt = filler
            while runtime.count_tokens(prompt + filler) < args.n_ctx - args.max_tokens - 16:
                prompt += filler
            for _ in runtime.generate(prompt, GenerationSettings(temperature=0.0, max_tokens=8)):
                pass
            log(f"primed the context ({runtime.count_tokens(prompt)} tokens): RSS {rss_mib():.0f} MiB")
        if args.tracemalloc:
            tracemalloc.start(12)

        for phase in phases:
            state: dict = {"chat": None, "i": 0}

            def answer(i: int, phase: str = phase, state: dict = state) -> None:
                q = QUESTIONS[i % len(QUESTIONS)] + f" (variant {i})"
                if phase == "raw":
                    prompt = ("Answer the question in one sentence.\n\n"
                              f"Question: {q}\nAnswer:")
                    for _ in runtime.generate(prompt, GenerationSettings(
                            temperature=0.0, max_tokens=args.max_tokens)):
                        pass
                    return
                new_chat = state["chat"] is None or (
                    phase != "docs-long" and i % args.per_chat == 0)
                if new_chat:
                    scope = {"mode": "none"} if phase == "none" else None
                    state["chat"] = store.create_chat(f"{phase} {i}", scope=scope).id
                for ev in engine.ask(state["chat"], q, overrides=overrides):
                    if ev.kind == "error":
                        log(f"  error: {ev.text}")

            for i in range(args.warmup):
                answer(i)
            gc.collect()
            if args.trim:
                malloc_trim()
            counts0 = type_counts()
            snap0 = tracemalloc.take_snapshot() if args.tracemalloc else None
            rss: list[float] = []
            heap: list[float] = []
            t0 = time.perf_counter()
            for i in range(args.warmup, args.warmup + args.answers):
                answer(i)
                if args.gc:
                    gc.collect()
                if args.trim:
                    malloc_trim()
                rss.append(rss_mib())
                if args.tracemalloc:
                    heap.append(tracemalloc.get_traced_memory()[0] / 2**20)
                if (i - args.warmup + 1) % 20 == 0:
                    log(f"  {phase}: {i - args.warmup + 1}/{args.answers}, RSS {rss[-1]:.0f} MiB")
            seconds = time.perf_counter() - t0
            gc.collect()
            grown = (type_counts() - counts0).most_common(5)
            rows.append((phase, rss[0], rss[-1], slope(rss) * 100,
                         slope(heap) * 100 if heap else float("nan"), seconds, grown))
            log(f"{phase}: RSS {rss[0]:.0f} -> {rss[-1]:.0f} MiB, "
                f"slope {slope(rss) * 100:+.1f} MiB/100")
            if snap0 is not None:
                top = tracemalloc.take_snapshot().compare_to(snap0, "lineno")[:5]
                for stat in top:
                    log(f"    {stat}")
        runtime.close()
        store.close()

    print(f"\n{command}\ncorpus: {corpus}; model: {model_path.name}, max_tokens "
          f"{args.max_tokens}, {args.answers} answers per phase after {args.warmup} warm-up; "
          f"trim={args.trim} gc={args.gc} prime={args.prime} "
          f"arena_max={args.arena_max}")
    print(f"  {'phase':<10} {'RSS first':>10} {'RSS last':>10} {'RSS MiB/100':>12} "
          f"{'heap MiB/100':>13} {'s/answer':>9}  objects grown")
    for phase, first, last, s_rss, s_heap, seconds, grown in rows:
        objs = ", ".join(f"{name} +{n}" for name, n in grown) or "-"
        print(f"  {phase:<10} {first:>10.0f} {last:>10.0f} {s_rss:>+12.1f} {s_heap:>+13.2f} "
              f"{seconds / args.answers:>9.2f}  {objs}")


if __name__ == "__main__":
    main()
