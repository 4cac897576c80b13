"""Prompt and decode speed of the installed llama.cpp build, on the starter model.

    python benchmarks/bench_llama_build.py [--runs 5] [--prompt-tokens 1000] [--gen 128]

Raw llama-cpp-python, no Folio code in the loop: the build's own speed. Run it once per build
to compare builds on the same machine, e.g. Folio's portable build (what `make install`
compiles: AVX2, no AVX-512/AMX) against a `-march=native` build shadowing it:

    pip wheel --no-deps --no-build-isolation -w /tmp/native llama-cpp-python==0.3.36 \\
        (with CMAKE_ARGS="-DGGML_NATIVE=ON")
    pip install --no-deps --target /tmp/native-site /tmp/native/llama_cpp_python-*.whl
    PYTHONPATH=/tmp/native-site python benchmarks/bench_llama_build.py

Prints the build's CPU features (llama_print_system_info), and the median over --runs of:
prompt tokens/s (one batch-of-512 evaluation of a --prompt-tokens prompt from an empty
cache) and decode tokens/s (--gen greedy tokens after it). Threads: Folio's default_threads().
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app.core.llm.runtime import build_cpu_features
from app.core.llm.provider import default_threads  # noqa: E402
from app.core.models.starter import ensure_starter_model  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--prompt-tokens", type=int, default=1000)
    ap.add_argument("--gen", type=int, default=128)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import llama_cpp

    model = ensure_starter_model(Path.home() / ".cache" / "folio-test-models")
    threads = args.threads or default_threads()
    llm = llama_cpp.Llama(model_path=str(model), n_ctx=4096, n_batch=512, n_ubatch=512,
                          n_threads=threads, n_threads_batch=threads, verbose=False, seed=1)
    words = ("The quick brown fox jumps over the lazy dog while the octave manual explains "
             "matrices, plots and strings. ") * 200
    tokens = llm.tokenize(words.encode())[: args.prompt_tokens]
    prompt_rates, decode_rates = [], []
    for run in range(args.runs + 1):  # the first run warms caches and is dropped
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(tokens)
        t1 = time.perf_counter()
        n = 0
        for tok in llm.generate(tokens, temp=0.0, reset=False):
            n += 1
            if n >= args.gen:
                break
        t2 = time.perf_counter()
        if run:
            prompt_rates.append(len(tokens) / (t1 - t0))
            decode_rates.append(n / (t2 - t1))
    result = {
        "llama_cpp_python": llama_cpp.__version__,
        "library": str(Path(llama_cpp.__file__).parent / "lib"),
        "cpu_features": build_cpu_features(),
        "threads": threads,
        "prompt_tokens": len(tokens),
        "prompt_tok_s": round(statistics.median(prompt_rates), 1),
        "decode_tok_s": round(statistics.median(decode_rates), 1),
        "runs": args.runs,
    }
    llm.close()
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"llama-cpp-python {result['llama_cpp_python']} from {result['library']}")
        print(f"build CPU features: {result['cpu_features']}")
        print(f"threads {threads}; median of {args.runs} runs")
        print(f"prompt: {result['prompt_tok_s']} tok/s ({len(tokens)} tokens, batch 512)")
        print(f"decode: {result['decode_tok_s']} tok/s ({args.gen} greedy tokens)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
