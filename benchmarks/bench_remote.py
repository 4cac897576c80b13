"""Remote providers (issue 16): what answering through an OpenAI-compatible server costs.

The same starter model, the same chat messages and sampling, asked (1) in-process through
`LLMRuntime` (the local provider) and (2) through `RemoteProvider` against
`python -m llama_cpp.server` on 127.0.0.1. Both use 1 thread. Prints time to first token and
decode tokens/s (median of --runs), local and remote alternated.

    python benchmarks/bench_remote.py [--runs 5] [--tokens 64] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys

from _common import ROOT

sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

MESSAGES = [{"role": "user", "content": "Write a numbered list of twenty vegetables that "
             "grow well in a small garden, with one sentence about each."}]


def one(provider, tokens: int) -> tuple[float, float, int]:
    from app.core.llm.provider import Done, GenerationSettings

    prompt, stops = provider.format_chat(MESSAGES)
    settings = GenerationSettings(temperature=0.0, seed=7, max_tokens=tokens, stop=tuple(stops))
    done = [e for e in provider.generate(prompt, settings) if isinstance(e, Done)][-1]
    if done.error:
        raise RuntimeError(done.error)
    return done.ttft_seconds or 0.0, done.tokens_per_second, done.completion_tokens


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--json")
    args = ap.parse_args()
    from conftest import SHARED_MODELS
    from remoteservers import LlamaServer

    from app.core.llm.provider import LoadSettings
    from app.core.llm.remote import ProviderConfig, RemoteProvider
    from app.core.llm.runtime import LLMRuntime
    from app.core.models.starter import ensure_starter_model

    model = ensure_starter_model(SHARED_MODELS)
    local = LLMRuntime()
    local.load(model, LoadSettings(n_ctx=2048, threads=1))
    results: dict[str, list] = {"local": [], "remote": []}
    with LlamaServer(model, n_ctx=2048) as server:
        remote = RemoteProvider(ProviderConfig("llama", server.url, "starter", context=2048),
                                None, timeout=300)
        remote.load()
        one(local, 8), one(remote, 8)  # warm both
        for _ in range(args.runs):
            results["local"].append(one(local, args.tokens))
            results["remote"].append(one(remote, args.tokens))
        remote.close()
    local.close()
    summary = {}
    for name, rows in results.items():
        summary[name] = {
            "ttft_ms": round(1000 * statistics.median(r[0] for r in rows), 1),
            "tokens_per_s": round(statistics.median(r[1] for r in rows), 1),
            "completion_tokens": statistics.median(r[2] for r in rows),
        }
        print(f"{name:6}  ttft {summary[name]['ttft_ms']:7.1f} ms  "
              f"{summary[name]['tokens_per_s']:6.1f} tokens/s  "
              f"({summary[name]['completion_tokens']} tokens, median of {args.runs})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
