"""Does the answer reach the model? Sources alone against sources widened to their section.

    python benchmarks/bench_context.py [--per-source 0 300 400 600] [--budget 2000]

Runs on the library bench_retrieval.py builds of the three question sets (cached under
benchmarks/.work; run that first). For every question it retrieves as the chat does (hybrid,
MMR, 5 sources, the chat's similarity floor; app/core/chat/answers.py) and checks whether the
question's answer phrase (its `answer_hint`, the phrase check_questions.py finds at every
accepted location) is in the text the model would read:

* the found passages alone (`--per-source 0`), as before issue 13's section context;
* each passage widened within its section to at most N tokens (app/core/index/context.py),
  all widening within `--budget` tokens, counted with Folio's tokenizer (tiktoken).

Reported per set and as the mean: the share of questions whose answer phrase reaches the
model (in any source, and in a source from an accepted location), and the mean tokens of
source text, which is what the widening costs in prompt processing.

`--model-questions N` then asks the first N questions of every set through the chat itself
(ChatEngine, the starter model on llama.cpp, n_ctx 4096, 8 answer tokens) with the sources
alone and widened to 600 tokens, and prints the prompt tokens and the time to first token.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from _common import ROOT  # noqa: F401 - puts the repository on sys.path
from check_questions import norm_hint, page_variants
from question_sets import SETS, gold_locations, is_hit

from app.core.chat.answers import ChatConfig, source_dict
from app.core.documents.tokens import encoding
from app.core.index.context import widen
from app.core.index.embedder import get_embedder
from app.core.index.library import Library
from app.core.index.search import hybrid_search

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=HERE / ".work")
    ap.add_argument("--per-source", type=int, nargs="+", default=[0, 300, 400, 600, 800])
    ap.add_argument("--budget", type=int, default=2000,
                    help="tokens all widening may add together (default 2000: what a 4,096-"
                         "token context leaves after the answer's room and five passages)")
    ap.add_argument("--model-questions", type=int, default=0, metavar="N",
                    help="also time N questions per set through the chat on the starter model")
    args = ap.parse_args()
    lib_dir = args.work / "folio-question-sets-200-40"
    if not lib_dir.exists():
        print("no cached library: run benchmarks/bench_retrieval.py first", file=sys.stderr)
        return 2
    lib = Library.open(lib_dir, get_embedder(), read_only=True)
    enc = encoding()

    def count(text: str) -> int:
        return len(enc.encode(text, disallowed_special=()))

    cfg = ChatConfig()
    table: dict[int, dict[str, tuple[float, float, float]]] = {n: {} for n in args.per_source}
    for qset in SETS:
        questions = qset.load()
        found: dict[int, list[tuple[bool, bool, int]]] = {n: [] for n in args.per_source}
        for q in questions:
            locations = gold_locations(q, qset.documents[0])
            results = hybrid_search(lib, q["question"], k=cfg.k, candidates=cfg.candidates,
                                    mmr=cfg.mmr)
            sources = [source_dict(i, r) for i, r in
                       enumerate((r for r in results if r.similarity >= cfg.min_similarity), 1)]
            hints = {norm_hint(loc.hint) for loc in locations if loc.hint}
            for n in args.per_source:
                windows = (widen(lib, sources, count=count, per_source=n, budget=args.budget)
                           if n else [None] * len(sources))
                texts = [w.text if w else s["text"] for s, w in zip(sources, windows, strict=True)]
                holds = [any(h in v for v in page_variants(t) for h in hints) for t in texts]
                at_gold = [h and is_hit(_Where(s), locations)
                           for h, s in zip(holds, sources, strict=True)]
                found[n].append((any(holds), any(at_gold), sum(count(t) for t in texts)))
        for n, rows in found.items():
            k = len(rows) or 1
            table[n][qset.name] = (sum(r[0] for r in rows) / k, sum(r[1] for r in rows) / k,
                                   sum(r[2] for r in rows) / k)
    print(f"answer phrase in what the model reads (chat retrieval, {cfg.k} sources, MMR; "
          f"widening budget {args.budget} tokens)")
    names = [s.name for s in SETS]
    print("| per source | " + " | ".join(names) + " | mean | source tokens (mean) |")
    print("| --- | " + " | ".join("---" for _ in names) + " | --- | --- |")
    for n, per_set in table.items():
        cells = [f"{per_set[name][0]:.3f} ({per_set[name][1]:.3f})" for name in names]
        mean = sum(v[0] for v in per_set.values()) / len(per_set)
        mean_gold = sum(v[1] for v in per_set.values()) / len(per_set)
        tokens = sum(v[2] for v in per_set.values()) / len(per_set)
        label = "passage alone" if n == 0 else f"widened to {n}"
        print(f"| {label} | " + " | ".join(cells)
              + f" | **{mean:.3f}** ({mean_gold:.3f}) | {tokens:.0f} |")
    print("each cell: answer phrase in any source (in a source at an accepted location)")
    if args.model_questions:
        time_the_chat(lib, args.model_questions)
    return 0


def time_the_chat(lib: Library, per_set: int) -> None:
    """Prompt tokens and time to first token through ChatEngine on the starter model, with
    the sources alone and widened to 600 tokens (the default), question by question."""
    import tempfile
    from statistics import median

    from app.core.chat.answers import ChatEngine
    from app.core.chat.history import ChatStore
    from app.core.llm.provider import LoadSettings
    from app.core.llm.runtime import LLMRuntime
    from app.core.models.starter import ensure_starter_model

    runtime = LLMRuntime()
    runtime.load(ensure_starter_model(Path.home() / ".cache" / "folio-test-models"),
                 LoadSettings(n_ctx=4096))
    rows: dict[int, list[tuple[int, float]]] = {0: [], 600: []}
    with tempfile.TemporaryDirectory() as tmp:
        store = ChatStore(Path(tmp) / "chats.sqlite")
        for qset in SETS:
            for q in qset.load()[:per_set]:
                for n in rows:
                    engine = ChatEngine(lib, runtime, store, config=ChatConfig(section_tokens=n))
                    chat = store.create_chat()
                    done = list(engine.ask(chat.id, q["question"],
                                           overrides={"max_tokens": 8, "seed": 1}))[-1]
                    if done.kind == "done" and done.stats.get("ttft"):
                        rows[n].append((done.stats["prompt_tokens"], done.stats["ttft"]))
        store.close()
    runtime.close()
    print(f"\nthrough the chat, starter model, {per_set} questions per set")
    print("| sources | prompt tokens (median) | time to first token, s (median) | questions |")
    print("| --- | --- | --- | --- |")
    for n, got in rows.items():
        label = "passage alone" if n == 0 else f"widened to {n}"
        print(f"| {label} | {median(t for t, _ in got):.0f} | {median(s for _, s in got):.2f}"
              f" | {len(got)} |")


class _Where:
    """A source dict as question_sets.is_hit reads a result."""

    def __init__(self, source: dict):
        self.path, self.page = source["path"], source["page"]
        self.page_end, self.section = source["page_end"], source["section"]


if __name__ == "__main__":
    sys.exit(main())
