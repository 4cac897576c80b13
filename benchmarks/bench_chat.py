"""Chat latency: Folio's chat engine against raw llama-cpp-python on the same model and prompt.

    python benchmarks/bench_chat.py [--questions 8] [--trials 20] [--json]

Issue targets: time to first token (TTFT) and decode tokens/s through `ChatEngine.ask` within
5% of raw llama-cpp-python on the same model, prompt and settings, measured in the same run;
cancel latency (p95) and peak RSS while answering with a full context.

Corpus: the Octave manual library that bench_retrieval.py caches under
benchmarks/.work/folio-octave-library-200-40 (copied to a temp dir, never written in place) with
the questions from octave_questions.json; without it, a few PDFs from /usr/share/doc, else a
handful of PDFs generated with PyMuPDF from Python's own docstrings, ingested with Folio, with
questions made from their chunks. The run prints which corpus it used.

Both sides load the starter model (Gemma 3 270M, Q4_K_M) with n_ctx 4096 and the same threads
and batch: raw gets the threads/batch Folio's ModelInfo reports after load (and n_ubatch =
n_batch, n_threads_batch = n_threads, as Folio loads it).

Comparison, per question, alternating which side goes first to cancel drift:
* Folio: `ChatEngine.ask` on a fresh chat with overrides temperature 0, max_tokens 64, seed 1.
  A wrapper around `runtime.generate` records the exact prompt and settings the engine sent.
* Raw: `Llama.create_completion(prompt, stream=True)` with that prompt and the same temperature,
  top_p, top_k, min_p, repeat_penalty, stop strings, max_tokens and seed. Raw cannot wait for
  Folio's prompt when it goes first, so every question's prompt is built beforehand with the
  engine's own retrieval and budgeting (`_retrieve`, `_fit_prompt`), and the prompt Folio then
  sends is checked to be byte-identical (a mismatch is reported).
* KV cache: both sides start every measured call from an empty cache. A seeded Folio generation
  (seed 1 here) always resets the cache and evaluates the whole prompt (see `LLMRuntime._prefill`);
  raw gets `llm.reset()` before each call. So neither side reuses a prefix, and both pay the full
  prompt. Both evaluate the prompt in n_batch-sized batches; Folio's cancel works through
  llama.cpp's abort callback rather than by slicing the prompt.
* TTFT, Folio: from calling ask() to its first "token" event (includes saving the question,
  query embedding, hybrid search, prompt building and token counting: Folio's real overhead),
  and from the engine's generate() call to the first Token it receives. Raw: from calling
  create_completion to the first streamed chunk with text. Also reported: each side's own
  first-sampled-token time (Folio's Done.ttft_seconds; raw: a wrapper around Llama.generate).
* Decode tokens/s: (completion tokens - 1) / (end - first token), where end is when the runtime's
  Done reaches the engine (Folio) or the stream ends (raw): n-1 token intervals lie between the
  first and the last token. Completion tokens are counted the same way on both sides (sampled
  ids, end-of-generation excluded); the ids are compared and mismatches reported.
* Overhead: Folio median / raw median - 1 for TTFT; raw median tok/s / Folio median - 1 for
  decode; PASS when at most 5%. The median of the per-question ratios is shown beside it.

Cancel latency: `--trials` answers through the engine (temperature 0.8, max_tokens 400, no seed)
to one question, each on a fresh chat (so the KV cache holds all but the last prompt token),
consumed on another thread. The cancel Event is set a random 0.1-1.0 s after the first token
(so it lands in decode; answers that end on their own first are retried), and the latency runs
from set() to the engine's "done" event (and to the runtime's Done, shown beside it). Then 5
trials cancel during the prefill of ~3,500-token prompts (a random 0.3-2.0 s after the engine
calls generate; each trial a different question, so little prefix is cached).

Peak RSS: one answer through the engine with a prompt filling ~3,500 of the 4,096 tokens
(ChatConfig k=30, min_similarity 0, max_tokens 512: the engine drops sources until the prompt
fits 4096 - 512 - 8 tokens), sampled every 50 ms. It runs first, before the raw model is loaded
(a freed model does not give all its memory back), so the figure is Folio's own. RSS before any
model is loaded is shown too.

Order: load Folio -> full-context answer (peak RSS) -> load raw -> warm-up and comparison ->
free raw -> prefill cancels -> decode cancels. Progress goes to stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict
from pathlib import Path

from _common import ROOT, PeakRSS, mib, percentile, tree_rss

from app.core.chat.answers import ChatConfig, ChatEngine, source_dict
from app.core.index.embedder import get_embedder
from app.core.chat.history import ChatStore
from app.core.index.ingest import IngestOptions, IngestSummary, ingest
from app.core.index.library import Library
from app.core.llm.provider import Done, GenerationSettings, LoadSettings, Token, default_threads
from app.core.llm.runtime import LLMRuntime
from app.core.llm.host import ModelHost
from app.core.models.starter import ensure_starter_model

HERE = Path(__file__).resolve().parent
CACHED_LIBRARY = HERE / ".work" / "folio-octave-library-200-40"
OCTAVE_QUESTIONS = HERE / "octave_questions.json"
N_CTX = 4096
COMPARE = {"temperature": 0.0, "max_tokens": 64, "seed": 1}
CANCEL = {"temperature": 0.8, "max_tokens": 400, "seed": None}
FULL = {"temperature": 0.0, "max_tokens": 512, "seed": 1}
FULL_CONFIG = {"k": 30, "candidates": 60, "min_similarity": 0.0}
PREFILL_TRIALS = 5
TARGET = 0.05

now = time.perf_counter


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rss() -> int:
    return tree_rss()


# -- corpus ------------------------------------------------------------------------------------


def open_corpus(tmp: Path, embedder) -> tuple[Library, list[str], str]:
    """(library, questions, description) from the best corpus available."""
    if (CACHED_LIBRARY / "library.json").is_file() and OCTAVE_QUESTIONS.is_file():
        try:
            dest = tmp / "library"
            shutil.copytree(CACHED_LIBRARY, dest)
            lib = Library.open(dest, embedder)
            if lib.chunk_count() > 0:
                questions = [q["question"] for q in json.loads(OCTAVE_QUESTIONS.read_text("utf-8"))]
                return lib, questions, (
                    f"Octave manual: cached Folio library {CACHED_LIBRARY.relative_to(ROOT)} "
                    f"({lib.chunk_count()} chunks), questions from {OCTAVE_QUESTIONS.name}"
                )
        except Exception as exc:  # noqa: BLE001 - e.g. being rebuilt right now: use another
            log(f"cached Octave library unusable ({exc}); ingesting another corpus")
        shutil.rmtree(tmp / "library", ignore_errors=True)

    pdfs: list[Path] = []
    try:
        found = subprocess.run(["find", "/usr/share/doc", "-name", "*.pdf"], capture_output=True,
                               text=True, timeout=30).stdout.split()
        pdfs = [Path(p) for p in sorted(found)[:3]]
    except (OSError, subprocess.SubprocessError):
        pass
    what = "PDFs from /usr/share/doc: " + ", ".join(p.name for p in pdfs)
    if not pdfs:
        pdfs = generate_pdfs(tmp / "pdfs")
        what = f"{len(pdfs)} PDFs generated with PyMuPDF from Python standard-library docstrings"
    lib = Library.open(tmp / "library", embedder)
    summary = IngestSummary()
    for _ in ingest(lib, pdfs, IngestOptions(), summary=summary):
        pass
    table = lib.chunks_table().to_arrow()
    texts = [t for t in table.column("text").to_pylist() if len(t.split()) >= 20]
    step = max(1, len(texts) // 64)
    questions = []
    for text in texts[::step]:
        words = " ".join(text.split()[:12]).strip(" .,:;")
        questions.append(f"What do the documents say about {words}?")
    return lib, questions, f"{what} ({summary.pages} pages, {summary.chunks} chunks)"


def generate_pdfs(folder: Path) -> list[Path]:
    import pydoc

    import pymupdf

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name in ("argparse", "json", "sqlite3", "threading", "logging"):
        module = __import__(name)
        text = pydoc.render_doc(module, renderer=pydoc.plaintext)
        doc = pymupdf.open()
        lines = text.splitlines()
        for start in range(0, min(len(lines), 60 * 40), 60):
            page = doc.new_page()
            page.insert_textbox(pymupdf.Rect(40, 40, 560, 800), "\n".join(lines[start:start + 60]),
                                fontsize=8)
        path = folder / f"{name}.pdf"
        doc.save(path)
        out.append(path)
    return out


# -- instrumentation ---------------------------------------------------------------------------


class GenerateRecorder:
    """Wraps `runtime.generate` (on the instance): records each call's prompt, settings, the
    call time, when the first Token and the Done reach the caller, and the Done itself."""

    def __init__(self, runtime: LLMRuntime):
        self.runtime = runtime
        self.real = runtime.generate
        self.calls: list[dict] = []
        self.called = threading.Event()
        runtime.generate = self  # type: ignore[method-assign]

    def __call__(self, prompt, settings=None, cancel=None, **kw):
        call = {"prompt": prompt, "settings": settings, "t_call": now(), "t_first": None,
                "t_end": None, "done": None}
        self.calls.append(call)
        events = self.real(prompt, settings, cancel, **kw)
        self.called.set()
        return self._watch(events, call)

    @staticmethod
    def _watch(events, call):
        try:
            for event in events:
                t = now()
                if isinstance(event, Token) and call["t_first"] is None:
                    call["t_first"] = t
                elif isinstance(event, Done):
                    call["t_end"], call["done"] = t, event
                yield event
        finally:
            events.close()

    def restore(self) -> None:
        del self.runtime.generate


def expected_prompt(engine: ChatEngine, question: str, max_tokens: int) -> tuple[str, int] | None:
    """The prompt `ask` will build for a first question in a chat, the way `_answer` builds it
    (same retrieval, relevance cut and budget), or None when nothing relevant is found."""
    info = engine.llm.info
    cfg = engine.config
    results = engine._retrieve(question, {"mode": "all"})
    relevant = [r for r in results if r.similarity >= cfg.min_similarity]
    if not relevant:
        return None
    sources = [source_dict(i, r) for i, r in enumerate(relevant, 1)]
    budget = min(max_tokens, max(64, info.n_ctx // 3))
    prompt, _, sources, _ = engine._fit_prompt(question, sources, [], "", info.n_ctx - budget - 8)
    return prompt_text(prompt), len(sources)


def prompt_text(prompt) -> str:
    """The engine hands the runtime a Prompt of trusted and untrusted parts; raw llama.cpp gets
    its text, tokenized with special parsing on. For documents without control-token spellings
    (the corpora here) the ids are the same, and the run compares them (ids_same)."""
    return getattr(prompt, "text", prompt)


def folio_answer(engine: ChatEngine, store: ChatStore, rec: GenerateRecorder, question: str,
                 overrides: dict) -> dict:
    chat = store.create_chat()
    n_calls = len(rec.calls)
    t0 = now()
    t_first = None
    final = None
    for event in engine.ask(chat.id, question, overrides=overrides):
        if event.kind == "token" and t_first is None:
            t_first = now()
        elif event.kind == "error":
            raise RuntimeError(f"Folio answered with an error: {event.text}")
        elif event.kind == "done":
            final = event
    t_done = now()
    calls = rec.calls[n_calls:]
    if len(calls) != 1 or final is None:
        raise RuntimeError(f"expected one generate() call per answer, got {len(calls)}")
    call = calls[0]
    done: Done = call["done"]
    n = done.completion_tokens
    decode = call["t_end"] - call["t_first"] if call["t_first"] else 0.0
    return {
        "prompt": prompt_text(call["prompt"]),
        "settings": call["settings"],
        "ttft_ask": (t_first - t0) if t_first else None,
        "ttft_generate": (call["t_first"] - call["t_call"]) if call["t_first"] else None,
        "ttft_sampled": done.ttft_seconds,
        "before_generate": call["t_call"] - t0,
        "tok_s": (n - 1) / decode if n > 1 and decode > 0 else None,
        "completion_tokens": n,
        "prompt_tokens": done.prompt_tokens,
        "ids": list(done.token_ids),
        "finish": done.finish_reason,
        "text": final.text,
        "wall": t_done - t0,
    }


def raw_answer(raw, prompt: str, s: GenerationSettings) -> dict:
    import llama_cpp

    vocab = llama_cpp.llama_model_get_vocab(raw.model)
    sampled: list[tuple[float, int]] = []
    real_generate = raw.generate

    def generate(*args, **kwargs):
        for token in real_generate(*args, **kwargs):
            sampled.append((now(), int(token)))
            yield token

    raw.reset()  # empty KV cache, like Folio's seeded prefill
    raw.generate = generate
    try:
        t0 = now()
        t_first = None
        parts = []
        finish = None
        for chunk in raw.create_completion(
            prompt, max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p,
            top_k=s.top_k, min_p=s.min_p, repeat_penalty=s.repeat_penalty, stop=list(s.stop),
            seed=s.seed, stream=True,
        ):
            choice = chunk["choices"][0]
            if choice["text"] and t_first is None:
                t_first = now()
            parts.append(choice["text"])
            finish = choice.get("finish_reason") or finish
        t_end = now()
    finally:
        del raw.generate
    ids = [t for _, t in sampled if not llama_cpp.llama_vocab_is_eog(vocab, t)]
    n = len(ids)
    decode = t_end - t_first if t_first else 0.0
    return {
        "ttft": (t_first - t0) if t_first else None,
        "ttft_sampled": (sampled[0][0] - t0) if sampled else None,
        "tok_s": (n - 1) / decode if n > 1 and decode > 0 else None,
        "completion_tokens": n,
        "ids": ids,
        "finish": finish,
        "text": "".join(parts).strip(),
    }


# -- phases ------------------------------------------------------------------------------------


def compare(engine, store, rec, raw, questions: list[str], n: int) -> dict:
    """Folio vs raw on n questions that retrieve something, alternating who goes first."""
    info = engine.llm.info
    chosen: list[tuple[str, str]] = []
    for q in questions:
        built = expected_prompt(engine, q, COMPARE["max_tokens"])
        if built is not None:
            chosen.append((q, built[0]))
        if len(chosen) == n + 1:
            break
    if len(chosen) < 2:
        raise SystemExit("fewer than 2 questions retrieve anything from this corpus")
    (warm_q, warm_prompt), chosen = chosen[0], chosen[1:]

    # Warm-up (not measured): page in both models, build the search indexes, and learn the
    # settings the engine sends (the same for every first question of a chat).
    log("warm-up ...")
    warm = folio_answer(engine, store, rec, warm_q, COMPARE)
    settings: GenerationSettings = warm["settings"]
    raw_answer(raw, warm["prompt"], settings)

    rows = []
    for i, (question, prompt) in enumerate(chosen):
        log(f"question {i + 1}/{len(chosen)} ({'Folio' if i % 2 == 0 else 'raw'} first) ...")
        if i % 2 == 0:
            f = folio_answer(engine, store, rec, question, COMPARE)
            r = raw_answer(raw, prompt, settings)
        else:
            r = raw_answer(raw, prompt, settings)
            f = folio_answer(engine, store, rec, question, COMPARE)
        rows.append({
            "question": question,
            "prompt_tokens": f["prompt_tokens"],
            "prompt_same": f["prompt"] == prompt,
            "settings_same": f["settings"] == settings,
            "folio": {k: v for k, v in f.items() if k not in ("prompt", "settings")},
            "raw": r,
            "ids_same": f["ids"] == r["ids"],
        })

    def med(side: str, key: str) -> float:
        vals = [row[side][key] for row in rows if row[side][key] is not None]
        return statistics.median(vals) if vals else float("nan")

    def paired(key_f: str, key_r: str, invert: bool = False) -> float:
        ratios = []
        for row in rows:
            a, b = row["folio"][key_f], row["raw"][key_r]
            if a and b:
                ratios.append(b / a if invert else a / b)
        return statistics.median(ratios) - 1 if ratios else float("nan")

    ttft_ask, ttft_gen = med("folio", "ttft_ask"), med("folio", "ttft_generate")
    ttft_raw = med("raw", "ttft")
    tps_f, tps_r = med("folio", "tok_s"), med("raw", "tok_s")
    over = {
        "ttft_ask": ttft_ask / ttft_raw - 1,
        "ttft_generate": ttft_gen / ttft_raw - 1,
        "ttft_sampled": med("folio", "ttft_sampled") / med("raw", "ttft_sampled") - 1,
        "decode": tps_r / tps_f - 1,
    }
    return {
        "warm_question": warm_q,
        "model": info.name,
        "threads": info.threads,
        "batch": info.batch_size,
        "n_ctx": info.n_ctx,
        "questions": len(rows),
        "settings": {k: v for k, v in asdict(settings).items()},
        "prompt_tokens_median": statistics.median(r["prompt_tokens"] for r in rows),
        "prompts_identical": sum(r["prompt_same"] for r in rows),
        "settings_identical": sum(r["settings_same"] for r in rows),
        "token_ids_identical": sum(r["ids_same"] for r in rows),
        "completion_tokens_folio": [r["folio"]["completion_tokens"] for r in rows],
        "completion_tokens_raw": [r["raw"]["completion_tokens"] for r in rows],
        "ttft_s": {
            "folio_ask": ttft_ask,
            "folio_generate": ttft_gen,
            "folio_sampled": med("folio", "ttft_sampled"),
            "folio_before_generate": med("folio", "before_generate"),
            "raw": ttft_raw,
            "raw_sampled": med("raw", "ttft_sampled"),
        },
        "decode_tok_s": {"folio": tps_f, "raw": tps_r},
        "overhead": over,
        "overhead_paired_median": {
            "ttft_ask": paired("ttft_ask", "ttft"),
            "ttft_generate": paired("ttft_generate", "ttft"),
            "decode": paired("tok_s", "tok_s", invert=True),
        },
        "pass": {k: bool(v <= TARGET) for k, v in over.items() if k != "ttft_sampled"},
        "rows": rows,
    }


def full_context_answer(engine, store, rec, question: str) -> dict:
    before = rss()
    with PeakRSS() as peak:
        f = folio_answer(engine, store, rec, question, FULL)
    return {
        "question": question,
        "prompt_tokens": f["prompt_tokens"],
        "completion_tokens": f["completion_tokens"],
        "context_used": f["prompt_tokens"] + f["completion_tokens"],
        "finish": f["finish"],
        "ttft_ask_s": f["ttft_ask"],
        "tok_s": f["tok_s"],
        "wall_s": f["wall"],
        "rss_before": before,
        "peak_rss": peak.peak,
    }


def cancel_decode(engine, store, rec, question: str, trials: int, rng: random.Random) -> dict:
    done_lat, runtime_lat, early = [], [], 0
    attempts = 0
    while len(done_lat) < trials and attempts < trials * 3:
        attempts += 1
        cancel, first = threading.Event(), threading.Event()
        out: dict = {}
        n_calls = len(rec.calls)

        def consume() -> None:
            try:
                chat = store.create_chat()
                for event in engine.ask(chat.id, question, cancel=cancel, overrides=CANCEL):
                    if event.kind == "token":
                        first.set()
                    elif event.kind in ("done", "error"):
                        out["t"], out["event"] = now(), event
            finally:
                first.set()

        th = threading.Thread(target=consume, daemon=True)
        th.start()
        first.wait(120)
        time.sleep(rng.uniform(0.1, 1.0))
        t_set = now()
        cancel.set()
        th.join(120)
        event = out.get("event")
        call = rec.calls[n_calls] if len(rec.calls) > n_calls else None
        if (event is None or event.kind != "done" or call is None or call["done"] is None
                or call["done"].finish_reason != "cancelled"):
            early += 1  # the answer ended on its own before the cancel: not a cancel trial
            continue
        done_lat.append(out["t"] - t_set)
        runtime_lat.append(call["t_end"] - t_set)
    return summarize(done_lat, runtime_lat) | {"finished_before_cancel": early}


def cancel_prefill(engine, store, rec, questions: list[str], rng: random.Random) -> dict:
    done_lat, runtime_lat, prompt_tokens, in_prefill = [], [], [], 0
    for question in questions[:PREFILL_TRIALS]:
        cancel = threading.Event()
        out: dict = {}
        n_calls = len(rec.calls)
        rec.called.clear()

        def consume() -> None:
            chat = store.create_chat()
            for event in engine.ask(chat.id, question, cancel=cancel, overrides=CANCEL):
                if event.kind in ("done", "error"):
                    out["t"], out["event"] = now(), event

        th = threading.Thread(target=consume, daemon=True)
        th.start()
        rec.called.wait(120)
        time.sleep(rng.uniform(0.3, 2.0))
        t_set = now()
        cancel.set()
        th.join(120)
        call = rec.calls[n_calls]
        done: Done = call["done"]
        if done.finish_reason != "cancelled":
            continue
        in_prefill += done.completion_tokens == 0 and call["t_first"] is None
        prompt_tokens.append(done.prompt_tokens)
        done_lat.append(out["t"] - t_set)
        runtime_lat.append(call["t_end"] - t_set)
    return summarize(done_lat, runtime_lat) | {
        "cancelled_in_prefill": in_prefill,
        "prompt_tokens": prompt_tokens,
    }


def summarize(done_lat: list[float], runtime_lat: list[float]) -> dict:
    return {
        "trials": len(done_lat),
        "p50_s": percentile(done_lat, 50),
        "p95_s": percentile(done_lat, 95),
        "max_s": max(done_lat) if done_lat else float("nan"),
        "runtime_done_p50_s": percentile(runtime_lat, 50),
        "runtime_done_p95_s": percentile(runtime_lat, 95),
        "runtime_done_max_s": max(runtime_lat) if runtime_lat else float("nan"),
    }


# -- main --------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=8, help="questions in the comparison")
    ap.add_argument("--trials", type=int, default=20, help="decode cancel trials")
    ap.add_argument("--threads", type=int, default=None, help="default: Folio's default_threads()")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--seed", type=int, default=0, help="seed for the random cancel delays")
    ap.add_argument("--runtime", choices=("host", "thread"), default="host",
                    help="host: the model in its child process, as Folio runs it (default); "
                         "thread: the in-process LLMRuntime, for comparison")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    started = now()
    rng = random.Random(args.seed)
    rss_start = rss()

    import llama_cpp

    model_path = ensure_starter_model(Path.home() / ".cache" / "folio-test-models")
    embedder = get_embedder()
    embedder.embed_query("warm up")  # load the weights before anything is timed

    with tempfile.TemporaryDirectory(prefix="folio-bench-chat-") as tmp_name:
        tmp = Path(tmp_name)
        log("opening the corpus ...")
        lib, questions, corpus = open_corpus(tmp, embedder)
        log(f"corpus: {corpus}")
        store = ChatStore(tmp / "chats.sqlite")
        gc.collect()
        rss_before_load = rss()

        runtime = ModelHost() if args.runtime == "host" else LLMRuntime()
        info = runtime.load(model_path, LoadSettings(n_ctx=N_CTX, threads=args.threads or None,
                                                     batch_size=args.batch))
        rss_after_folio = rss()
        rec = GenerateRecorder(runtime)
        engine = ChatEngine(lib, runtime, store)
        full_engine = ChatEngine(lib, runtime, store, config=ChatConfig(**FULL_CONFIG))
        # Questions for the full-context answer and the prefill cancels come from the end of
        # the list; the comparison takes its questions from the front.
        spare = questions[-(PREFILL_TRIALS + 1):]
        questions = questions[:-(PREFILL_TRIALS + 1)]

        # Peak RSS first, while only Folio's model is loaded: freeing the raw model later does
        # not give all of its memory back to the OS, which would inflate Folio's figure.
        log("full-context answer ...")
        full = full_context_answer(full_engine, store, rec, spare[0])

        raw = llama_cpp.Llama(
            model_path=str(model_path), n_ctx=N_CTX, n_threads=info.threads,
            n_threads_batch=info.threads, n_batch=info.batch_size, n_ubatch=info.batch_size,
            n_gpu_layers=info.gpu_layers, seed=COMPARE["seed"], verbose=False,
        )
        rss_after_raw = rss()

        comparison = compare(engine, store, rec, raw, questions, args.questions)

        raw.close()
        del raw
        gc.collect()
        rss_after_raw_freed = rss()

        log("cancel during prefill ...")
        prefill = cancel_prefill(full_engine, store, rec, spare[1:], rng)
        log("cancel during decode ...")
        decode = cancel_decode(engine, store, rec, comparison["warm_question"], args.trials, rng)

        rec.restore()
        runtime.close()
        store.close()

    result = {
        "command": command,
        "corpus": corpus,
        "model": f"{info.name} ({model_path.name}, {info.size_bytes / 2**20:.0f} MiB)",
        "device": f"{info.device}, {info.threads} threads (default_threads() = "
                  f"{default_threads()}), batch {info.batch_size}, n_ctx {info.n_ctx}",
        "llama_cpp_python": llama_cpp.__version__,
        "runtime": args.runtime,
        "cpu_features": info.cpu_features,
        "comparison": {k: v for k, v in comparison.items()
                       if k not in ("rows", "warm_question")},
        "per_question": [
            {
                "prompt_tokens": r["prompt_tokens"],
                "folio_ttft_ask": r["folio"]["ttft_ask"],
                "folio_ttft_generate": r["folio"]["ttft_generate"],
                "raw_ttft": r["raw"]["ttft"],
                "folio_tok_s": r["folio"]["tok_s"],
                "raw_tok_s": r["raw"]["tok_s"],
                "folio_tokens": r["folio"]["completion_tokens"],
                "raw_tokens": r["raw"]["completion_tokens"],
                "ids_same": r["ids_same"],
                "prompt_same": r["prompt_same"],
            }
            for r in comparison["rows"]
        ],
        "cancel_decode": decode,
        "cancel_prefill": prefill,
        "full_context": full,
        "rss": {
            "start": rss_start,
            "before_model_load": rss_before_load,
            "after_folio_load": rss_after_folio,
            "peak_full_context_answer": full["peak_rss"],
            "after_raw_load": rss_after_raw,
            "after_raw_freed": rss_after_raw_freed,
        },
        "wall_s": now() - started,
    }
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print_table(result)


def print_table(res: dict) -> None:
    c = res["comparison"]
    ms = lambda s: f"{s * 1000:,.0f} ms" if s == s else "n/a"  # noqa: E731 - nan-safe
    pct = lambda x: f"{x * 100:+.1f}%"  # noqa: E731
    ok = lambda b: "PASS" if b else "FAIL"  # noqa: E731
    print(f"command: {res['command']}")
    print(f"corpus:  {res['corpus']}")
    print(f"model:   {res['model']}; {res['device']}; llama-cpp-python {res['llama_cpp_python']}")
    print(f"runtime: {res['runtime']} (host: llama.cpp in the model-host child process); "
          f"build CPU features: {res['cpu_features']}")
    s = c["settings"]
    print(f"settings: temperature {s['temperature']}, top_p {s['top_p']}, top_k {s['top_k']}, "
          f"min_p {s['min_p']}, repeat_penalty {s['repeat_penalty']}, max_tokens "
          f"{s['max_tokens']}, seed {s['seed']}, stop {list(s['stop'])}")
    print()
    print(f"Folio vs raw llama-cpp-python, {c['questions']} questions, median prompt "
          f"{c['prompt_tokens_median']:.0f} tokens, empty KV cache on both sides")
    print(f"  prompts identical: {c['prompts_identical']}/{c['questions']}, settings identical: "
          f"{c['settings_identical']}/{c['questions']}, completion token ids identical: "
          f"{c['token_ids_identical']}/{c['questions']}")
    print(f"  completion tokens  Folio {c['completion_tokens_folio']}")
    print(f"                     raw   {c['completion_tokens_raw']}")
    t = c["ttft_s"]
    o, p, passed = c["overhead"], c["overhead_paired_median"], c["pass"]
    print(f"  {'':34}{'median':>10}{'overhead':>11}{'paired':>9}")
    print(f"  {'TTFT raw (create_completion)':34}{ms(t['raw']):>10}")
    print(f"  {'TTFT Folio ask()':34}{ms(t['folio_ask']):>10}{pct(o['ttft_ask']):>11}"
          f"{pct(p['ttft_ask']):>9}  {ok(passed['ttft_ask'])}")
    print(f"  {'TTFT Folio generate()':34}{ms(t['folio_generate']):>10}"
          f"{pct(o['ttft_generate']):>11}{pct(p['ttft_generate']):>9}  "
          f"{ok(passed['ttft_generate'])}")
    print(f"  {'  ask() before generate()':34}{ms(t['folio_before_generate']):>10}")
    print(f"  {'first sampled token raw / Folio':34}{ms(t['raw_sampled']):>10}"
          f"{pct(o['ttft_sampled']):>11}   (Folio {ms(t['folio_sampled'])})")
    d = c["decode_tok_s"]
    print(f"  {'decode tok/s raw':34}{d['raw']:>10.1f}")
    print(f"  {'decode tok/s Folio':34}{d['folio']:>10.1f}{pct(o['decode']):>11}"
          f"{pct(p['decode']):>9}  {ok(passed['decode'])}")
    print()
    print(f"  {'prompt':>6} {'ask':>7} {'gen':>7} {'raw':>7} {'F tok/s':>8} {'R tok/s':>8} "
          f"{'F n':>4} {'R n':>4} ids")
    for r in res["per_question"]:
        print(f"  {r['prompt_tokens']:>6} {ms(r['folio_ttft_ask'] or float('nan')):>7} "
              f"{ms(r['folio_ttft_generate'] or float('nan')):>7} "
              f"{ms(r['raw_ttft'] or float('nan')):>7} {r['folio_tok_s'] or 0:>8.1f} "
              f"{r['raw_tok_s'] or 0:>8.1f} {r['folio_tokens']:>4} {r['raw_tokens']:>4} "
              f"{'same' if r['ids_same'] else 'DIFF'}{'' if r['prompt_same'] else ' PROMPT DIFF'}")
    print()
    for key, title in (("cancel_decode", "Cancel during decode"),
                       ("cancel_prefill", "Cancel during prefill")):
        k = res[key]
        extra = (f", {k['finished_before_cancel']} answers ended before the cancel (retried)"
                 if key == "cancel_decode" else
                 f", {k['cancelled_in_prefill']} landed in prefill, prompts {k['prompt_tokens']}")
        print(f"{title}: {k['trials']} trials{extra}")
        print(f"  set() -> engine 'done' event: p50 {ms(k['p50_s'])}, p95 {ms(k['p95_s'])}, "
              f"max {ms(k['max_s'])}")
        print(f"  set() -> runtime Done:        p50 {ms(k['runtime_done_p50_s'])}, p95 "
              f"{ms(k['runtime_done_p95_s'])}, max {ms(k['runtime_done_max_s'])}")
    f = res["full_context"]
    print()
    print(f"Full-context answer: prompt {f['prompt_tokens']} + answer {f['completion_tokens']} = "
          f"{f['context_used']} of {N_CTX} tokens ({f['finish']}), TTFT {ms(f['ttft_ask_s'])}, "
          f"{f['tok_s'] or 0:.1f} tok/s, {f['wall_s']:.1f} s")
    r = res["rss"]
    print(f"RSS: process start {mib(r['start'])}, before model load (embedder + library) "
          f"{mib(r['before_model_load'])}, after Folio's model load {mib(r['after_folio_load'])}")
    print(f"Peak RSS while answering with a full context (only Folio's model loaded): "
          f"{mib(r['peak_full_context_answer'])} "
          f"(+{mib(r['peak_full_context_answer'] - r['before_model_load'])} over before load)")
    print(f"  (later: raw model loaded beside it {mib(r['after_raw_load'])}, raw freed again "
          f"{mib(r['after_raw_freed'])})")
    print(f"wall time: {res['wall_s']:.0f} s")


if __name__ == "__main__":
    main()
